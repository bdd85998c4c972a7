"""The GPU mapper: one model replica on identical devices, tensor/expert/pipeline parallel.

Placement: matrix-class ops (matmul, attention, experts) go to the device's matrix unit
(tensor cores) when it has a datapath for the op's dtype, else to a vector unit (CUDA cores);
element-wise ops go to a vector unit; collectives run on the link joining their group.

Schedule for the discrete-event engine:
- without pipeline parallelism, one stream runs every op in order (a CUDA stream): blocks are the
  embedding, each run of identical decoder layers, and the head; one task per op, on its unit;
- with ``pp`` stages, the batch is split into ``microbatches`` (requests dealt round-robin);
  each micro-batch is a stream that runs ``rounds`` decode rounds, each round its stage segments
  on the stage's devices with the activation send between stages. A stage serves one micro-batch
  at a time (earlier micro-batches first), so fill, drain and bubbles come out of the schedule;
  the reported step time is the steady-state round period.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hw_models.cost import UnsupportedOpError
from hw_models.device import DeviceSpec
from hw_models.system import SystemSpec
from mappers.base import Placement, Plan, register_mapper
from mappers.schedule import Block, Schedule, Stream, Task
from workloads.batch import Batch
from workloads.builder import build_step_graph
from workloads.errors import ArgumentError, InfeasibleError
from workloads.graph import Graph, LayerTemplate
from workloads.ops import Op, OpKind

MATRIX_KINDS = (OpKind.MATMUL, OpKind.ATTENTION, OpKind.MOE_EXPERTS)


def choose_unit(op: Op, device: DeviceSpec) -> str:
    """Name of the unit that runs ``op``: the preferred role's first unit with the op's dtype,
    else the other role's."""
    roles = ("matrix", "vector") if op.kind in MATRIX_KINDS else ("vector", "matrix")
    for role in roles:
        for name, unit in device.units.items():
            if unit.role == role and unit.supports(op.dtype):
                return name
    raise UnsupportedOpError(
        f"device {device.name!r} has no unit with a {op.dtype} datapath for op {op.name!r}; "
        "try another --precision")


def place(graph: Graph, system: SystemSpec, device: DeviceSpec) -> dict[int, Placement]:
    """Every op of ``graph`` placed on a unit or link, keyed by ``id(op)``."""
    placed: dict[int, Placement] = {}
    for template, op in graph.ops():
        if op.kind in (OpKind.COLLECTIVE, OpKind.TRANSFER):
            placed[id(op)] = Placement(template, op, device, link=system.link_for_group(op.devices))
        else:
            placed[id(op)] = Placement(template, op, device, unit=choose_unit(op, device))
    return placed


def layer_runs(graph: Graph) -> list[tuple[LayerTemplate, int, int]]:
    """Decoder layers in model order as runs of one template: (template, first layer, count)."""
    template_of = {layer: t for t in graph.templates for layer in t.layers}
    runs: list[tuple[LayerTemplate, int, int]] = []
    for layer in range(graph.model.num_layers):
        template = template_of[layer]
        if runs and runs[-1][0] is template:
            runs[-1] = (template, runs[-1][1], runs[-1][2] + 1)
        else:
            runs.append((template, layer, 1))
    return runs


def _template(graph: Graph, name: str) -> LayerTemplate | None:
    return next((t for t in graph.templates if t.name == name), None)


def _op_task(placement: Placement, device_index: int) -> Task:
    if placement.link is not None:
        track = f"{placement.link.name}"
        return Task((placement,), (f"link.{track}",), track, placement.op.name)
    device = placement.device
    assert placement.unit is not None
    unit = device.units[placement.unit]
    track = f"d{device_index}.{placement.unit}"
    return Task((placement,), (track,), track, placement.op.name, memory=f"d{device_index}.{unit.memory}")


def single_stream_schedule(graph: Graph, placed: dict[int, Placement], device: DeviceSpec) -> Schedule:
    """One stream, one task per op, blocks = embedding, runs of identical layers, head."""
    blocks = []
    for name in ("embedding",):
        template = _template(graph, name)
        if template is not None:
            blocks.append(Block(name, tuple(_op_task(placed[id(op)], 0) for op in template.ops)))
    for template, first, count in layer_runs(graph):
        tasks = tuple(_op_task(placed[id(op)], 0) for op in template.ops)
        blocks.append(Block(f"{template.name}@{first}", tasks, count))
    head = _template(graph, "head")
    if head is not None:
        blocks.append(Block("head", tuple(_op_task(placed[id(op)], 0) for op in head.ops)))
    memories = tuple(sorted({(f"d0.{u.memory}", 0, u.memory) for u in device.units.values()}))
    return Schedule((Stream("batch", tuple(blocks)),), memories)


def _stage_placements(graph: Graph, placed: dict[int, Placement], stage: int) -> list[Placement]:
    pp = graph.parallelism.pp
    out: list[Placement] = []
    embedding = _template(graph, "embedding")
    if stage == 0 and embedding is not None:
        out += [placed[id(op)] for op in embedding.ops]
    for template, first, count in layer_runs(graph):
        for layer in range(first, first + count):
            if graph.stage_of_layer(layer) == stage:
                out += [placed[id(op)] for op in template.ops]
    head = _template(graph, "head")
    if stage == pp - 1 and head is not None:
        out += [placed[id(op)] for op in head.ops]
    return out


def split_batch(batch: Batch, parts: int) -> list[Batch]:
    """Deal the requests of ``batch`` round-robin into ``parts`` micro-batches."""
    if not 1 <= parts <= batch.num_requests:
        raise ArgumentError(f"microbatches: {parts} outside [1, batch size {batch.num_requests}]")
    out = []
    for part in range(parts):
        index = np.arange(part, batch.num_requests, parts)
        out.append(Batch(batch.context_lens[index], batch.query_lens[index], batch.emits_token[index],
                         batch.routing))
    return out


def pipeline_schedule(graph: Graph, system: SystemSpec, device: DeviceSpec, microbatches: int,
                      rounds: int) -> Schedule:
    """Micro-batch streams through ``pp`` stages, ``rounds`` decode rounds each (see module doc)."""
    pp = graph.parallelism.pp
    streams = []
    for index, micro in enumerate(split_batch(graph.batch, microbatches)):
        sub = build_step_graph(graph.model, micro, graph.precision, graph.parallelism)
        placed = place(sub, system, device)
        send = _template(sub, "pipeline")
        tasks: list[Task] = []
        for stage in range(pp):
            tasks.append(Task(tuple(_stage_placements(sub, placed, stage)), (f"device{stage}",), f"stage{stage}",
                              f"mb{index}", fused=True))
            if stage < pp - 1 and send is not None:
                sends = tuple(placed[id(op)] for op in send.ops)
                tasks.append(Task(sends, (f"link{stage}",), f"link{stage}-{stage + 1}", f"mb{index}", fused=True))
        streams.append(Stream(f"mb{index}", (Block("round", tuple(tasks), rounds),), priority=index))
    return Schedule(tuple(streams), (), period_block="round")


@register_mapper("gpu")
@dataclass(frozen=True)
class GpuMapper:
    """Homogeneous devices running one replica (see module docstring).

    ``microbatches``: pipeline micro-batches (default: ``pp``, at most the batch size; 1 without
    pipeline parallelism). ``rounds``: decode rounds the engine runs to reach the steady state.
    """

    name: str = "gpu"
    microbatches: int | None = None
    rounds: int = 8

    def map(self, graph: Graph, system: SystemSpec) -> Plan:
        if len(system.groups) != 1:
            raise InfeasibleError(f"the gpu mapper needs identical devices; {system.name!r} has "
                                  f"{len(system.groups)} device groups")
        device = system.primary_device
        par = graph.parallelism
        devices = par.devices
        if devices > system.device_count and not system.scalable:
            raise InfeasibleError(f"{par.label} needs {devices} devices; system "
                                  f"{system.name!r} has {system.device_count}")
        if self.rounds < 2:
            raise ArgumentError(f"rounds: {self.rounds} outside [2, ...)")
        placed = place(graph, system, device)
        placements = tuple(placed[id(op)] for _, op in graph.ops())
        micro = self.microbatches or (min(par.pp, graph.batch.num_requests) if par.pp > 1 else 1)
        if par.pp == 1 and micro > 1:
            raise ArgumentError("microbatches: needs pipeline parallelism (--pp > 1)")
        if par.pp > 1:
            schedule = pipeline_schedule(graph, system, device, micro, self.rounds)
        else:
            schedule = single_stream_schedule(graph, placed, device)
        return Plan(graph, system, self.name, placements, devices, {"microbatches": micro}, schedule)
