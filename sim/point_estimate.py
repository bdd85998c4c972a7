"""The scalar fast path of :func:`sim.estimate.estimate`: one decode point from its cached form.

For a dense model on a system that the ``gpu`` mapper runs on roofline units (the scope of
:func:`sim.vector_estimate.estimate_grid`), every op's FLOP, bytes and rows in a decode step of
``B`` requests holding ``C`` cached tokens each are polynomials in (B, C)
(:func:`sim.grid_extract.grid_form`). Once a (model, system, precision, parallelism) has been
estimated a second time, its form is extracted, joined with each placement's names and unit, and
checked against :func:`sim.estimate.evaluate` at two points (every field and every op record, to
:data:`CHECK_RTOL`); later points are priced from the polynomials with the units' own scalar cost
functions (:meth:`hw_models.roofline.RooflineUnit.roofline_priced`,
:meth:`~hw_models.roofline.RooflineUnit.decode_attention_priced`,
:func:`sim.costing.collective_op_cost`) and summed in ``evaluate``'s order, so the StepResult is
``evaluate``'s without building, mapping or placing the graph. Ops priced from the same inputs
(a layer's norms, its all-reduces) are priced once, and a quantity that is 0 at every point (the
KV bytes of a matmul) is not evaluated. Anything else (another mapper,
mapper options, MoE routing, per-request contexts, a context beyond the model's window) takes
the general path. Units: s, J, FLOP, B.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, fields

from decodex.core.dtypes import DType
from decodex.core.errors import DecodexError
from decodex.hw_models.cost import OpCost
from decodex.hw_models.decode_attention import DecodeAttentionKernel
from decodex.hw_models.device import PowerSpec
from decodex.hw_models.memory import LinkSpec, MemorySpec
from decodex.hw_models.roofline import RooflineUnit
from decodex.hw_models.system import SystemSpec, load_system
from decodex.sim.costing import collective_op_cost
from decodex.sim.estimate import DEFAULT_CONTEXT, evaluate, op_ceilings, plan_step
from decodex.sim.grid_extract import NotVectorizable, cache_key, grid_form
from decodex.sim.grid_terms import GridForm, LinkTerms, UnitTerms
from decodex.sim.memory import MemoryUse, fit_reason, heaviest_stage
from decodex.sim.results import OpRecord, StepResult
from decodex.workloads.batch import MAX_BATCH_REQUESTS, Batch
from decodex.workloads.catalog import load_model
from decodex.workloads.model_config import ModelConfig
from decodex.workloads.parallelism import Parallelism
from decodex.workloads.precision import Precision

CHECK_RTOL = 1e-12  # the fast path's fields vs evaluate's at the check points (relative)
CHECK_POINTS = ((3, 1000), (250, 4095))  # (batch offset above the smallest batch, context; capped by the window)
CACHED_KEYS = 128  # forms (and first sightings) kept; the least recently used are dropped
_SERIAL = Parallelism()

Coef = tuple[float, float, float, float]  # a + b·B + c·C + d·B·C


def _coef(row: object) -> Coef:
    a, b, c, d = (float(x) for x in row)  # type: ignore[attr-defined]
    return a, b, c, d


@dataclass(frozen=True, slots=True)
class PointOp:
    """One placed op of the form: what its record names, its polynomials, and where it runs."""

    template: str
    block: str
    name: str
    kind: str
    location: str  # the unit's or link's name
    repeat: int
    devices: int
    dtype_name: str
    peak_flops: float  # the record's ceilings (sim.estimate.op_ceilings)
    peak_bandwidth: float
    executed: Coef | None  # FLOP the unit executes (None: those counted)
    flops: Coef  # FLOP counted
    weight: Coef | None  # bytes per device (their sum is the op's bytes); None: none at any point
    kv: Coef | None
    activation: Coef | None
    rows: Coef | None  # matmul rows (tile padding), None for other ops
    unit: RooflineUnit | None  # None: a collective on ``link``
    dtype: DType
    memory: MemorySpec | None
    bandwidth_factor: float
    kernel: DecodeAttentionKernel | None  # decode attention priced by kernel waves
    kv_heads: int
    link: LinkSpec | None
    collective: str
    payload: Coef
    price: Callable[[float, float, float], OpCost] | None  # RooflineUnit.roofline_pricer for this op
    twin: int  # an earlier op priced from the same inputs (its record's numbers are this one's), or -1


@dataclass(frozen=True, slots=True)
class PointForm:
    """Everything one point needs: the ops in placement order and the step's constants."""

    ops: tuple[PointOp, ...]
    stage_weights: tuple[Coef, ...]  # stored weight bytes per device of each pipeline stage
    stage_kv: tuple[Coef, ...]
    activations: tuple[Coef, ...]  # the ops' activation polynomials that can be the largest (the workspace)
    model: str
    system: str
    mapper: str
    precision: str
    parallelism: str
    devices_used: int
    capacity_bytes: float
    device: str
    device_kind: str
    power: PowerSpec
    min_batch: int
    max_context: int


def _point_ops(grid: GridForm, model: ModelConfig, system: SystemSpec, precision: Precision,
               par: Parallelism) -> tuple[tuple[PointOp, ...], StepResult, tuple[int, int]]:
    """The form's terms joined with a plan's placements (same order: the extraction checked that
    the step's structure does not change with batch or context); also that plan's result."""
    batch, context = grid.min_batch + CHECK_POINTS[0][0], min(CHECK_POINTS[0][1], grid.max_context)
    plan = plan_step(model, system, Batch.decode(batch, context), precision=precision, parallelism=par)
    if len(plan.placements) != len(grid.terms):
        raise NotVectorizable("point estimate: the plan's placements do not match the extracted form")
    ops = []
    for placement, term in zip(plan.placements, grid.terms, strict=True):
        op = placement.op
        weight, kv, activation = (_nonzero(_coef(term.parts[:, i])) for i in range(3))
        peak_flops, peak_bandwidth = op_ceilings(placement)
        common = dict(template=placement.template.name, block=op.block, name=op.name, kind=str(op.kind),
                      location=placement.location,
                      repeat=term.repeat, devices=term.devices, dtype_name=str(op.dtype), peak_flops=peak_flops,
                      peak_bandwidth=peak_bandwidth, flops=_coef(term.flops),
                      weight=weight, kv=kv, activation=activation, dtype=op.dtype)
        if isinstance(term, LinkTerms):
            ops.append(PointOp(**common, executed=None, rows=None, unit=None, memory=None,
                               bandwidth_factor=1.0, kernel=None, kv_heads=0, link=term.link,
                               collective=term.collective, payload=_coef(term.payload), price=None, twin=-1))
            continue
        assert isinstance(term, UnitTerms) and placement.unit is not None
        unit = placement.device.units[placement.unit]
        assert isinstance(unit, RooflineUnit)
        ops.append(PointOp(**common, executed=None if term.dense_equal else _coef(term.executed_flops),
                           rows=None if term.rows is None else _coef(term.rows), unit=unit, memory=term.memory,
                           bandwidth_factor=term.bandwidth_factor, kernel=term.kernel, kv_heads=term.kv_heads,
                           link=None, collective="", payload=(0.0, 0.0, 0.0, 0.0),
                           price=unit.roofline_pricer(op.dtype, term.memory, term.bandwidth_factor), twin=-1))
    return _with_twins(ops), evaluate(plan), (batch, context)


def _pricing_inputs(op: PointOp) -> tuple[object, ...]:
    """Everything an op's record numbers (from ``devices`` on) follow from: two ops equal here
    have equal numbers at every point (a step's norms, its all-reduces)."""
    return (id(op.unit), op.dtype, id(op.memory), op.bandwidth_factor, id(op.kernel), op.kv_heads, op.executed,
            op.flops, op.weight, op.kv, op.activation, op.rows, id(op.link), op.collective, op.payload, op.devices,
            op.dtype_name, op.peak_flops, op.peak_bandwidth)


def _with_twins(ops: list[PointOp]) -> tuple[PointOp, ...]:
    """``ops`` with each op's ``twin``: the first earlier op with the same pricing inputs."""
    first: dict[tuple[object, ...], int] = {}
    out = []
    for index, op in enumerate(ops):
        key = _pricing_inputs(op)
        out.append(dataclasses.replace(op, twin=first.get(key, -1)))
        first.setdefault(key, index)
    return tuple(out)


def _nonzero(coef: Coef) -> Coef | None:
    """``coef``, or None when every term is 0 (the quantity is 0 at every point)."""
    return coef if any(coef) else None


def _undominated(polys: list[Coef]) -> tuple[Coef, ...]:
    """``polys`` without repeats and without those another one bounds term by term: the monomials
    1, B, C and B·C are never negative, so the largest value at any (B, C) is among those left
    (rounding is monotonic: floating-point too)."""
    distinct = list(dict.fromkeys(polys))
    return tuple(p for p in distinct
                 if not any(q != p and all(qi >= pi for qi, pi in zip(q, p, strict=True)) for q in distinct))


def build_point_form(model: ModelConfig, system: SystemSpec, precision: Precision, par: Parallelism) -> PointForm:
    """The checked scalar form of the model's decode step on the system; NotVectorizable when
    the step is outside the fast path or disagrees with :func:`sim.estimate.evaluate`."""
    grid = grid_form(cache_key(model), cache_key(system), precision, par)
    ops, result, first = _point_ops(grid, model, system, precision, par)
    form = PointForm(
        ops=ops, stage_weights=tuple(_coef(grid.stage_weights[:, s]) for s in range(grid.stage_weights.shape[1])),
        stage_kv=tuple(_coef(grid.stage_kv[:, s]) for s in range(grid.stage_kv.shape[1])),
        activations=_undominated([_coef(grid.activations[:, i]) for i in range(grid.activations.shape[1])]),
        model=result.model, system=result.system, mapper=result.mapper, precision=result.precision,
        parallelism=result.parallelism, devices_used=result.devices, capacity_bytes=result.memory_capacity_bytes,
        device=result.device, device_kind=result.device_kind, power=system.primary_device.power,
        min_batch=grid.min_batch, max_context=grid.max_context)
    second = (grid.min_batch + CHECK_POINTS[1][0], min(CHECK_POINTS[1][1], grid.max_context))
    plan = plan_step(model, system, Batch.decode(*second), precision=precision, parallelism=par)
    for (batch, context), want in ((first, result), (second, evaluate(plan))):
        wrong = differences(price_point(form, batch, context), want)
        if wrong:
            raise NotVectorizable(f"point estimate: {', '.join(wrong)} disagree with sim.estimate.evaluate at "
                                  f"batch {batch}, context {context}")
    return form


def _same(got: object, want: object) -> bool:
    if isinstance(want, float) and isinstance(got, float):
        if math.isnan(want):
            return math.isnan(got)
        return abs(got - want) <= CHECK_RTOL * abs(want)
    return got == want


def differences(got: StepResult, want: StepResult) -> list[str]:
    """Names of the fields (``records[i].field`` for an op) in which ``got`` differs from
    ``want`` by more than :data:`CHECK_RTOL` (relative; other values must be equal)."""
    wrong = [f.name for f in fields(StepResult) if f.name != "records"
             and not _same(getattr(got, f.name), getattr(want, f.name))]
    if len(got.records) != len(want.records):
        return [*wrong, "records"]
    for index, (a, b) in enumerate(zip(got.records, want.records, strict=True)):
        wrong += [f"records[{index}].{f}" for f in OpRecord._fields
                  if not _same(getattr(a, f), getattr(b, f))]
    return wrong


def price_point(form: PointForm, batch: int, context: int) -> StepResult:
    """The step of ``batch`` requests holding ``context`` cached tokens each, priced from
    ``form`` op by op as :func:`sim.estimate.evaluate` prices the plan (times in s, energy in J)."""
    b, c = float(batch), float(context)
    bc = b * c
    records: list[OpRecord] = []
    step_time = dynamic_energy = flops_total = bytes_total = 0.0
    for op in form.ops:
        repeat = op.repeat
        if op.twin >= 0:  # the numbers of an earlier op with the same inputs (tuple.__new__: see below)
            record = tuple.__new__(OpRecord, (op.template, op.block, op.name, op.kind, op.location, repeat,
                                              *records[op.twin][6:]))
            records.append(record)
            step_time += record.time_s * repeat
            dynamic_energy += record.energy_j * repeat
            flops_total += record.flops * repeat
            bytes_total += record.bytes * repeat
            continue
        weight = kv = activation = 0.0  # a quantity that is 0 at every point has no polynomial
        if op.weight is not None:
            w0, w1, w2, w3 = op.weight
            weight = w0 + w1 * b + w2 * c + w3 * bc
        if op.kv is not None:
            k0, k1, k2, k3 = op.kv
            kv = k0 + k1 * b + k2 * c + k3 * bc
        if op.activation is not None:
            a0, a1, a2, a3 = op.activation
            activation = a0 + a1 * b + a2 * c + a3 * bc
        nbytes = weight + kv + activation  # as Op.bytes adds them
        f0, f1, f2, f3 = op.flops
        flops = f0 + f1 * b + f2 * c + f3 * bc
        unit = op.unit
        if unit is None:
            assert op.link is not None
            f0, f1, f2, f3 = op.payload
            cost = collective_op_cost(op.collective, f0 + f1 * b + f2 * c + f3 * bc, op.devices, op.link)
        elif op.kernel is not None:
            cost = unit.decode_attention_priced(batch, op.kv_heads, flops, nbytes, op.dtype, op.memory,  # type: ignore[arg-type]
                                                flops, nbytes)
        else:
            executed = flops
            if op.executed is not None:
                f0, f1, f2, f3 = op.executed
                executed = f0 + f1 * b + f2 * c + f3 * bc
            work = executed
            if executed > 0 and op.rows is not None:
                f0, f1, f2, f3 = op.rows
                work = unit.tiled_work(executed, round(f0 + f1 * b + f2 * c + f3 * bc))
            cost = op.price(executed, work, nbytes)  # type: ignore[misc]
        time_s = cost.time_s
        energy = cost.energy_j * op.devices
        step_time += time_s * repeat
        dynamic_energy += energy * repeat
        flops_total += flops * repeat
        bytes_total += nbytes * repeat
        # tuple.__new__ is what OpRecord's own __new__ calls, without its Python frame (one per op)
        records.append(tuple.__new__(OpRecord, (
            op.template, op.block, op.name, op.kind, op.location, repeat, op.devices, op.dtype_name, flops, nbytes,
            weight, kv, activation, flops / nbytes if nbytes > 0 else 0.0, time_s, cost.compute_s, cost.memory_s,
            cost.overhead_s, cost.bound, energy, op.peak_flops, op.peak_bandwidth)))
    use = _memory_use(form, b, c, bc)
    energy = form.power.step_energy(dynamic_energy, step_time, form.devices_used)
    reason = fit_reason(use, form.capacity_bytes, form.device)
    return StepResult.of_fields(
        model=form.model, system=form.system, mapper=form.mapper, precision=form.precision,
        parallelism=form.parallelism, devices=form.devices_used, batch_size=batch, tokens=batch,
        output_tokens=batch, mean_context=c, step_time_s=step_time,
        tokens_per_s=batch / step_time if step_time > 0 else 0.0, energy_j=energy,
        energy_per_token_j=energy / batch, weight_bytes=use.weight_bytes, kv_bytes=use.kv_bytes,
        memory_required_bytes=use.total_bytes, memory_capacity_bytes=form.capacity_bytes, fits=not reason,
        reason=reason, flops=flops_total, bytes=bytes_total, records=tuple(records), device=form.device,
        device_kind=form.device_kind, band_low_s=math.nan, band_high_s=math.nan, band_source="", warnings=())


def _memory_use(form: PointForm, b: float, c: float, bc: float) -> MemoryUse:
    """:func:`sim.memory.memory_use` from the form's stage polynomials (B per device)."""
    weights = [x[0] + x[1] * b + x[2] * c + x[3] * bc for x in form.stage_weights]
    kv = [x[0] + x[1] * b + x[2] * c + x[3] * bc for x in form.stage_kv]
    workspace = max([0.0, *(x[0] + x[1] * b + x[2] * c + x[3] * bc for x in form.activations)])
    return heaviest_stage(weights, kv, workspace)


_FORMS: OrderedDict[object, PointForm | None] = OrderedDict()  # None: outside the fast path
_SEEN: OrderedDict[object, None] = OrderedDict()  # keys estimated once (a form is built on the second)
# the same forms by the identity of the (immutable) specs: the loaders return one object per
# unchanged file, so a repeated key is found without hashing a model or system by value; each
# entry holds its specs, so their ids are not reused while it is kept
_BY_IDENTITY: dict[tuple[int, int, int, Parallelism], tuple[object, object, object, PointForm | None]] = {}
_LOCK = threading.Lock()  # the dashboard estimates from several threads
_MISSING = object()


def _remember(cache: OrderedDict, key: object, value: object) -> None:
    cache[key] = value
    if len(cache) > CACHED_KEYS:
        cache.popitem(last=False)


def cached_form(model: ModelConfig, system: SystemSpec, precision: Precision, par: Parallelism) -> PointForm | None:
    """The point form of this key once it has been asked for twice (None before, and for a key
    outside the fast path): a single estimate does not pay for the extraction."""
    identity = (id(model), id(system), id(precision), par)
    hit = _BY_IDENTITY.get(identity)
    if hit is not None and hit[0] is model and hit[1] is system and hit[2] is precision:
        return hit[3]
    key = (cache_key(model), cache_key(system), precision, par)
    with _LOCK:
        form = _FORMS.get(key, _MISSING)
        if form is not _MISSING:
            _FORMS.move_to_end(key)
            _remember_identity(identity, (model, system, precision, form))  # type: ignore[arg-type]
            return form  # type: ignore[return-value]
        if key not in _SEEN:
            _remember(_SEEN, key, None)
            return None
        del _SEEN[key]
    try:  # built outside the lock (a few ms): two threads may both build it, with equal results
        built: PointForm | None = build_point_form(model, system, precision, par)
    except DecodexError:  # outside the fast path (NotVectorizable), or refused: the general path says why
        built = None
    with _LOCK:
        _remember(_FORMS, key, built)
        _remember_identity(identity, (model, system, precision, built))
    return built


def _remember_identity(identity: tuple[int, int, int, Parallelism],
                       entry: tuple[object, object, object, PointForm | None]) -> None:
    """Keep ``entry`` under its specs' identity (the caller holds the lock); the oldest entry
    goes beyond :data:`CACHED_KEYS`."""
    _BY_IDENTITY[identity] = entry
    if len(_BY_IDENTITY) > CACHED_KEYS:
        del _BY_IDENTITY[next(iter(_BY_IDENTITY))]


def clear_cache() -> None:
    """Forget every form and first sighting (tests, benchmarks)."""
    with _LOCK:
        _FORMS.clear()
        _SEEN.clear()
        _BY_IDENTITY.clear()


def point_estimate(model: object, system: object, batch: object, context: object, precision: object,
                   parallelism: object) -> StepResult | None:
    """:func:`sim.estimate.estimate` of a uniform decode batch by the fast path (arguments as
    there), or None when the point is outside it (the caller takes the general path, which also
    reports every bad argument)."""
    if type(batch) is not int or not (context is None or type(context) is int):
        return None
    if not (parallelism is None or type(parallelism) is Parallelism) or not isinstance(precision, str | Precision):
        return None
    try:
        model_cfg = load_model(model)  # type: ignore[arg-type]
        system_spec = load_system(system)  # type: ignore[arg-type]
        prec = Precision.parse(precision)
    except DecodexError:
        return None
    form = cached_form(model_cfg, system_spec, prec, parallelism or _SERIAL)
    if form is None:
        return None
    points = DEFAULT_CONTEXT if context is None else context
    if not (form.min_batch <= batch <= MAX_BATCH_REQUESTS and 1 <= points <= form.max_context):
        return None
    return price_point(form, batch, points)
