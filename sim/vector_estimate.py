"""The analytical path for many decode points at once: ``estimate`` vectorized over (batch, context).

For a fixed model, system, precision and parallelism, every quantity of a dense decode step in
which ``B`` requests each hold ``C`` cached tokens is a polynomial ``a + b·B + c·C + d·B·C`` in the
two sizes: per op its FLOP (executed and counted), bytes, matmul rows ``m`` and collective payload,
and per pipeline stage the stored weight and KV-cache bytes (weights are constant, projections
grow with B, attention with B·C). The coefficients come from the builder itself: the step is built
and mapped (:func:`sim.estimate.plan_step`, so the ``gpu`` mapper places every op) at four
(B, C) points and solved; the polynomials are then checked against the builder at further points
(relative 1e-12, ``m`` exactly) and the vectorized prices against :func:`sim.estimate.evaluate`
(relative 1e-9). Extraction is cached per (model, system, precision, parallelism).

Pricing then follows ``evaluate`` op by op with numpy over all points: a roofline unit's time is
``overlap(compute, memory, exponent) + op_overhead_s`` with matmul rows padded to whole tiles
(``tile_m``), its efficiency curve at the padded FLOP and its memory's efficiency curve at the
op's bytes; a collective takes the ring formulas of :mod:`hw_models.collectives`; times add up
with each template's ``repeat``; energy is the dynamic energy of every op on its devices plus the
running power floor, capped at the power limit (:meth:`hw_models.device.PowerSpec.step_energy`);
memory fit is :func:`sim.memory.memory_use` and :func:`sim.memory.fit_reason`.

Scope (else :class:`NotVectorizable`, and callers fall back to ``estimate`` point by point):
dense models (no MoE layer), systems run by the ``gpu`` mapper whose devices have only
``roofline`` units, plans without concurrent placements, and a step structure that does not
change with (B, C) (verified). Pipeline parallelism is in scope: ``evaluate`` sums the plan's
placements whatever the engine's schedule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from decodex.core.errors import ArgumentError
from decodex.hw_models.collectives import collective_cost
from decodex.hw_models.device import PowerSpec
from decodex.hw_models.efficiency import EfficiencyCurve
from decodex.hw_models.memory import LinkSpec, MemorySpec
from decodex.hw_models.roofline import MIN_TILE_ROWS, RooflineUnit
from decodex.hw_models.system import SystemSpec, load_system
from decodex.mappers.base import Plan
from decodex.sim.estimate import evaluate, plan_step
from decodex.sim.memory import MemoryUse, fit_reason, memory_use
from decodex.workloads.catalog import load_model
from decodex.workloads.graph import Graph
from decodex.workloads.model_config import ModelConfig
from decodex.workloads.ops import CollectiveOp, MatmulOp, Op
from decodex.workloads.parallelism import Parallelism
from decodex.workloads.precision import Precision

COLUMNS = ("batch", "context", "step_time_s", "tokens_per_s", "energy_j", "energy_per_token_j", "weight_bytes",
           "kv_bytes", "memory_required_bytes", "memory_capacity_bytes", "fits", "reason", "flops", "bytes")
FIT_BATCH_STEP = 64  # distance between the two batch sizes the coefficients are solved from
FIT_CONTEXT = 1024  # the larger context the coefficients are solved from (tokens; capped by the window)
CHECK_POINTS = ((2, 3), (11, 1000), (98, 7), (255, 4095), (1030, 511))  # (batch offset, context) to verify at
POLY_RTOL = 1e-12  # builder quantities vs their polynomials
PRICE_RTOL = 1e-9  # vectorized prices vs sim.estimate.evaluate at the check points
NO_WINDOW_CONTEXT = 1 << 40  # largest context checked when the model has no context window


class NotVectorizable(ArgumentError):  # noqa: N818  (the name says what the caller falls back on)
    """The model, system or options are outside what :func:`estimate_grid` prices exactly (MoE
    layers, a unit other than ``roofline``, a mapper other than ``gpu``, concurrent placements, or a
    step whose structure or quantities do not follow the bilinear form in (batch, context));
    call :func:`sim.estimate.estimate` per point instead."""


# --- the extracted form ---------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class _UnitTerms:
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


@dataclass(frozen=True, eq=False)
class _LinkTerms:
    """A placed collective: its payload polynomial and the link formula's constants."""

    repeat: int
    devices: int
    flops: np.ndarray
    nbytes: np.ndarray
    payload: np.ndarray  # B per device
    collective: str
    link: LinkSpec

    @property
    def unit(self) -> str:
        """The link's name (the busy-share column)."""
        return self.link.name


@dataclass(frozen=True, eq=False)
class _GridForm:
    """Everything :func:`estimate_grid` needs for one (model, system, precision, parallelism)."""

    model: ModelConfig
    terms: tuple[_UnitTerms | _LinkTerms, ...]
    stage_weights: np.ndarray  # (4, stages): stored weight bytes per device of each pipeline stage
    stage_kv: np.ndarray  # (4, stages): KV-cache bytes after the step
    activations: np.ndarray  # (4, ops): activation bytes of every op (the workspace is their max)
    capacity_bytes: float
    device_name: str
    power: PowerSpec
    devices_used: int
    max_context: int  # largest context a request may hold (tokens)
    min_batch: int  # smallest batch the mapper accepts (pipeline micro-batches)


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


def _key(obj: object) -> object:
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
    ops: np.ndarray  # (placements, 4): executed FLOP, FLOP, bytes, m or payload
    memory: np.ndarray  # weights per stage, KV per stage, activations per op


def _op_row(op: Op, unit: RooflineUnit | None) -> list[float]:
    if isinstance(op, CollectiveOp):
        return [0.0, op.flops, op.bytes, op.payload_bytes]
    assert unit is not None
    rows = float(op.m) if isinstance(op, MatmulOp) else 0.0
    return [unit.executed_flops(op), op.flops, op.bytes, rows]


def _sample(model: ModelConfig, system: SystemSpec, precision: Precision, par: Parallelism,
            batch: int, context: int) -> _Sample:
    plan = plan_step(model, system, batch, context=context, precision=precision, parallelism=par)
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
    return _Sample(plan, tuple(signature), np.array(rows, dtype=np.float64).reshape(-1, 4),
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


def _poly(coef: np.ndarray, batch: np.ndarray, context: np.ndarray, both: np.ndarray) -> np.ndarray:
    """``coef[0] + coef[1]·B + coef[2]·C + coef[3]·B·C`` over the points (terms with a zero
    coefficient skipped); ``coef`` may carry trailing axes, broadcast over the points' axis."""
    a, b, c, d = coef
    out = np.broadcast_to(np.asarray(a, dtype=np.float64)[..., None], (*np.shape(a), batch.size)).copy()
    if np.any(b):
        out += np.asarray(b)[..., None] * batch
    if np.any(c):
        out += np.asarray(c)[..., None] * context
    if np.any(d):
        out += np.asarray(d)[..., None] * both
    return out


def _close(got: np.ndarray, want: np.ndarray, rtol: float, floor: float = 1.0) -> bool:
    """``got`` equals ``want`` within ``rtol`` of ``max(|want|, floor)`` everywhere (``floor``: the
    magnitude below which the difference is taken as absolute, e.g. 1 FLOP or 1 B)."""
    return bool(np.all(np.abs(got - want) <= rtol * np.maximum(np.abs(want), floor)))


def _scope(model: ModelConfig, system: SystemSpec) -> None:
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
def _grid_form(model_key: object, system_key: object, precision: Precision, par: Parallelism) -> _GridForm:
    """Extract (and verify) the polynomial form; cached (keys: hashable specs by value, others by
    identity)."""
    model: ModelConfig = _unwrap(model_key)
    system: SystemSpec = _unwrap(system_key)
    _scope(model, system)
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
    op_coef = _solve(*(s.ops for s in corners), b0, b1, c0, c1)  # (4, placements, 4 quantities)
    mem_coef = _solve(*(s.memory for s in corners), b0, b1, c0, c1)  # (4, memory quantities)
    for (b, c), sample in zip(checks, samples[4:], strict=True):
        batch, context = np.array([float(b)]), np.array([float(c)])
        got_ops = _poly(op_coef, batch, context, batch * context)[..., 0]
        got_mem = _poly(mem_coef, batch, context, batch * context)[..., 0]
        if not (_close(got_ops, sample.ops, POLY_RTOL) and _close(got_mem, sample.memory, POLY_RTOL)):
            raise NotVectorizable(f"estimate_grid: the op quantities are not bilinear in (batch, context) "
                                  f"(checked at batch {b}, context {c})")
    plan = corners[0].plan
    pp = par.pp
    device = plan.system.primary_device
    terms: list[_UnitTerms | _LinkTerms] = []
    for index, placement in enumerate(plan.placements):
        coef = op_coef[:, index, :]
        op = placement.op
        if placement.link is not None:
            assert isinstance(op, CollectiveOp)
            terms.append(_LinkTerms(placement.template.repeat, op.devices, coef[:, 1], coef[:, 2], coef[:, 3],
                                    op.collective, placement.link))
            continue
        assert placement.unit is not None
        unit = placement.device.units[placement.unit]
        assert isinstance(unit, RooflineUnit)
        tiled = unit.tile_m > 0 and isinstance(op, MatmulOp)
        terms.append(_UnitTerms(
            repeat=placement.template.repeat, devices=op.devices, unit=placement.unit,
            executed_flops=coef[:, 0], flops=coef[:, 1],
            nbytes=coef[:, 2], rows=coef[:, 3] if tiled else None, tile_m=unit.tile_m,
            peak_flops=unit.peak_flops(op.dtype) if np.any(coef[:, 0]) else 0.0, efficiency=unit.efficiency,
            overlap_exponent=unit.overlap_exponent, overhead_s=unit.op_overhead_s,
            energy_per_flop_j=unit.energy_per_flop_j.get(op.dtype, 0.0),
            memory=placement.device.memories[unit.memory],
            dense_equal=bool(np.array_equal(coef[:, 0], coef[:, 1]))))
    form = _GridForm(model=model, terms=tuple(terms), stage_weights=mem_coef[:, :pp], stage_kv=mem_coef[:, pp:2 * pp],
                     activations=mem_coef[:, 2 * pp:], capacity_bytes=device.capacity_bytes,
                     device_name=device.name, power=device.power, devices_used=plan.devices_used,
                     max_context=max_context, min_batch=min_batch)
    _verify_prices(form, checks, samples[4:])
    return form


def _verify_prices(form: _GridForm, points: Sequence[tuple[int, int]], samples: Sequence[_Sample]) -> None:
    """The vectorized prices must equal ``evaluate`` at the check points (guards against a unit or
    link formula changing under this module)."""
    batch = np.array([b for b, _ in points], dtype=np.int64)
    context = np.array([c for _, c in points], dtype=np.int64)
    got = _price(form, batch, context)
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


# --- pricing --------------------------------------------------------------------------------------

def padded_rows_many(m: np.ndarray, tile_m: int) -> np.ndarray:
    """Vectorized :func:`hw_models.roofline.padded_rows` for integer-valued float ``m`` (rows)."""
    if tile_m <= 0:
        return m
    safe = np.maximum(m, 1.0)
    power = np.exp2(np.ceil(np.log2(safe)))  # the next power of two (m <= tile_m <= 4096: exact)
    small = np.minimum(float(tile_m), np.maximum(float(MIN_TILE_ROWS), power))
    large = np.ceil(safe / tile_m) * tile_m
    return np.where(m <= 0, m, np.where(m <= tile_m, small, large))


def _overlap(compute: np.ndarray, memory: np.ndarray, exponent: float) -> np.ndarray:
    """Vectorized :func:`hw_models.roofline.overlap`, s."""
    high = np.maximum(compute, memory)
    if exponent <= 0:
        return high
    low = np.minimum(compute, memory)
    ratio = np.divide(low, high, out=np.zeros_like(high), where=high > 0)
    return np.where(low > 0, high * (1.0 + ratio ** exponent) ** (1.0 / exponent), high)


def _transfer_time(memory: MemorySpec, nbytes: np.ndarray) -> np.ndarray:
    """Vectorized :meth:`hw_models.memory.MemorySpec.transfer_time`, s."""
    if memory.bandwidth_bytes_per_s <= 0:
        return np.where(nbytes <= 0, 0.0, np.inf)
    bandwidth = memory.bandwidth_bytes_per_s * memory.efficiency.at_many(nbytes)
    return np.where(nbytes <= 0, 0.0, nbytes / bandwidth)


def _unit_cost(term: _UnitTerms, batch: np.ndarray, context: np.ndarray,
               both: np.ndarray) -> tuple[np.ndarray, ...]:
    """Time (s), dynamic energy per device (J), FLOP and bytes of one instance of a placed compute
    op, per point (:meth:`hw_models.roofline.RooflineUnit.op_cost`)."""
    executed = _poly(term.executed_flops, batch, context, both)
    work = executed
    if term.rows is not None:
        rows = np.rint(_poly(term.rows, batch, context, both))
        padded = padded_rows_many(rows, term.tile_m)
        work = np.where(rows > 0, executed * padded / np.where(rows > 0, rows, 1.0), executed)
    if term.peak_flops > 0:
        compute = np.where(executed > 0, work / (term.peak_flops * term.efficiency.at_many(work)), 0.0)
    else:
        compute = np.zeros_like(executed)
    nbytes = _poly(term.nbytes, batch, context, both)
    time = _overlap(compute, _transfer_time(term.memory, nbytes), term.overlap_exponent) + term.overhead_s
    flops = executed if term.dense_equal else _poly(term.flops, batch, context, both)
    energy = flops * term.energy_per_flop_j + nbytes * term.memory.energy_per_byte_j
    return time, energy, flops, nbytes


def _link_cost(term: _LinkTerms, batch: np.ndarray, context: np.ndarray,
              both: np.ndarray) -> tuple[np.ndarray, ...]:
    """Time (s), energy (J), FLOP and bytes of one collective, per point
    (:func:`hw_models.collectives.collective_cost`)."""
    flops = _poly(term.flops, batch, context, both)
    nbytes = _poly(term.nbytes, batch, context, both)
    p = term.devices
    if p <= 1 and term.collective != "send_recv":
        zero = np.zeros(batch.size)
        return zero, zero, flops, nbytes
    payload = _poly(term.payload, batch, context, both)
    # the formula's constants from the scalar function itself (per unit payload): the sent-bytes
    # factor, and the fixed part (hops x latency + the collective overhead)
    fixed = collective_cost(term.collective, 0.0, p, term.link).time_s
    factor = collective_cost(term.collective, 1.0, p, term.link).sent_bytes
    sent = factor * payload
    time = sent / term.link.effective_bandwidth + fixed
    return time, sent * term.link.energy_per_byte_j, flops, nbytes


def _price(form: _GridForm, batch: np.ndarray, context: np.ndarray) -> dict[str, np.ndarray]:
    """Every column of :func:`estimate_grid` but ``reason`` (and the inputs), per point."""
    b = batch.astype(np.float64)
    c = context.astype(np.float64)
    both = b * c
    n = b.size
    step = np.zeros(n)
    dynamic = np.zeros(n)
    flops = np.zeros(n)
    nbytes = np.zeros(n)
    busy: dict[str, np.ndarray] = {}
    for term in form.terms:
        if isinstance(term, _UnitTerms):
            time, energy, op_flops, op_bytes = _unit_cost(term, b, c, both)
        else:
            time, energy, op_flops, op_bytes = _link_cost(term, b, c, both)
        busy[term.unit] = busy.get(term.unit, 0.0) + time * term.repeat
        step += time * term.repeat
        dynamic += energy * term.devices * term.repeat
        flops += op_flops * term.repeat
        nbytes += op_bytes * term.repeat
    power = form.power
    devices = form.devices_used
    energy_j = np.minimum(dynamic + power.running_w * devices * step, power.tdp_w * devices * step)
    weights = _poly(form.stage_weights, b, c, both)
    kv = _poly(form.stage_kv, b, c, both)
    if weights.shape[0] > 1:
        heaviest = np.argmax(weights + kv, axis=0)
        columns = np.arange(n)
        weights, kv = weights[heaviest, columns], kv[heaviest, columns]
    else:
        weights, kv = weights[0], kv[0]
    workspace = np.maximum(0.0, _poly(form.activations, b, c, both).max(axis=0)) if form.activations.shape[1] \
        else np.zeros(n)
    required = weights + kv + workspace
    with np.errstate(divide="ignore", invalid="ignore"):
        tokens_per_s = np.where(step > 0, b / np.where(step > 0, step, 1.0), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        shares = {f"util.{unit}": np.where(step > 0, t / np.where(step > 0, step, 1.0), 0.0)
                  for unit, t in busy.items()}
    return {**shares, "step_time_s": step, "tokens_per_s": tokens_per_s, "energy_j": energy_j,
            "energy_per_token_j": energy_j / b, "weight_bytes": weights, "kv_bytes": kv,
            "workspace_bytes": workspace, "memory_required_bytes": required, "flops": flops, "bytes": nbytes}


# --- the public function --------------------------------------------------------------------------

def _as_sizes(values: object, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ArgumentError(f"{name}: must be a 1-D array, got shape {array.shape}")
    integral = np.issubdtype(array.dtype, np.integer) or (
        np.issubdtype(array.dtype, np.floating) and bool(np.all(array == np.round(array))))
    if array.size and not integral:
        raise ArgumentError(f"{name}: must hold integers, got {array.dtype} values")
    return array.astype(np.int64)


def _check_points(form: _GridForm, batch: np.ndarray, context: np.ndarray) -> None:
    """ArgumentError for the first point the scalar path would refuse."""
    bad = np.flatnonzero(batch < 1)
    if bad.size:
        raise ArgumentError(f"batch: batch size must be a positive integer, got {int(batch[bad[0]])} "
                            f"(point {int(bad[0])})")
    bad = np.flatnonzero(context < 0)
    if bad.size:
        raise ArgumentError(f"context: must be >= 0, got {int(context[bad[0]])} (point {int(bad[0])})")
    bad = np.flatnonzero(context > form.max_context)
    if bad.size:
        model = form.model
        raise ArgumentError(f"context: a request reaches position {int(context[bad[0]]) + 1}, beyond {model.name}'s "
                            f"max_position_embeddings={model.max_position_embeddings} (point {int(bad[0])})")
    bad = np.flatnonzero(batch < form.min_batch)
    if bad.size:
        raise ArgumentError(f"microbatches: {form.min_batch} outside [1, batch size {int(batch[bad[0]])}] "
                            f"(point {int(bad[0])})")


def estimate_grid(model: str | Path | ModelConfig, system: str | Path | SystemSpec, batches: Sequence[int] | np.ndarray,
                  contexts: Sequence[int] | np.ndarray, *, precision: str | Precision = "bf16",
                  parallelism: Parallelism | None = None) -> pd.DataFrame:
    """Analytical estimates of many decode steps at once, equal to :func:`sim.estimate.estimate`.

    Point ``i`` is ``Batch.decode(batches[i], contexts[i])``: ``batches[i]`` requests, each with
    ``contexts[i]`` cached tokens (1-D integer arrays of one length). ``model``, ``system``,
    ``precision`` and ``parallelism`` as for ``estimate`` (the system's default mapper and its
    options). Returns one row per point: ``batch``, ``context``, ``step_time_s`` (s),
    ``tokens_per_s`` (output tokens/s), ``energy_j`` (J, the whole replica), ``energy_per_token_j``
    (J), ``weight_bytes``, ``kv_bytes``, ``memory_required_bytes`` and ``memory_capacity_bytes``
    (B per device, the most loaded pipeline stage), ``fits`` (bool), ``reason`` (``estimate``'s
    text, empty when it fits), ``flops`` (FLOP) and ``bytes`` (B) per device per step, ``devices``
    (the replica's) and ``util.UNIT``: each unit's (or link's) busy share of the step.

    Raises :class:`NotVectorizable` outside the supported scope (module docstring) and
    ArgumentError for a point ``estimate`` would refuse (batch < 1, context < 0 or beyond the
    model's window, fewer requests than pipeline micro-batches).
    """
    batch = _as_sizes(batches, "batches")
    context = _as_sizes(contexts, "contexts")
    if batch.shape != context.shape:
        raise ArgumentError(f"batches and contexts: lengths differ ({batch.size} vs {context.size})")
    model_cfg = load_model(model)
    system_spec = load_system(system)
    _scope(model_cfg, system_spec)  # cheap, and before any building
    form = _grid_form(_key(model_cfg), _key(system_spec), Precision.parse(precision), parallelism or Parallelism())
    _check_points(form, batch, context)
    priced = _price(form, batch, context)
    required = priced["memory_required_bytes"]
    capacity = form.capacity_bytes
    fits = required <= capacity
    reason = np.full(batch.size, "", dtype=object)
    for index in np.flatnonzero(~fits):
        use = MemoryUse(float(priced["weight_bytes"][index]), float(priced["kv_bytes"][index]),
                        float(priced["workspace_bytes"][index]))
        reason[index] = fit_reason(use, capacity, form.device_name)
    columns = {"batch": batch, "context": context, **priced, "memory_capacity_bytes": np.full(batch.size, capacity),
               "fits": fits, "reason": reason, "devices": np.full(batch.size, form.devices_used)}
    extra = sorted(k for k in columns if k.startswith("util."))
    return pd.DataFrame({name: columns[name] for name in (*COLUMNS, "devices", *extra)})
