"""The analytical path: price every op of a plan and add them up (no overlap)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from decodex.core.errors import ArgumentError
from decodex.hw_models.system import SystemSpec, load_system
from decodex.mappers.base import Placement, Plan, get_mapper
from decodex.sim.costing import placement_cost
from decodex.sim.memory import fit_reason, memory_use
from decodex.sim.results import OpRecord, StepResult
from decodex.workloads.batch import Batch, Routing
from decodex.workloads.builder import build_step_graph
from decodex.workloads.catalog import load_model
from decodex.workloads.model_config import ModelConfig
from decodex.workloads.ops import OpKind
from decodex.workloads.parallelism import Parallelism
from decodex.workloads.precision import Precision

DEFAULT_CONTEXT = 1024


def _ceilings(placement: Placement) -> dict[str, float]:
    if placement.link is not None:
        return {"peak_flops": 0.0, "peak_bandwidth_bytes_per_s": placement.link.bandwidth_bytes_per_s}
    assert placement.unit is not None
    unit = placement.device.units[placement.unit]
    memory = placement.device.memories[unit.memory]
    view = getattr(unit, "internal_memory", None)  # a near-memory unit reads through its own path
    if view is not None:
        memory = view(memory)
    return {"peak_flops": unit.peak_flops(placement.op.dtype),
            "peak_bandwidth_bytes_per_s": memory.bandwidth_bytes_per_s}


class ConcurrentGroup:
    """Placements that run at once (:attr:`Placement.concurrent`): the group takes its slowest
    member's time, and at least the time the members' shared memory needs for all their bytes
    at its shared bandwidth (a fluid lower bound of the engine's contention)."""

    def __init__(self) -> None:
        self.slowest_s = 0.0
        self.members = 0
        self.bytes_by_memory: dict[tuple[int, str], tuple[float, float]] = {}

    def add(self, placement: Placement, time_s: float, nbytes: float) -> None:
        """Add one member: its time (s, all repeats) and bytes moved (B, all repeats)."""
        self.slowest_s = max(self.slowest_s, time_s)
        self.members += 1
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
            group = ConcurrentGroup()
        group.add(placement, cost.time_s * repeat, op.bytes * repeat)
        dynamic_energy += cost.energy_j * op.devices * repeat
        flops += op.flops * repeat
        nbytes += op.bytes * repeat
        records.append(OpRecord(
            template=template.name, block=op.block, name=op.name, kind=str(op.kind),
            unit=placement.unit or (placement.link.name if placement.link else ""), repeat=repeat,
            devices=op.devices, dtype=str(op.dtype), flops=op.flops, bytes=op.bytes,
            weight_bytes=op.weight_bytes, kv_bytes=op.kv_bytes, activation_bytes=op.activation_bytes,
            arithmetic_intensity=op.arithmetic_intensity, time_s=cost.time_s, compute_s=cost.compute_s,
            memory_s=cost.memory_s, overhead_s=cost.overhead_s, bound=cost.bound,
            energy_j=cost.energy_j * op.devices, **_ceilings(placement),
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
    """A Batch from a Batch, or from a batch size and a context length (default 1024 tokens);
    ``routing`` (MoE expert choice) replaces the batch's when given."""
    if isinstance(batch, Batch):
        if context is not None:
            raise ArgumentError("context: give it inside the Batch, not beside it")
        return batch if routing is None else dataclasses.replace(batch, routing=routing)
    return Batch.decode(batch, DEFAULT_CONTEXT if context is None else context, routing)


def plan_step(model: str | Path | ModelConfig, system: str | Path | SystemSpec, batch: Batch | int,
              *, context: int | np.ndarray | None = None, precision: str | Precision = "bf16",
              mapper: str | None = None, parallelism: Parallelism | None = None,
              omit: tuple[OpKind, ...] = (), routing: Routing | None = None, **mapper_options: object) -> Plan:
    """Build the graph and map it: the shared front half of ``estimate`` and ``simulate``.
    ``omit``: op kinds left out of the graph (:meth:`workloads.graph.Graph.without`, a what-if).
    ``routing``: how MoE tokens pick experts (default: the batch's, uniform)."""
    model_cfg = load_model(model)
    system_spec = load_system(system)
    graph = build_step_graph(model_cfg, make_batch(batch, context, routing), Precision.parse(precision),
                             parallelism or Parallelism()).without(omit)
    options = {**system_spec.mapper_options, **mapper_options}
    return get_mapper(mapper or system_spec.default_mapper, **options).map(graph, system_spec)


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
    """
    plan = plan_step(model, system, batch, context=context, precision=precision, mapper=mapper,
                     parallelism=parallelism, routing=routing, **mapper_options)
    return evaluate(plan)
