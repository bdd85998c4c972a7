"""Theoretical decoding cost per token (Step-3's cost model): work from the step graph, prices from the specs.

A decode token at ``context`` cached tokens has three parts of work, counted from the model's
step graph (batch 1, one device, the run's precision):

- attention core: the attention ops' FLOPs (QK and SV) and the KV-cache bytes they read;
- linear: the matmuls of the attention block (Q/K/V/O and MLA/MFA projections), FLOPs only
  (batched enough to be compute-bound: their weight reads are amortized);
- FFN: the matmuls and experts of the FFN/MoE blocks, FLOPs only (same reason).

On a device, a FLOP costs ``usd_per_hour / 3600 / peak`` (its matrix unit's peak in the fastest
of FP8, BF16, FP16 it supports) and a byte ``usd_per_hour / 3600 / bandwidth``; the attention part
costs max(core FLOPs x per-FLOP, KV bytes x per-byte) + linear FLOPs x per-FLOP, the FFN part FFN
FLOPs x per-FLOP. With attention-FFN disaggregation each part runs on its cheapest device;
colocated, both run on the one device with the lowest sum. Embedding, LM head and communication
are left out, as in Step-3's model. Costs in USD per token (x 1e6 for per million tokens).
"""

from __future__ import annotations

from dataclasses import dataclass

from decodex.core.dtypes import DType
from decodex.hw_models.system import load_system
from decodex.workloads.batch import Batch
from decodex.workloads.builder import build_step_graph
from decodex.workloads.catalog import load_model
from decodex.workloads.model_config import ModelConfig
from decodex.workloads.ops import AttentionOp, MatmulOp, MoEExpertsOp
from decodex.workloads.parallelism import Parallelism
from decodex.workloads.precision import Precision

COMPUTE_FORMATS = (DType.FP8, DType.BF16, DType.FP16)


@dataclass(frozen=True)
class TokenWork:
    """Work of one decode token: KV bytes read and FLOPs of the attention core, linear and FFN parts."""

    kv_bytes: float
    attention_flops: float
    linear_flops: float
    ffn_flops: float

    @property
    def attention_intensity(self) -> float:
        """Attention core FLOP per KV byte."""
        return self.attention_flops / self.kv_bytes if self.kv_bytes else float("inf")


def token_work(model: str | ModelConfig, context: int, precision: str | Precision = "fp8") -> TokenWork:
    """Per-token work at ``context`` cached tokens (module docstring)."""
    graph = build_step_graph(load_model(model), Batch.decode(1, context), Precision.parse(precision), Parallelism())
    kv = attention = linear = ffn = 0.0
    for template in graph.templates:
        for op in template.ops:
            if isinstance(op, AttentionOp):
                kv += op.kv_bytes * template.repeat
                attention += op.flops * template.repeat
            elif isinstance(op, MatmulOp | MoEExpertsOp):
                if op.block == "attention":
                    linear += op.flops * template.repeat
                elif op.block in ("ffn", "moe"):
                    ffn += op.flops * template.repeat
    return TokenWork(kv, attention, linear, ffn)


@dataclass(frozen=True)
class UnitCosts:
    """USD per FLOP (in ``dtype``) and per byte of a device."""

    device: str
    dtype: DType
    usd_per_flop: float
    usd_per_byte: float


def unit_costs(device: str) -> UnitCosts:
    """Per-FLOP and per-byte prices of a catalog device (module docstring)."""
    spec = load_system(device).primary_device
    matrix = next(u for u in spec.units.values() if u.role == "matrix")
    dtype = next((d for d in COMPUTE_FORMATS if matrix.supports(d)), None)
    if dtype is None:
        raise ValueError(f"device {device!r} has no FP8/BF16/FP16 matrix datapath")
    per_second = spec.usd_per_hour / 3600.0
    return UnitCosts(spec.name, dtype, per_second / matrix.peak_flops(dtype),
                     per_second / spec.main_memory.bandwidth_bytes_per_s)


@dataclass(frozen=True)
class DecodeCost:
    """Per-token cost (USD) of each part on each device, and the chosen split."""

    attention: dict[str, float]
    ffn: dict[str, float]
    attention_device: str
    ffn_device: str

    @property
    def usd_per_token(self) -> float:
        return self.attention[self.attention_device] + self.ffn[self.ffn_device]

    @property
    def usd_per_million_tokens(self) -> float:
        return self.usd_per_token * 1e6


def decode_cost(model: str | ModelConfig, context: int, devices: tuple[str, ...], *, precision: str = "fp8",
                disaggregated: bool = True) -> DecodeCost:
    """Step-3's theoretical per-token cost on the cheapest of ``devices`` (module docstring)."""
    work = token_work(model, context, precision)
    attention, ffn = {}, {}
    for name in devices:
        u = unit_costs(name)
        attention[name] = (max(work.attention_flops * u.usd_per_flop, work.kv_bytes * u.usd_per_byte)
                           + work.linear_flops * u.usd_per_flop)
        ffn[name] = work.ffn_flops * u.usd_per_flop
    if disaggregated:
        a = min(attention, key=attention.__getitem__)
        f = min(ffn, key=ffn.__getitem__)
    else:
        a = f = min(devices, key=lambda d: attention[d] + ffn[d])
    return DecodeCost(attention, ffn, a, f)
