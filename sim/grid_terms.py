"""The bilinear form of a decode step in (batch, context), as :func:`sim.vector_estimate.estimate_grid` prices it.

Every quantity of a dense decode step in which ``B`` requests each hold ``C`` cached tokens is a
polynomial ``a + b·B + c·C + d·B·C``; its coefficients are stored stacked on a first axis of
length 4 (rows: 1, B, C, B·C). This module holds the extracted form (per placed op its
coefficients and its unit's or link's constants; per pipeline stage the stored bytes) and
evaluates the polynomials over many points. Units: FLOP, B, s, J, W as named on each field.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from decodex.hw_models.decode_attention import DecodeAttentionKernel
from decodex.hw_models.device import PowerSpec
from decodex.hw_models.efficiency import EfficiencyCurve
from decodex.hw_models.memory import LinkSpec, MemorySpec
from decodex.workloads.model_config import ModelConfig


@dataclass(frozen=True, eq=False)
class UnitTerms:
    """A placed compute op: polynomial coefficients (rows: 1, B, C, B·C) and its unit's prices."""

    repeat: int
    devices: int
    unit: str  # the unit's name (the busy-share column)
    executed_flops: np.ndarray  # FLOP the unit executes (N:M pattern if it runs it), per device
    flops: np.ndarray  # FLOP counted (energy, totals), per device
    nbytes: np.ndarray  # B moved per device
    rows: np.ndarray | None  # matmul m, when the unit pads rows to tiles
    tile_m: int
    peak_flops: float  # FLOP/s at the op's dtype (0 when the op has no FLOP)
    efficiency: EfficiencyCurve
    overlap_exponent: float
    overhead_s: float
    energy_per_flop_j: float
    memory: MemorySpec
    dense_equal: bool  # executed and counted FLOP are the same polynomial
    parts: np.ndarray  # (4, 3): weight, KV-cache and activation bytes per device (the records)
    bandwidth_factor: float = 1.0  # weight-only dequantization (RooflineUnit.weight_only_factor)
    kernel: DecodeAttentionKernel | None = None  # decode attention priced by kernel waves (hw_models.decode_attention)
    kv_heads: int = 0  # the attention op's KV heads on one device (with ``kernel``)


@dataclass(frozen=True, eq=False)
class LinkTerms:
    """A placed collective: its payload polynomial and the link formula's constants."""

    repeat: int
    devices: int
    flops: np.ndarray
    nbytes: np.ndarray
    payload: np.ndarray  # B per device
    collective: str
    link: LinkSpec
    parts: np.ndarray  # (4, 3): weight, KV-cache and activation bytes per device (the records)

    @property
    def unit(self) -> str:
        """The link's name (the busy-share column)."""
        return self.link.name


@dataclass(frozen=True, eq=False)
class GridForm:
    """Everything :func:`sim.vector_estimate.estimate_grid` needs for one (model, system, precision,
    parallelism)."""

    model: ModelConfig
    terms: tuple[UnitTerms | LinkTerms, ...]
    stage_weights: np.ndarray  # (4, stages): stored weight bytes per device of each pipeline stage
    stage_kv: np.ndarray  # (4, stages): KV-cache bytes after the step
    activations: np.ndarray  # (4, ops): activation bytes of every op (the workspace is their max)
    capacity_bytes: float
    device_name: str
    power: PowerSpec
    devices_used: int
    max_context: int  # largest context a request may hold (tokens)
    min_batch: int  # smallest batch the mapper accepts (pipeline micro-batches)


def poly(coef: np.ndarray, batch: np.ndarray, context: np.ndarray, both: np.ndarray) -> np.ndarray:
    """``coef[0] + coef[1]·B + coef[2]·C + coef[3]·B·C`` over the points (terms with a zero
    coefficient skipped), in the coefficients' unit; ``batch`` (requests), ``context`` (tokens)
    and ``both`` (their product) are float arrays over the points; ``coef`` may carry trailing
    axes, broadcast over the points' axis."""
    a, b, c, d = coef
    out = np.broadcast_to(np.asarray(a, dtype=np.float64)[..., None], (*np.shape(a), batch.size)).copy()
    if np.any(b):
        out += np.asarray(b)[..., None] * batch
    if np.any(c):
        out += np.asarray(c)[..., None] * context
    if np.any(d):
        out += np.asarray(d)[..., None] * both
    return out
