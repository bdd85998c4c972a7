"""The attention-FFN disaggregation mapper (Step-3, MegaScale-Infer): attention and FFN instances
ping-pong micro-batches.

The system's device groups carry roles (hw_models/system.py): ``attention`` instances hold the KV
cache and run the attention part of every layer, data parallel (each attention device serves its
own share of the requests); ``ffn`` instances each hold the FFN / expert weights, tensor and
expert parallel over ``ffn_devices`` devices (default: one instance), and the tokens of a
micro-batch are spread evenly over the FFN groups (``ffn_ep``: expert-parallel degree inside a
group, default all of its devices; ``dp_tokens``, default on: outside the experts each FFN device
keeps its own share of the tokens, whole shared experts and dense FFNs, and only routed tokens
cross devices, ``workloads.parallelism.Parallelism.dp_tokens``). A ``colocated`` group runs both
parts on the same devices
(the non-disaggregated baseline: data-parallel attention and large expert parallelism over
``ffn_devices``, DeepSeek-style).

Each attention device's requests are dealt into ``microbatches`` micro-batches. Per layer and
micro-batch: the attention part on the attention devices, the activations to the FFN devices
(``a2f_dtype``, FP8 with one FP32 scale per 128 elements by default), the FFN part on the FFN
devices, the results back (``f2a_dtype``, BF16). The transfer of a micro-batch takes the larger of
one attention device's send and one FFN device's receive over the network link (the system's
inter-node link, one NIC per device); A->F and F->A use separate directions of the NICs.

``ffn_layout``: ``ep`` (above: each FFN group of ``ffn_devices`` runs expert parallel and takes
its share of the tokens; the dispatch goes in ``a2f_dtype``, as DeepEP's FP8 dispatch) or
``tp-ep`` (Step-3 §7.1: one micro-batch runs on all ``ffn_devices`` at once, tensor parallel
inside a node and the experts split over the nodes; the attention devices send their tokens
once to every FFN node, a node all-gathers them (``a2f_dtype``) over its intra-node link, runs
its experts and reduce-scatters the partial sums (``f2a_dtype``), which go back to the attention
devices to be added there).

Schedule (discrete-event engine): one stream per micro-batch, each running every layer as
attention -> send -> FFN -> return. An instance runs one micro-batch's part of a layer at a time
(one task holding the instance: its ops back to back, their collectives inside), the A->F and
F->A directions of the network are resources of their own; streams contend for them, so the
stages overlap and the pipeline's fill, steady state and slowest stage come out of the
simulation (no closed formula). A step is one token for every request: its time is the TPOT.
``order``: ``round-robin`` (default) makes the micro-batches take their turns on each stage in
a fixed order, as a program issuing them in turn does (a static schedule: more bandwidth or a
faster stage never delays anything); ``fifo`` serves whoever arrives first.
``overlap_collectives``: an instance's collectives use no compute (NVLink SHARP, copy engines,
CPU-driven RDMA such as Step-3's StepMesh or DeepEP's low-latency kernels), so they run beside
its computation: the instance's part of a layer takes the longer of its compute and its
collectives instead of their sum.
A colocated group is one instance (attention and FFN cannot overlap on the same devices;
inside it, the expert all-to-all belongs to the FFN part).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from decodex.core.dtypes import DType
from decodex.core.errors import ArgumentError, InfeasibleError
from decodex.hw_models.system import DeviceGroup, SystemSpec
from decodex.mappers.base import Placement, Plan, register_mapper
from decodex.mappers.gpu import choose_unit, layer_runs, template_named
from decodex.mappers.schedule import Block, Schedule, Stream, Task
from decodex.workloads.batch import Batch, Routing
from decodex.workloads.builder import build_step_graph
from decodex.workloads.graph import Graph, LayerTemplate
from decodex.workloads.model_config import ModelConfig
from decodex.workloads.ops import CollectiveOp, Op, OpKind
from decodex.workloads.parallelism import Parallelism
from decodex.workloads.precision import Precision

ATTENTION_BLOCKS = ("attention", "embedding", "head")
FFN_LAYOUTS = ("ep", "tp-ep")
ORDERS = ("round-robin", "fifo")
FFN_BLOCKS = ("ffn", "moe")
SCALE_GROUP = 128  # elements per FP32 scale of an 8-bit activation transfer
SCALE_BYTES = 4


@dataclass(frozen=True)
class Roles:
    """The attention and FFN device groups (the same group when colocated)."""

    attention: DeviceGroup
    ffn: DeviceGroup
    colocated: bool


def find_roles(system: SystemSpec) -> Roles:
    """The system's attention and FFN groups (InfeasibleError when it has neither pair nor a colocated group)."""
    both = system.group_for("colocated")
    if both is not None:
        return Roles(both, both, True)
    attention, ffn = system.group_for("attention"), system.group_for("ffn")
    if attention is None or ffn is None:
        raise InfeasibleError(f"the afd mapper needs device groups with role attention and ffn (or colocated); "
                              f"system {system.name!r} has roles {[g.role for g in system.groups]}")
    return Roles(attention, ffn, False)


def deal(batch: Batch, devices: int, microbatches: int) -> list[np.ndarray]:
    """Request indices of attention device 0's micro-batches: request i goes to device i mod
    ``devices`` and, on it, to micro-batch (i // devices) mod ``microbatches``."""
    index = np.arange(batch.num_requests)[::devices]
    return [index[j::microbatches] for j in range(microbatches)]


def activation_bytes(tokens: float, hidden: int, dtype: DType) -> float:
    """Bytes of ``tokens`` activation rows of width ``hidden`` in ``dtype`` (8-bit formats carry
    one FP32 scale per ``SCALE_GROUP`` elements)."""
    scales = tokens * np.ceil(hidden / SCALE_GROUP) * SCALE_BYTES if dtype.nbytes < 2 else 0.0
    return float(tokens * hidden * dtype.nbytes + scales)



def _ops(template: LayerTemplate | None, blocks: tuple[str, ...]) -> tuple[Op, ...]:
    return () if template is None else tuple(op for op in template.ops if op.block in blocks)


@lru_cache(maxsize=512)  # a graph holds its MoE routing arrays: ~0.1 MB each for DeepSeek-V3
def decode_graph(model: ModelConfig, requests: int, routing: Routing, precision: Precision,
                 parallelism: Parallelism) -> Graph:
    """The graph of ``requests`` decodes of one cached token each (an FFN device's tokens), built
    once per argument set: graphs are immutable, and a serving run prices the same FFN token
    counts under many attention batches."""
    return build_step_graph(model, Batch.decode(requests, 1, routing), precision, parallelism)


@register_mapper("afd")
@dataclass(frozen=True)
class AfdMapper:
    """Attention-FFN disaggregation (module docstring)."""

    name: str = "afd"
    microbatches: int = 3
    ffn_devices: int | None = None
    ffn_ep: int | None = None
    dp_tokens: bool = True
    ffn_layout: str = "ep"
    overlap_collectives: bool = False
    order: str = "round-robin"
    a2f_dtype: str = "fp8"
    f2a_dtype: str = "bf16"

    def map(self, graph: Graph, system: SystemSpec) -> Plan:
        if not 1 <= self.microbatches <= 64:
            raise ArgumentError(f"microbatches: {self.microbatches} outside [1, 64]")
        roles = find_roles(system)
        a_group, f_group = roles.attention, roles.ffn
        a_dev, f_dev = a_group.count, f_group.count
        batch = graph.batch
        # a batch too small for every attention device and micro-batch leaves devices idle and
        # runs fewer micro-batches (at least one request per device and micro-batch)
        active = min(a_dev, batch.num_requests)
        microbatches = max(1, min(self.microbatches, batch.num_requests // active))
        f_tp = self.ffn_devices or f_group.instance_devices or f_dev
        if f_dev % f_tp:
            raise ArgumentError(f"ffn_devices: {f_tp} does not divide the {f_dev} FFN devices")
        f_groups = f_dev // f_tp
        if self.order not in ORDERS:
            raise ArgumentError(f"order: {self.order!r} not one of {', '.join(ORDERS)}")
        if self.ffn_layout not in FFN_LAYOUTS:
            raise ArgumentError(f"ffn_layout: {self.ffn_layout!r} not one of {', '.join(FFN_LAYOUTS)}")
        node = system.interconnect.devices_per_node
        if self.ffn_layout == "tp-ep" and (roles.colocated or f_tp % node or f_tp < node):
            raise ArgumentError(f"ffn_layout 'tp-ep' needs FFN devices apart from the attention and ffn_devices "
                                f"({f_tp}) a multiple of the {node} devices per node")
        hybrid = self.ffn_layout == "tp-ep" and graph.model.moe is not None  # a dense FFN stays data parallel
        # tp-ep: experts split over the nodes, each expert tensor parallel inside one; no expert
        # parallelism for a dense FFN
        ep = f_tp // node if hybrid else ((self.ffn_ep or f_tp) if graph.model.moe is not None else 1)
        model, precision = graph.model, graph.precision
        a2f = DType.parse(self.a2f_dtype, "a2f_dtype")
        f2a = DType.parse(self.f2a_dtype, "f2a_dtype")
        link = system.link_for_group(system.interconnect.devices_per_node + 1) if not roles.colocated else None
        a_index, f_index = system.device_index(a_group), system.device_index(f_group)
        share = np.arange(batch.num_requests)[::active]
        device_graph = build_step_graph(model, batch.subset(share), precision, Parallelism(), ffn=False)

        def ffn_graph(group_tokens: int) -> Graph:
            """One FFN device's graph for ``group_tokens`` tokens of its group."""
            if model.moe is None and self.dp_tokens:  # a dense FFN, data parallel: whole FFN, own tokens
                own = -(-group_tokens // f_tp)
                return decode_graph(model, own, batch.routing, precision, Parallelism())
            dp = self.dp_tokens and ep == f_tp and not hybrid
            return decode_graph(model, group_tokens, batch.routing, precision,
                                Parallelism(tp=f_tp, ep=ep, dp_tokens=dp))

        self._check_fit(device_graph, ffn_graph(f_tp), a_group, f_group, roles)
        streams, placements = [], []
        memories: set[tuple[str, int, str]] = set()
        for number, index in enumerate(deal(batch, active, microbatches)):
            att = build_step_graph(model, batch.subset(index), precision, Parallelism(), ffn=False)
            tokens = float(att.batch.num_tokens) * active  # the micro-batch's tokens over the busy attention devices
            group_tokens = max(1, round(tokens / f_groups))  # each FFN group takes its share
            ffn = ffn_graph(group_tokens)
            if hybrid:
                ffn = _node_collectives(ffn, group_tokens, model.hidden_size, node, a2f, f2a)
            else:
                ffn = _dispatch_in(ffn, a2f)
            blocks: list[Block] = []

            def tasks(ops: tuple[Op, ...], group_graph: Graph, index_: int, group: DeviceGroup) -> list[Task]:
                """One task: the instance runs this micro-batch's part of the layer as a unit."""
                placed = []
                for op in ops:
                    device = group.device
                    if op.kind in (OpKind.COLLECTIVE, OpKind.TRANSFER):
                        p = Placement(_template_of(group_graph, op), op, device,
                                      link=system.link_for_group(op.devices))
                    else:
                        p = Placement(_template_of(group_graph, op), op, device, unit=choose_unit(op, device))
                    placed.append(p)
                placements.extend(placed)
                if not placed:
                    return []
                role = "colocated" if roles.colocated else ("attention" if index_ == a_index else "ffn")
                # overlap_collectives: collectives that use no compute (NVLink SHARP, copy engines,
                # CPU-driven RDMA) run beside the computation, chunk by chunk (module docstring)
                return [Task(tuple(placed), (f"inst.{role}",), role, f"{role}", fused=True,
                             overlap_links=self.overlap_collectives)]

            def network(name: str, per_send: float, per_recv: float, template: LayerTemplate) -> Task:
                assert link is not None
                op = CollectiveOp(name=name, dtype=f2a if name == "f2a" else a2f, block="network", devices=2,
                                  collective="send_recv", payload_bytes=max(per_send, per_recv))
                p = Placement(template, op, a_group.device, link=link)
                placements.append(p)
                return Task((p,), (f"net.{name}",), f"net.{name}", name)

            embedding = template_named(att, "embedding")
            if embedding is not None:
                blocks.append(Block("embedding", tuple(tasks(embedding.ops, att, a_index, a_group))))
            f_runs = {t.name: t for t, _, _ in layer_runs(ffn)}
            for template, first, count in layer_runs(att):
                f_template = f_runs[template.name]
                a_tokens = float(att.batch.num_tokens)
                run = tasks(_ops(template, ("attention",)), att, a_index, a_group)
                # tp-ep: every FFN node receives all the tokens (one copy per node) and returns a
                # partial sum of its experts; each node's devices share its copy
                copies = ep if hybrid else 1
                per_ffn_device = tokens * copies / f_dev
                if not roles.colocated:
                    send = activation_bytes(a_tokens, model.hidden_size, a2f) * copies
                    recv = activation_bytes(per_ffn_device, model.hidden_size, a2f)
                    run.append(network("a2f", send, recv, template))
                run += tasks(_ops(f_template, FFN_BLOCKS), ffn, f_index, f_group)
                if not roles.colocated:
                    back = activation_bytes(a_tokens, model.hidden_size, f2a) * copies
                    out = activation_bytes(per_ffn_device, model.hidden_size, f2a)
                    run.append(network("f2a", out, back, template))
                blocks.append(Block(f"{template.name}@{first}", tuple(run), count))
            head = template_named(att, "head")
            if head is not None:
                blocks.append(Block("head", tuple(tasks(head.ops, att, a_index, a_group))))
            # equal priority: the order option decides who goes first (round-robin turns or FIFO)
            streams.append(Stream(f"mb{number}", tuple(blocks)))
        schedule = Schedule(tuple(streams), tuple(sorted(memories)), round_robin=self.order == "round-robin")
        view = dataclasses.replace(device_graph, batch=batch, templates=tuple(
            dataclasses.replace(t, ops=_ops(t, ATTENTION_BLOCKS)) for t in device_graph.templates
            if _ops(t, ATTENTION_BLOCKS)))
        devices = a_dev if roles.colocated else a_dev + f_dev
        options = {"microbatches": microbatches, "dp_tokens": self.dp_tokens and not hybrid, "ffn_devices": f_tp,
                   "ffn_ep": ep, "ffn_layout": self.ffn_layout, "overlap_collectives": self.overlap_collectives,
                   "order": self.order,
                   "a2f_dtype": str(a2f),
                   "f2a_dtype": str(f2a), "colocated": roles.colocated}
        return Plan(view, system, self.name, tuple(placements), devices, options, schedule)

    @staticmethod
    def _check_fit(device_graph: Graph, ffn_graph: Graph, a_group: DeviceGroup, f_group: DeviceGroup,
                   roles: Roles) -> None:
        """Attention devices hold their attention weights and their requests' KV cache; FFN
        devices the FFN weights their own graph stores, ``ffn_graph`` (one FFN device's graph
        under the run's parallelism: routed experts split, dense FFNs and shared experts whole
        where they run data parallel); colocated devices both."""
        att_weights = sum(op.resident_weight_bytes * t.repeat for t in device_graph.templates
                          for op in t.ops if op.block in ATTENTION_BLOCKS)
        ffn_weights = sum(op.resident_weight_bytes * t.repeat for t in ffn_graph.templates
                          for op in t.ops if op.block in FFN_BLOCKS)
        kv = sum(op.kv_bytes * t.repeat for t in device_graph.templates for op in t.ops if op.block == "attention")
        need_a = att_weights + kv + (ffn_weights if roles.colocated else 0.0)
        if need_a > a_group.device.capacity_bytes:
            raise InfeasibleError(f"an attention device needs {need_a / 1e9:.1f} GB (weights and KV cache); "
                                  f"{a_group.device.name} has {a_group.device.capacity_bytes / 1e9:.1f} GB")
        if not roles.colocated and ffn_weights > f_group.device.capacity_bytes:
            raise InfeasibleError(f"an FFN device needs {ffn_weights / 1e9:.1f} GB of FFN weights; "
                                  f"{f_group.device.name} has {f_group.device.capacity_bytes / 1e9:.1f} GB")


def _rewrite(graph: Graph, rewrite: Callable[[tuple[Op, ...]], list[Op]]) -> Graph:
    """``graph`` with each template's ops replaced by ``rewrite(ops)``."""
    return dataclasses.replace(graph, templates=tuple(
        dataclasses.replace(t, ops=tuple(rewrite(t.ops))) for t in graph.templates))


def _dispatch_in(ffn: Graph, a2f: DType) -> Graph:
    """The expert dispatch sends the tokens in ``a2f`` (8-bit formats with their scales), as
    DeepEP's dispatch does in FP8 (github.com/deepseek-ai/DeepEP); the combine stays in the
    activation type."""
    hidden = ffn.model.hidden_size

    def in_a2f(op: Op) -> Op:
        if not (isinstance(op, CollectiveOp) and op.name == "moe_dispatch"):
            return op
        rows = op.payload_bytes / (op.dtype.nbytes * hidden)
        return dataclasses.replace(op, dtype=a2f, payload_bytes=activation_bytes(rows, hidden, a2f))

    return _rewrite(ffn, lambda ops: [in_a2f(op) for op in ops])


def _node_collectives(ffn: Graph, tokens: int, hidden: int, node: int, a2f: DType, f2a: DType) -> Graph:
    """The ``tp-ep`` layout's FFN graph: the builder's expert-parallel collectives (dispatch,
    combine, all-reduce over every FFN device) replaced by what Step-3's hybrid layout runs inside
    one node: an all-gather of the node's tokens (as received, ``a2f``) before the FFN and a
    reduce-scatter of the partial results (``f2a``) after it; the sum over nodes happens on the
    attention side."""

    def in_node(template_ops: tuple[Op, ...]) -> list[Op]:
        ops = [op for op in template_ops if not (op.block in FFN_BLOCKS and op.kind is OpKind.COLLECTIVE)]
        part = [i for i, op in enumerate(ops) if op.block in FFN_BLOCKS]
        if not part:
            return ops
        block = ops[part[0]].block
        gather = CollectiveOp(name="ffn_all_gather", dtype=a2f, block=block, devices=node,
                              collective="all_gather", payload_bytes=activation_bytes(tokens, hidden, a2f))
        scatter = CollectiveOp(name="ffn_reduce_scatter", dtype=f2a, block=block, devices=node,
                               collective="reduce_scatter", payload_bytes=activation_bytes(tokens, hidden, f2a))
        return [*ops[:part[0]], gather, *ops[part[0]:part[-1] + 1], scatter, *ops[part[-1] + 1:]]

    return _rewrite(ffn, in_node)


def _template_of(graph: Graph, op: Op) -> LayerTemplate:
    """The template of ``graph`` that holds ``op``."""
    for template in graph.templates:
        if any(o is op for o in template.ops):
            return template
    raise ValueError(f"op {op.name!r} not in the graph")
