"""Extracting (and verifying) the bilinear form of a decode step from the step builder.

For a fixed model, system, precision and parallelism, every quantity of a dense decode step in
which ``B`` requests each hold ``C`` cached tokens is a polynomial ``a + b·B + c·C + d·B·C`` in the
two sizes: per op its FLOP (executed and counted), bytes, matmul rows ``m`` and collective payload,
and per pipeline stage the stored weight and KV-cache bytes (weights are constant, projections
grow with B, attention with B·C). The coefficients come from the builder itself: the step is built
and mapped (:func:`sim.estimate.plan_step`, so the ``gpu`` mapper places every op) at four
(B, C) points and solved; the polynomials are then checked against the builder at further points
(relative 1e-12, ``m`` exactly) and the vectorized prices (:func:`sim.grid_pricing.price`) against
:func:`sim.estimate.evaluate` (relative 1e-9). Extraction is cached per (model, system, precision,
parallelism).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from decodex.core.errors import ArgumentError
from decodex.hw_models.roofline import RooflineUnit
from decodex.hw_models.system import SystemSpec
from decodex.mappers.base import Plan
from decodex.sim.estimate import evaluate, plan_step
from decodex.sim.grid_pricing import price
from decodex.sim.grid_terms import GridForm, LinkTerms, UnitTerms, poly
from decodex.sim.memory import memory_use
from decodex.workloads.batch import Batch
from decodex.workloads.graph import Graph
from decodex.workloads.model_config import ModelConfig
from decodex.workloads.ops import AttentionOp, CollectiveOp, MatmulOp, Op
from decodex.workloads.parallelism import Parallelism
from decodex.workloads.precision import Precision

FIT_BATCH_STEP = 64  # distance between the two batch sizes the coefficients are solved from
FIT_CONTEXT = 1024  # the larger context the coefficients are solved from (tokens; capped by the window)
CHECK_POINTS = ((2, 3), (11, 1000), (98, 7), (255, 4095), (1030, 511))  # (batch offset, context) to verify at
POLY_RTOL = 1e-12  # builder quantities vs their polynomials
PRICE_RTOL = 1e-9  # vectorized prices vs sim.estimate.evaluate at the check points
NO_WINDOW_CONTEXT = 1 << 40  # largest context checked when the model has no context window


class NotVectorizable(ArgumentError):  # noqa: N818  (the name says what the caller falls back on)
    """The model, system or options are outside what :func:`sim.vector_estimate.estimate_grid`
    prices exactly (MoE layers, a unit other than ``roofline``, a mapper other than ``gpu``,
    concurrent placements, or a step whose structure or quantities do not follow the bilinear form
    in (batch, context)); call :func:`sim.estimate.estimate` per point instead."""


# --- cache keys -----------------------------------------------------------------------------------

class _ByIdentity:
    """A cache key for an unhashable spec: equal only to itself; holds the object, so its id is
    not reused while the key is cached."""

    __slots__ = ("obj",)

    def __init__(self, obj: object) -> None:
        self.obj = obj

    def __hash__(self) -> int:
        return id(self.obj)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _ByIdentity) and other.obj is self.obj


def cache_key(obj: object) -> object:
    """The key :func:`grid_form` caches a model or system spec under: the spec itself when it is
    hashable (equal by value), else a key equal only to that object."""
    try:
        hash(obj)
    except TypeError:
        return _ByIdentity(obj)
    return obj


def _unwrap(key: object) -> Any:
    return key.obj if isinstance(key, _ByIdentity) else key


# --- sampling the builder -------------------------------------------------------------------------

def _stage_memory(graph: Graph) -> tuple[list[float], list[float], list[float]]:
    """Per pipeline stage the stored weight and KV bytes per device, and every op's activation
    bytes: the parts :func:`sim.memory.memory_use` combines (checked against it)."""
    pp = graph.parallelism.pp
    weights = [0.0] * pp
    kv = [0.0] * pp
    activations: list[float] = []
    for template in graph.templates:
        per_stage = [0] * pp
        if template.layers:
            for layer in template.layers:
                per_stage[graph.stage_of_layer(layer)] += 1
        elif template.name in ("embedding", "head"):
            per_stage[0 if template.name == "embedding" else pp - 1] = 1
        template_weights = sum(op.resident_weight_bytes for op in template.ops)
        template_kv = sum(op.resident_kv_bytes for op in template.ops)
        activations += [op.activation_bytes for op in template.ops]
        for stage, count in enumerate(per_stage):
            weights[stage] += template_weights * count
            kv[stage] += template_kv * count
    return weights, kv, activations


@dataclass(frozen=True, eq=False)
class _Sample:
    """The plan at one (batch, context) point: its structure and its quantities."""

    plan: Plan
    signature: tuple[object, ...]
    ops: np.ndarray  # (placements, 7): executed FLOP, FLOP, bytes, m or payload, weight, KV, activation bytes
    memory: np.ndarray  # weights per stage, KV per stage, activations per op


OP_QUANTITIES = 7  # the columns of _op_row


def _op_row(op: Op, unit: RooflineUnit | None) -> list[float]:
    parts = [op.weight_bytes, op.kv_bytes, op.activation_bytes]
    if isinstance(op, CollectiveOp):
        return [0.0, op.flops, op.bytes, op.payload_bytes, *parts]
    assert unit is not None
    rows = float(op.m) if isinstance(op, MatmulOp) else 0.0
    return [unit.executed_flops(op), op.flops, op.bytes, rows, *parts]


def _sample(model: ModelConfig, system: SystemSpec, precision: Precision, par: Parallelism,
            batch: int, context: int) -> _Sample:
    # a Batch, not (batch, context): the fit samples context 0, below what a user may ask for
    plan = plan_step(model, system, Batch.decode(batch, context), precision=precision, parallelism=par)
    if plan.mapper != "gpu":
        raise NotVectorizable(f"estimate_grid: system {system.name!r} is mapped by {plan.mapper!r}, not 'gpu'")
    signature: list[object] = [plan.devices_used]
    rows = []
    for placement in plan.placements:
        op = placement.op
        if placement.concurrent:
            raise NotVectorizable(f"estimate_grid: op {op.name!r} runs concurrently with another")
        unit = None
        if placement.unit is not None:
            unit = placement.device.units[placement.unit]
            if type(unit) is not RooflineUnit:
                raise NotVectorizable(f"estimate_grid: op {op.name!r} runs on unit {placement.unit!r}, "
                                      f"a {type(unit).__name__}, not a roofline unit")
        elif not isinstance(op, CollectiveOp):
            raise NotVectorizable(f"estimate_grid: op {op.name!r} ({op.kind}) is placed on a link")
        signature.append((placement.template.name, placement.template.repeat, op.name, type(op).__name__,
                          str(op.dtype), op.devices, placement.unit, placement.link and placement.link.name,
                          getattr(op, "collective", None), id(placement.device)))
        rows.append(_op_row(op, unit))
    for template in plan.graph.templates:
        signature.append((template.name, template.repeat, template.layers, tuple(op.name for op in template.ops)))
    weights, kv, activations = _stage_memory(plan.graph)
    return _Sample(plan, tuple(signature), np.array(rows, dtype=np.float64).reshape(-1, OP_QUANTITIES),
                   np.array(weights + kv + activations, dtype=np.float64))


def _solve(q00: np.ndarray, q10: np.ndarray, q01: np.ndarray, q11: np.ndarray,
           b0: int, b1: int, c0: int, c1: int) -> np.ndarray:
    """Coefficients (stacked on a new first axis: 1, B, C, B·C) of the bilinear function through
    the four corner values ``q[b][c]``."""
    slope_low = (q10 - q00) / (b1 - b0)
    slope_high = (q11 - q01) / (b1 - b0)
    d = (slope_high - slope_low) / (c1 - c0)
    b = slope_low - d * c0
    c = (q01 - q00) / (c1 - c0) - d * b0
    a = q00 - b * b0 - c * c0 - d * b0 * c0
    return np.stack([a, b, c, d])


def _close(got: np.ndarray, want: np.ndarray, rtol: float, floor: float = 1.0) -> bool:
    """``got`` equals ``want`` within ``rtol`` of ``max(|want|, floor)`` everywhere (``floor``: the
    magnitude below which the difference is taken as absolute, e.g. 1 FLOP or 1 B)."""
    return bool(np.all(np.abs(got - want) <= rtol * np.maximum(np.abs(want), floor)))


# --- extraction -----------------------------------------------------------------------------------

def check_scope(model: ModelConfig, system: SystemSpec) -> None:
    """Raise :class:`NotVectorizable` for a model with MoE layers or a system not run by the
    ``gpu`` mapper on plain roofline units only (checked before anything is built)."""
    if model.moe is not None or "moe" in model.layer_kinds:
        raise NotVectorizable(f"estimate_grid: {model.name} has MoE layers (routing draws are not polynomial)")
    if system.default_mapper != "gpu":
        raise NotVectorizable(f"estimate_grid: system {system.name!r} is mapped by {system.default_mapper!r}, "
                              "not 'gpu'")
    for group in system.groups:
        for name, unit in group.device.units.items():
            if type(unit) is not RooflineUnit:
                raise NotVectorizable(f"estimate_grid: unit {name!r} of {group.device.name!r} is a "
                                      f"{type(unit).__name__}, not a roofline unit")


@lru_cache(maxsize=64)
def grid_form(model_key: object, system_key: object, precision: Precision, par: Parallelism) -> GridForm:
    """Extract (and verify) the polynomial form of the model's decode step on the system; cached
    (keys: :func:`cache_key` of the model and system specs). Raises :class:`NotVectorizable` when
    the step does not follow the form."""
    model: ModelConfig = _unwrap(model_key)
    system: SystemSpec = _unwrap(system_key)
    check_scope(model, system)
    window = model.context_window
    max_context = NO_WINDOW_CONTEXT if window is None else window - 1
    if max_context < 1:
        raise NotVectorizable(f"estimate_grid: {model.name}'s context window {window} leaves no room to fit")
    micro = system.mapper_options.get("microbatches")
    min_batch = int(micro) if par.pp > 1 and isinstance(micro, int) and micro > 1 else 1
    b0, b1, c0, c1 = min_batch, min_batch + FIT_BATCH_STEP, 0, min(FIT_CONTEXT, max_context)
    corners = [_sample(model, system, precision, par, b, c) for b, c in ((b0, c0), (b1, c0), (b0, c1), (b1, c1))]
    checks = [(min_batch + db, min(c, max_context)) for db, c in CHECK_POINTS]
    samples = corners + [_sample(model, system, precision, par, b, c) for b, c in checks]
    if any(s.signature != corners[0].signature for s in samples):
        raise NotVectorizable("estimate_grid: the step's ops or placements change with batch or context")
    op_coef = _solve(*(s.ops for s in corners), b0, b1, c0, c1)  # (4, placements, OP_QUANTITIES)
    mem_coef = _solve(*(s.memory for s in corners), b0, b1, c0, c1)  # (4, memory quantities)
    for (b, c), sample in zip(checks, samples[4:], strict=True):
        batch, context = np.array([float(b)]), np.array([float(c)])
        got_ops = poly(op_coef, batch, context, batch * context)[..., 0]
        got_mem = poly(mem_coef, batch, context, batch * context)[..., 0]
        if not (_close(got_ops, sample.ops, POLY_RTOL) and _close(got_mem, sample.memory, POLY_RTOL)):
            raise NotVectorizable(f"estimate_grid: the op quantities are not bilinear in (batch, context) "
                                  f"(checked at batch {b}, context {c})")
    plan = corners[0].plan
    pp = par.pp
    device = plan.system.primary_device
    terms: list[UnitTerms | LinkTerms] = []
    for index, placement in enumerate(plan.placements):
        coef = op_coef[:, index, :]
        op = placement.op
        if placement.link is not None:
            assert isinstance(op, CollectiveOp)
            terms.append(LinkTerms(placement.template.repeat, op.devices, coef[:, 1], coef[:, 2], coef[:, 3],
                                   op.collective, placement.link, parts=coef[:, 4:]))
            continue
        assert placement.unit is not None
        unit = placement.device.units[placement.unit]
        assert isinstance(unit, RooflineUnit)
        tiled = unit.tile_m > 0 and isinstance(op, MatmulOp)
        terms.append(UnitTerms(
            repeat=placement.template.repeat, devices=op.devices, unit=placement.unit,
            executed_flops=coef[:, 0], flops=coef[:, 1],
            nbytes=coef[:, 2], rows=coef[:, 3] if tiled else None, tile_m=unit.tile_m,
            peak_flops=unit.peak_flops(op.dtype) if np.any(coef[:, 0]) else 0.0, efficiency=unit.efficiency,
            overlap_exponent=unit.overlap_exponent, overhead_s=unit.op_overhead_s,
            energy_per_flop_j=unit.energy_per_flop_j.get(op.dtype, 0.0),
            memory=placement.device.memories[unit.memory],
            dense_equal=bool(np.array_equal(coef[:, 0], coef[:, 1])), bandwidth_factor=unit.weight_only_factor(op),
            kernel=unit.decode_attention if isinstance(op, AttentionOp) else None,
            kv_heads=op.kv_heads if isinstance(op, AttentionOp) else 0, parts=coef[:, 4:]))
    form = GridForm(model=model, terms=tuple(terms), stage_weights=mem_coef[:, :pp], stage_kv=mem_coef[:, pp:2 * pp],
                    activations=mem_coef[:, 2 * pp:], capacity_bytes=device.capacity_bytes,
                    device_name=device.name, power=device.power, devices_used=plan.devices_used,
                    max_context=max_context, min_batch=min_batch)
    _verify_prices(form, checks, samples[4:])
    return form


def _verify_prices(form: GridForm, points: Sequence[tuple[int, int]], samples: Sequence[_Sample]) -> None:
    """The vectorized prices must equal ``evaluate`` at the check points (guards against a unit or
    link formula changing under :mod:`sim.grid_pricing`)."""
    batch = np.array([b for b, _ in points], dtype=np.int64)
    context = np.array([c for _, c in points], dtype=np.int64)
    got = price(form, batch, context)
    for index, sample in enumerate(samples):
        want = evaluate(sample.plan)
        use = memory_use(sample.plan.graph)
        for name in ("step_time_s", "energy_j", "flops", "bytes", "memory_required_bytes"):
            if not _close(np.array([got[name][index]]), np.array([getattr(want, name)]), PRICE_RTOL, floor=0.0):
                raise NotVectorizable(f"estimate_grid: {name} disagrees with sim.estimate.evaluate at batch "
                                      f"{batch[index]}, context {context[index]} ({got[name][index]!r} vs "
                                      f"{getattr(want, name)!r})")
        if not _close(np.array([got["weight_bytes"][index], got["kv_bytes"][index]]),
                      np.array([use.weight_bytes, use.kv_bytes]), PRICE_RTOL):
            raise NotVectorizable("estimate_grid: the memory split disagrees with sim.memory.memory_use")
