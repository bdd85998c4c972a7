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

Software variants (``software``; pure policy, the hardware spec is untouched):

- ``optimized`` (default): paged KV cache and one fused attention kernel (FlashAttention /
  PagedAttention style): the graph's attention op as built.
- ``hf-pytorch-2023``: a PyTorch decode of the NeuPIMs era, Hugging Face transformers' eager
  attention (e.g. ``modeling_gpt_neox.py`` / ``modeling_llama.py`` of transformers 4.3x:
  ``torch.cat`` of past and new K/V, ``torch.matmul(query, key.transpose(-1, -2))``,
  ``nn.functional.softmax(..., dtype=torch.float32)``, ``torch.matmul(attn_weights, value)``),
  with the batch's requests padded to its longest context (a rectangular KV tensor). Each
  layer's attention becomes: ``kv_concat`` (the padded cache copied by ``torch.cat``: read and
  written once), ``attn_scores`` (QK^T matmul, scores written to HBM), ``attn_softmax`` (an
  element-wise kernel reading and writing the scores, 5 FLOP per score, assumed), ``attn_context``
  (scores·V matmul). Under GQA the eager path repeats K/V per query head (``repeat_kv``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

import numpy as np

from decodex.core.errors import ArgumentError
from decodex.hw_models.cost import UnsupportedOpError
from decodex.hw_models.device import DeviceSpec
from decodex.hw_models.system import SystemSpec
from decodex.mappers.base import Placement, Plan, register_mapper, replica_device
from decodex.mappers.schedule import Block, Schedule, Stream, Task
from decodex.workloads.batch import Batch
from decodex.workloads.builder import build_step_graph
from decodex.workloads.graph import Graph, LayerTemplate
from decodex.workloads.ops import AttentionOp, ElementwiseOp, MatmulOp, Op, OpKind

MATRIX_KINDS = (OpKind.MATMUL, OpKind.ATTENTION, OpKind.MOE_EXPERTS)
SOFTWARE = ("optimized", "hf-pytorch-2023")
EAGER_SOFTMAX_FLOPS_PER_SCORE = 5.0  # assumed: max, subtract, exp, sum, scale per score


def eager_attention_ops(op: AttentionOp) -> tuple[Op, ...]:
    """``op`` as HF transformers' unfused eager attention over KV padded to the longest request
    (module docstring, ``hf-pytorch-2023``)."""
    requests = int(np.size(op.context_lens))
    query = int(np.max(op.query_lens))
    keys = int(np.max(op.context_lens + op.query_lens))  # padded: every request attends this many
    heads = requests * op.q_heads
    common = {"dtype": op.dtype, "block": op.block, "devices": op.devices, "replicated": op.replicated}
    kv_elements = requests * keys * op.kv_elements_per_token
    concat = ElementwiseOp(name="kv_concat", elements=kv_elements, flops_per_element=0.0, **common)
    scores = MatmulOp(name="attn_scores", m=query, k=op.qk_dim, n=keys, count=heads, **common)
    softmax = ElementwiseOp(name="attn_softmax", elements=heads * query * keys,
                            flops_per_element=EAGER_SOFTMAX_FLOPS_PER_SCORE, **common)
    context = MatmulOp(name="attn_context", m=query, k=keys, n=op.v_dim, count=heads, **common)
    return concat, scores, softmax, context


def apply_software(graph: Graph, software: str) -> Graph:
    """``graph`` with its attention ops rewritten for the ``software`` variant (``optimized``:
    unchanged, the same object)."""
    if software == "optimized":
        return graph
    templates = []
    for template in graph.templates:
        ops: list[Op] = []
        for op in template.ops:
            ops += eager_attention_ops(op) if isinstance(op, AttentionOp) else [op]
        templates.append(replace(template, ops=tuple(ops)))
    return replace(graph, templates=tuple(templates))


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


def template_named(graph: Graph, name: str) -> LayerTemplate | None:
    """The graph's template called ``name``, if any."""
    return next((t for t in graph.templates if t.name == name), None)


def op_task(placement: Placement, device_index: int) -> Task:
    """One engine task for one placed op: its unit (with the unit's memory) or its link."""
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
        template = template_named(graph, name)
        if template is not None:
            blocks.append(Block(name, tuple(op_task(placed[id(op)], 0) for op in template.ops)))
    for template, first, count in layer_runs(graph):
        tasks = tuple(op_task(placed[id(op)], 0) for op in template.ops)
        blocks.append(Block(f"{template.name}@{first}", tasks, count))
    head = template_named(graph, "head")
    if head is not None:
        blocks.append(Block("head", tuple(op_task(placed[id(op)], 0) for op in head.ops)))
    memories = tuple(sorted({(f"d0.{u.memory}", 0, u.memory) for u in device.units.values()}))
    return Schedule((Stream("batch", tuple(blocks)),), memories)


def _stage_placements(graph: Graph, placed: dict[int, Placement], stage: int) -> list[Placement]:
    pp = graph.parallelism.pp
    out: list[Placement] = []
    embedding = template_named(graph, "embedding")
    if stage == 0 and embedding is not None:
        out += [placed[id(op)] for op in embedding.ops]
    for template, first, count in layer_runs(graph):
        for layer in range(first, first + count):
            if graph.stage_of_layer(layer) == stage:
                out += [placed[id(op)] for op in template.ops]
    head = template_named(graph, "head")
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
        out.append(batch.subset(index))
    return out


def pipeline_schedule(graph: Graph, system: SystemSpec, device: DeviceSpec, microbatches: int,
                      rounds: int, transform: Callable[[Graph], Graph] | None = None) -> Schedule:
    """Micro-batch streams through ``pp`` stages, ``rounds`` decode rounds each (see module doc)."""
    pp = graph.parallelism.pp
    streams = []
    for index, micro in enumerate(split_batch(graph.batch, microbatches)):
        sub = build_step_graph(graph.model, micro, graph.precision, graph.parallelism)
        if transform is not None:
            sub = transform(sub)
        placed = place(sub, system, device)
        send = template_named(sub, "pipeline")
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
    ``software``: ``optimized`` (fused, paged attention) or ``hf-pytorch-2023`` (unfused eager
    attention over padded KV; module docstring).
    """

    name: str = "gpu"
    microbatches: int | None = None
    rounds: int = 8
    software: str = "optimized"

    def map(self, graph: Graph, system: SystemSpec) -> Plan:
        device = replica_device(graph, system, "gpu")
        par = graph.parallelism
        devices = par.devices
        if self.rounds < 2:
            raise ArgumentError(f"rounds: {self.rounds} outside [2, ...)")
        if self.software not in SOFTWARE:
            raise ArgumentError(f"software: {self.software!r} not one of {', '.join(SOFTWARE)}")
        source = graph
        software = self.software
        graph = apply_software(graph, software)
        placed = place(graph, system, device)
        placements = tuple(placed[id(op)] for _, op in graph.ops())
        micro = self.microbatches or (min(par.pp, graph.batch.num_requests) if par.pp > 1 else 1)
        if par.pp == 1 and micro > 1:
            raise ArgumentError("microbatches: needs pipeline parallelism (--pp > 1)")
        schedule: Schedule | Callable[[], Schedule]
        if par.pp > 1:  # built now: it checks the micro-batches and rounds
            schedule = pipeline_schedule(source, system, device, micro, self.rounds,
                                         None if software == "optimized" else lambda g: apply_software(g, software))
        else:  # built when the engine asks (estimate never does)
            schedule = partial(single_stream_schedule, graph, placed, device)
        options = {"microbatches": micro} if software == "optimized" else {"microbatches": micro, "software": software}
        # the plan keeps the source graph: memory use counts the stored KV cache, not the kernels
        return Plan(source, system, self.name, placements, devices, options, schedule)
