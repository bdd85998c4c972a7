"""The analytical path: price every op of a plan and add them up (no overlap)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from decodex.core.errors import ArgumentError, did_you_mean
from decodex.hw_models.system import SystemSpec, load_system
from decodex.mappers.base import MAPPERS, Placement, Plan, get_mapper
from decodex.sim.costing import placement_cost
from decodex.sim.memory import fit_reason, memory_use
from decodex.sim.results import OpRecord, StepResult
from decodex.workloads.batch import MIN_DECODE_CONTEXT, Batch, Routing, is_number, is_whole, token_counts
from decodex.workloads.builder import build_step_graph
from decodex.workloads.catalog import load_model
from decodex.workloads.model_config import ModelConfig
from decodex.workloads.ops import OpKind
from decodex.workloads.parallelism import Parallelism
from decodex.workloads.precision import Precision

DEFAULT_CONTEXT = 1024
MAX_MAPPER_COUNT = 65536  # a count a mapper option holds (microbatches, rounds, ffn_devices ...)
# the first estimate of a process (one CLI run) does not import the fast path (sim.point_estimate, ~15 ms)
FAST_PATH: dict[str, Any] = {"armed": False, "point_estimate": None}  # the function once imported


def op_ceilings(placement: Placement) -> tuple[float, float]:
    """The placement's peak FLOP/s and peak memory (or link) bandwidth, B/s."""
    if placement.link is not None:
        return 0.0, placement.link.bandwidth_bytes_per_s
    assert placement.unit is not None
    unit = placement.device.units[placement.unit]
    memory = placement.device.memories[unit.memory]
    view = getattr(unit, "internal_memory", None)  # a near-memory unit reads through its own path
    if view is not None:
        memory = view(memory)
    return unit.peak_flops(placement.op.dtype), memory.bandwidth_bytes_per_s


class ConcurrentGroup:
    """Placements that run at once (:attr:`Placement.concurrent`): the group takes its slowest
    member's time, and at least the time the members' shared memory needs for all their bytes
    at its shared bandwidth (a fluid lower bound of the engine's contention). A group of one
    (most ops) keeps no byte account."""

    __slots__ = ("_first", "bytes_by_memory", "members", "slowest_s")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Empty the group (the next op starts a new one)."""
        self.slowest_s = 0.0
        self.members = 0
        self.bytes_by_memory: dict[tuple[int, str], tuple[float, float]] = {}
        self._first: tuple[Placement, float] | None = None

    def add(self, placement: Placement, time_s: float, nbytes: float) -> None:
        """Add one member: its time (s, all repeats) and bytes moved (B, all repeats)."""
        if time_s > self.slowest_s:
            self.slowest_s = time_s
        self.members += 1
        if self.members == 1:
            self._first = (placement, nbytes)
            return
        if self.members == 2 and self._first is not None:
            self._account(*self._first)
        self._account(placement, nbytes)

    def _account(self, placement: Placement, nbytes: float) -> None:
        if placement.unit is None:
            return
        unit = placement.device.units[placement.unit]
        memory = placement.device.memories[unit.memory]
        key = (id(placement.device), unit.memory)
        total, budget = self.bytes_by_memory.get(key, (0.0, memory.shared_bandwidth_bytes_per_s))
        self.bytes_by_memory[key] = (total + nbytes, budget)

    def time_s(self) -> float:
        """Time of the group, s."""
        if self.members <= 1:
            return self.slowest_s
        shared = max((b / budget for b, budget in self.bytes_by_memory.values() if budget > 0), default=0.0)
        return max(self.slowest_s, shared)


def evaluate(plan: Plan) -> StepResult:
    """Price each placed op and sum: ops of one device run one after another (a group of
    concurrent placements counts as :class:`ConcurrentGroup`); the devices of the replica run in
    lock-step, so the step time is one device's sum."""
    graph = plan.graph
    records = []
    step_time = 0.0
    dynamic_energy = 0.0
    flops = 0.0
    nbytes = 0.0
    group = ConcurrentGroup()
    for placement in plan.placements:
        op = placement.op
        template = placement.template
        cost = placement_cost(placement)
        repeat = template.repeat
        if not placement.concurrent:
            step_time += group.time_s()
            group.reset()
        group.add(placement, cost.time_s * repeat, op.bytes * repeat)
        dynamic_energy += cost.energy_j * op.devices * repeat
        flops += op.flops * repeat
        nbytes += op.bytes * repeat
        peak_flops, peak_bandwidth = op_ceilings(placement)
        records.append(OpRecord(
            template.name, op.block, op.name, str(op.kind),
            placement.location, repeat,
            op.devices, str(op.dtype), op.flops, op.bytes,
            op.weight_bytes, op.kv_bytes, op.activation_bytes,
            op.arithmetic_intensity, cost.time_s, cost.compute_s,
            cost.memory_s, cost.overhead_s, cost.bound,
            cost.energy_j * op.devices, peak_flops, peak_bandwidth,
        ))
    step_time += group.time_s()
    device = plan.system.primary_device
    energy = device.power.step_energy(dynamic_energy, step_time, plan.devices_used)
    use = memory_use(graph)
    capacity = device.capacity_bytes
    reason = fit_reason(use, capacity, device.name)
    batch = graph.batch
    out_tokens = batch.num_output_tokens
    return StepResult(
        model=graph.model.name, system=plan.system.name, mapper=plan.mapper, precision=graph.precision.name,
        parallelism=graph.parallelism.label, devices=plan.devices_used, batch_size=batch.num_requests,
        tokens=batch.num_tokens, output_tokens=out_tokens, mean_context=float(np.mean(batch.context_lens)),
        step_time_s=step_time, tokens_per_s=out_tokens / step_time if step_time > 0 else 0.0,
        energy_j=energy, energy_per_token_j=energy / out_tokens if out_tokens else float("nan"),
        weight_bytes=use.weight_bytes, kv_bytes=use.kv_bytes, memory_required_bytes=use.total_bytes,
        memory_capacity_bytes=capacity, fits=not reason, reason=reason, flops=flops, bytes=nbytes,
        records=tuple(records), device=device.name, device_kind=device.kind,
    )


def make_batch(batch: Batch | int, context: int | np.ndarray | None = None, routing: Routing | None = None) -> Batch:
    """A Batch from a Batch, or from a batch size (a whole number of requests in
    [1, MAX_BATCH_REQUESTS]) and a context length (tokens already cached per request: a whole
    number or one per request, each in [MIN_DECODE_CONTEXT = 1, MAX_TOKENS_PER_REQUEST]: a decode
    follows a prompt of at least one token; default 1024 tokens);
    ``routing`` (MoE expert choice) replaces the batch's when given."""
    if routing is not None and not isinstance(routing, Routing):
        raise ArgumentError(f"routing: must be a Routing or None, got {type(routing).__name__} {routing!r:.80}")
    if isinstance(batch, Batch):
        if context is not None:
            raise ArgumentError("context: give it inside the Batch, not beside it")
        return batch if routing is None else dataclasses.replace(batch, routing=routing)
    context = DEFAULT_CONTEXT if context is None else token_counts(context, "context lengths", MIN_DECODE_CONTEXT)
    return Batch.decode(batch, context, routing)


def check_mapper_options(mapper: str, options: Mapping[str, object]) -> None:
    """Refuse a caller's mapper option that the mapper ``mapper`` does not have, or whose value
    has the wrong type: counts (``microbatches``, ``rounds`` ...) are integers in
    [1, MAX_MAPPER_COUNT], flags booleans, names strings, other numbers finite. ArgumentError
    names the option and what is allowed; the mapper checks the finer ranges itself."""
    cls = MAPPERS.get(mapper)
    if cls is None or not dataclasses.is_dataclass(cls):
        return  # an unknown mapper is refused by get_mapper, naming the registered ones
    known = {f.name: str(f.type) for f in dataclasses.fields(cls) if f.name != "name"}
    for key, value in options.items():
        if key not in known:
            close = did_you_mean(key, known)
            hint = f"{close} " if close else ""
            raise ArgumentError(f"{key}: not an option of the {mapper!r} mapper; {hint}"
                                f"options: {', '.join(sorted(known)) or 'none'}")
        kind = known[key]
        if value is None and "None" in kind:
            continue
        if kind.startswith("int"):
            if not is_whole(value) or not 1 <= value <= MAX_MAPPER_COUNT:  # type: ignore[operator]
                raise ArgumentError(f"{key}: {value!r} must be an integer in [1, {MAX_MAPPER_COUNT}]")
        elif kind.startswith("float"):
            if not is_number(value):
                raise ArgumentError(f"{key}: {value!r} must be a finite number")
        elif kind.startswith("bool"):
            if not isinstance(value, bool):
                raise ArgumentError(f"{key}: {value!r} must be True or False")
        elif kind.startswith("str") and not isinstance(value, str):
            raise ArgumentError(f"{key}: {value!r} must be a string")


def _omitted(omit: object) -> tuple[OpKind, ...]:
    """``omit`` as op kinds: a sequence of OpKind or their names; ArgumentError listing the kinds."""
    allowed = ", ".join(kind.value for kind in OpKind)
    if isinstance(omit, str) or not isinstance(omit, tuple | list | set | frozenset):
        raise ArgumentError(f"omit: must be a tuple of op kinds ({allowed}), got {omit!r:.80}")
    kinds = []
    for kind in omit:
        try:
            kinds.append(OpKind(kind))
        except ValueError:
            raise ArgumentError(f"omit: {kind!r:.80} is not an op kind; allowed: {allowed}") from None
    return tuple(kinds)


def plan_step(model: str | Path | ModelConfig, system: str | Path | SystemSpec, batch: Batch | int,
              *, context: int | np.ndarray | None = None, precision: str | Precision = "bf16",
              mapper: str | None = None, parallelism: Parallelism | None = None,
              omit: tuple[OpKind, ...] = (), routing: Routing | None = None, **mapper_options: object) -> Plan:
    """Build the graph and map it: the shared front half of ``estimate`` and ``simulate``.
    ``omit``: op kinds left out of the graph (:meth:`workloads.graph.Graph.without`, a what-if).
    ``routing``: how MoE tokens pick experts (default: the batch's, uniform).
    Every bad argument is an ArgumentError naming it (:func:`make_batch` for ``batch`` and
    ``context``, :func:`check_mapper_options` for the mapper options)."""
    if parallelism is not None and not isinstance(parallelism, Parallelism):
        raise ArgumentError(f"parallelism: must be a Parallelism or None, got {type(parallelism).__name__} "
                            f"{parallelism!r:.80}")
    if mapper is not None and (not isinstance(mapper, str) or not mapper):
        raise ArgumentError(f"mapper: {mapper!r:.80} is not a mapper name; registered: {', '.join(sorted(MAPPERS))}")
    kinds = _omitted(omit)
    model_cfg = load_model(model)
    system_spec = load_system(system)
    step_batch = make_batch(batch, context, routing)
    prec = Precision.parse(precision)
    name = mapper or system_spec.default_mapper
    check_mapper_options(name, mapper_options)
    graph = build_step_graph(model_cfg, step_batch, prec, parallelism or Parallelism()).without(kinds)
    options = {**system_spec.mapper_options, **mapper_options}
    return get_mapper(name, **options).map(graph, system_spec)


def estimate(model: str | Path | ModelConfig, system: str | Path | SystemSpec, batch: Batch | int, *,
             context: int | np.ndarray | None = None, precision: str | Precision = "bf16",
             mapper: str | None = None, parallelism: Parallelism | None = None,
             routing: Routing | None = None, **mapper_options: object) -> StepResult:
    """Analytical estimate of one step.

    ``model``: catalog name, config.json path or ModelConfig. ``system``: catalog name, TOML
    path or SystemSpec. ``batch``: a Batch, or a decode batch size with ``context`` cached
    tokens per request. ``precision``: a preset (``bf16``, ``fp8``, ``w4a16`` ...) or
    ``w=..,a=..,kv=..``. ``mapper``: defaults to the system's. ``routing``: MoE expert choice
    (:class:`workloads.batch.Routing`, default uniform). Times in s, energy in J.

    A uniform decode batch of a dense model on a ``gpu``-mapped system is priced, from the second
    estimate of its (model, system, precision, parallelism) on, from the step's cached polynomial
    form (:mod:`sim.point_estimate`): the same result without building the graph. (The first
    estimate of a process does not load the fast path: a single CLI run starts faster.)
    """
    if routing is None and not mapper_options and mapper in (None, "gpu"):
        if FAST_PATH["armed"]:
            point_estimate = FAST_PATH["point_estimate"]
            if point_estimate is None:
                from decodex.sim.point_estimate import point_estimate  # imports this module

                FAST_PATH["point_estimate"] = point_estimate
            fast = point_estimate(model, system, batch, context, precision, parallelism)
            if fast is not None:
                return fast
        FAST_PATH["armed"] = True
    plan = plan_step(model, system, batch, context=context, precision=precision, mapper=mapper,
                     parallelism=parallelism, routing=routing, **mapper_options)
    return evaluate(plan)
