"""The NeuPIMs mapper: a decode step split between an NPU and bank-level PIM (ASPLOS 2024).

Placement (policy; the unit models price it):

- matmuls (QKV, projection, FFN, LM head) and MoE experts on the NPU's systolic unit;
- element-wise ops (norms, activation, RoPE, embedding) on its vector unit;
- decode attention on the PIM unit, each request's KV cache in one channel: the assignment comes
  from :func:`hw_models.bank_pim.assign_channels` (``channel_policy``: ``greedy`` for NeuPIMs,
  ``round_robin`` for the naive NPU+PIM baseline) over the requests' PIM cycles, and is carried by
  a :class:`~hw_models.bank_pim.ChannelAssignedAttentionOp`, so the PIM time is the slowest
  channel's;
- the attention's softmax on the vector unit: an element-wise op over the scores (q_heads ×
  attended keys per device), 5 FLOP per score (max, subtract, exp, sum, scale: an assumption).
  The scores travel between the banks and the NPU by READRES/GWRITE, which the PIM time already
  counts, so the softmax moves no HBM bytes (the artifact's ``PIMGEMVSoftmax`` keeps them on chip);
- collectives on the system's link.

Schedule (discrete-event engine): one stream per sub-batch. With ``sub_batches = 2`` the
requests of every channel are split in two (longest first, each to the lighter half), so both
halves keep the channel balance; each half is its own step graph (its GEMMs re-read the weights:
the price of interleaving). Each stream's blocks are the embedding, the decoder layers (runs of one
template, split at pipeline-stage boundaries, ``repeat`` = layers, folded by the engine) with the
stage sends between, and the head; one task per op on its unit (``d0.<unit>``, memory
``d0.<memory>``). Stream A has priority over stream B on every contended unit, so while A's
attention runs on the PIM, B's GEMMs take the NPU, and vice versa: the interleaving comes out of
the resources, not a formula. Whether the PIM and the NPU's memory traffic overlap is the
memory's ``access`` (``concurrent``: dual row buffers; ``exclusive``: single row buffer).

Pipeline stages run one after another on the timeline (tracks of device 0): a step's time is the
sum over stages, as ``estimate`` counts the baselines; stages are not pipelined across sub-batches.
With one sub-batch the schedule is a single stream and ``simulate`` equals ``estimate``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from decodex.core.errors import ArgumentError
from decodex.hw_models.bank_pim import CHANNEL_POLICIES, BankPimUnit, ChannelAssignedAttentionOp, assign_channels
from decodex.hw_models.device import DeviceSpec
from decodex.hw_models.system import SystemSpec
from decodex.mappers.base import PimUnits, Placement, Plan, find_pim_units, register_mapper, replica_device
from decodex.mappers.gpu import layer_runs, op_task, template_named
from decodex.mappers.schedule import Block, Schedule, Stream, Task
from decodex.workloads.builder import build_step_graph
from decodex.workloads.graph import Graph, LayerTemplate
from decodex.workloads.ops import AttentionOp, ElementwiseOp, Op, OpKind

INTERLEAVE_MIN_BATCH = 256  # seed (NeuPIMs): sub-batch interleaving is used at batch >= 256
SOFTMAX_FLOPS_PER_SCORE = 5.0  # assumed: max, subtract, exp, sum, scale per score


def find_units(device: DeviceSpec) -> PimUnits:
    """The device's bank_pim unit, its first other matrix unit (the NPU) and vector unit."""
    return find_pim_units(device, BankPimUnit, "neupims")


def split_channels(channel_of_request: np.ndarray, loads: np.ndarray, channels: int, parts: int) -> list[np.ndarray]:
    """Request indices of ``parts`` sub-batches: each channel's requests are dealt longest first
    (by ``loads``) to the lighter part of that channel (ties: the lighter part overall, so a
    channel holding one request alternates between parts), so every part keeps the channel balance."""
    out: list[list[int]] = [[] for _ in range(parts)]
    total = np.zeros(parts)
    for channel in range(channels):
        index = np.flatnonzero(channel_of_request == channel)
        index = index[np.argsort(-loads[index], kind="stable")]
        weight = np.zeros(parts)
        for request in index:
            part = min(range(parts), key=lambda p: (weight[p], total[p], len(out[p]), p))
            out[part].append(int(request))
            weight[part] += loads[request]
            total[part] += loads[request]
    return [np.sort(np.asarray(part, dtype=np.int64)) for part in out]


def softmax_op(op: AttentionOp) -> ElementwiseOp:
    """The attention's softmax as an element-wise op over its scores (see module docstring)."""
    return ElementwiseOp(name="attn_softmax", dtype=op.dtype, block=op.block, devices=op.devices,
                         replicated=op.replicated, elements=round(op.q_heads * op.attended_pairs),
                         flops_per_element=SOFTMAX_FLOPS_PER_SCORE, tensors_read=0, tensors_written=0)


def pim_attention(op: AttentionOp, channel_of_request: np.ndarray) -> ChannelAssignedAttentionOp:
    """``op`` with its requests' PIM channels attached."""
    values = {f.name: getattr(op, f.name) for f in fields(op) if f.init}
    return ChannelAssignedAttentionOp(**values, channel_of_request=np.asarray(channel_of_request, dtype=np.int64))



@register_mapper("neupims")
@dataclass(frozen=True)
class NeuPimsMapper:
    """NPU + bank-PIM mapping (see module docstring).

    ``channel_policy``: ``greedy`` (NeuPIMs) or ``round_robin`` (naive baseline).
    ``sub_batches``: 1 or 2 streams; ``None`` = 2 when the batch has at least 256 requests.
    ``channels``: the PIM channel of each request as a serving system placed its KV cache (e.g. a
    trace's), instead of ``channel_policy``; one per request, each in 0 .. channels - 1.
    """

    name: str = "neupims"
    channel_policy: str = "greedy"
    sub_batches: int | None = None
    channels: tuple[int, ...] | None = None

    def map(self, graph: Graph, system: SystemSpec) -> Plan:
        if self.channel_policy not in CHANNEL_POLICIES:
            raise ArgumentError(f"channel_policy: {self.channel_policy!r} not one of {', '.join(CHANNEL_POLICIES)}")
        device = replica_device(graph, system, "neupims")
        units = find_units(device)
        pim = device.units[units.pim]
        assert isinstance(pim, BankPimUnit)
        par = graph.parallelism
        requests = graph.batch.num_requests
        parts = self.sub_batches
        if parts is None:
            parts = 2 if requests >= INTERLEAVE_MIN_BATCH else 1
        if parts not in (1, 2) or parts > requests:
            raise ArgumentError(f"sub_batches: {parts} must be 1 or 2 (and at most the batch size {requests})")
        attention = next((op for _, op in graph.ops() if isinstance(op, AttentionOp)), None)
        loads = pim.op_work(attention).cycles if attention is not None else np.ones(requests)
        channel = (assign_channels(loads, pim.channels, self.channel_policy) if self.channels is None
                   else self._given_channels(requests, pim.channels))
        if parts == 1:
            subs = [(graph, channel)]
        else:
            subs = []
            for index in split_channels(channel, loads, pim.channels, parts):
                sub = build_step_graph(graph.model, graph.batch.subset(index), graph.precision,
                                       par).without(graph.omitted)
                subs.append((sub, channel[index]))
        streams = []
        placements: list[Placement] = []
        for number, (sub, sub_channel) in enumerate(subs):
            placed = self._place(sub, system, device, units, sub_channel)
            streams.append(Stream(f"sub{number}", self._blocks(sub, placed), priority=number))
            for template in sub.templates:
                for op in template.ops:
                    placements += placed[id(op)]
        memories = tuple(sorted({(f"d0.{u.memory}", 0, u.memory) for u in device.units.values()}))
        schedule = Schedule(tuple(streams), memories)
        options = {"channel_policy": self.channel_policy if self.channels is None else "given",
                   "sub_batches": parts}
        return Plan(graph, system, self.name, tuple(placements), par.devices, options, schedule)

    def _given_channels(self, requests: int, channels: int) -> np.ndarray:
        """``channels`` as an array, checked against the batch and the PIM (ArgumentError)."""
        given = np.asarray(self.channels, dtype=np.float64).ravel()
        if given.size != requests:
            raise ArgumentError(f"channels: {given.size} given, the batch has {requests} requests")
        if given.size and (not np.all(given == np.round(given)) or given.min() < 0 or given.max() >= channels):
            raise ArgumentError(f"channels: each must be an integer in 0 .. {channels - 1}")
        return given.astype(np.int64)

    @staticmethod
    def _place(graph: Graph, system: SystemSpec, device: DeviceSpec, units: PimUnits,
               channel_of_request: np.ndarray) -> dict[int, list[Placement]]:
        """Placements of each op of ``graph`` (keyed by ``id(op)``; attention gives two)."""
        placed: dict[int, list[Placement]] = {}
        for template, op in graph.ops():
            out: list[Placement]
            if op.kind in (OpKind.COLLECTIVE, OpKind.TRANSFER):
                out = [Placement(template, op, device, link=system.link_for_group(op.devices))]
            elif isinstance(op, AttentionOp):
                out = [Placement(template, pim_attention(op, channel_of_request), device, unit=units.pim),
                       Placement(template, softmax_op(op), device, unit=units.vector)]
            elif op.kind in (OpKind.MATMUL, OpKind.MOE_EXPERTS):
                out = [Placement(template, op, device, unit=units.host)]
            else:
                out = [Placement(template, op, device, unit=units.vector)]
            placed[id(op)] = out
        return placed

    @staticmethod
    def _blocks(graph: Graph, placed: dict[int, list[Placement]]) -> tuple[Block, ...]:
        """Embedding, decoder layers (split at stage boundaries, stage sends between), head."""

        def tasks(ops: tuple[Op, ...]) -> tuple[Task, ...]:
            return tuple(op_task(p, 0) for op in ops for p in placed[id(op)])

        blocks: list[Block] = []
        embedding = template_named(graph, "embedding")
        if embedding is not None:
            blocks.append(Block("embedding", tasks(embedding.ops)))
        send = template_named(graph, "pipeline")
        runs: list[tuple[LayerTemplate, int, int]] = []  # (template, first layer, count) within a stage
        for template, first, count in layer_runs(graph):
            for layer in range(first, first + count):
                last = runs[-1] if runs else None
                if (last is not None and last[0] is template
                        and graph.stage_of_layer(last[1]) == graph.stage_of_layer(layer)):
                    runs[-1] = (template, last[1], last[2] + 1)
                else:
                    runs.append((template, layer, 1))
        for index, (template, first, count) in enumerate(runs):
            if index and send is not None and graph.stage_of_layer(first) != graph.stage_of_layer(runs[index - 1][1]):
                blocks.append(Block(f"send@{first}", tasks(send.ops)))
            blocks.append(Block(f"{template.name}@{first}", tasks(template.ops), count))
        head = template_named(graph, "head")
        if head is not None:
            blocks.append(Block("head", tasks(head.ops)))
        return tuple(blocks)
