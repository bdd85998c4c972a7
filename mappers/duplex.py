"""The Duplex mapper: an xPU and a Logic-PIM in one device, each op on the processor that runs it faster (MICRO 2024).

Placement (policy; the unit models price it):

- every matmul, attention and MoE-experts op is priced on the device's xPU matrix unit and on its
  near-memory unit (:class:`hw_models.logic_pim.LogicPimUnit`, or for Duplex's Bank-PIM comparison
  point a :class:`hw_models.bank_pim.BankPimUnit`: attention as NeuPIMs issues it, requests
  round-robin over its channels, weight matmuls and experts as GEMVs over weights resident in the
  banks, :mod:`hw_models.bank_pim_gemv`) and placed on the faster one. Which
  one wins follows from the op's arithmetic intensity (Op/B, FLOP per byte) against each unit's
  ridge point: decode MoE experts (Op/B ≈ tokens per expert), decode GQA attention (Op/B ≈ query
  heads per KV head) and small-batch matmuls fall below the Logic-PIM's ridge (≈ 8) and go there;
  prefill-heavy ops go to the xPU. ``selection = "opb"`` applies that rule literally instead (the
  Logic-PIM when the op's Op/B is below the ridge of its own roofline, the xPU otherwise), and
  ``selection = "xpu"`` runs everything on the xPU (the baseline on the same device); a bank PIM
  reports no memory time (its commands use only the command bus), so it has no roofline ridge and
  ``opb`` keeps every op on the xPU there: use ``time``;
- expert co-processing (``expert_coprocessing``): for each MoE layer's routing draw and each
  expert-parallel rank, experts are moved to the Logic-PIM fewest tokens first, as long as the
  pair's time, max(T_xPU, T_PIM), falls (the paper's greedy over its latency table; here the unit
  models are the table, and the shared memory's bandwidth bounds the pair). The two halves run at
  the same time;
- attention co-processing (``attention_coprocessing``): in a step that mixes prefill chunks and
  decodes, the prefill requests' attention and the decode requests' attention are separate ops,
  each on its faster unit (prefill: the xPU; decode: the Logic-PIM), at the same time;
- element-wise ops and embeddings stay on the xPU's vector unit; collectives on the system's link.

Schedule (discrete-event engine): two streams. ``xpu`` runs every op in order, each task holding
the unit or link the op is placed on (so an op on the Logic-PIM still waits for the op before
it); ``pim`` runs only the second members of co-processed pairs, each waiting for the op before
its pair, and the op after the pair waits for it (a zero-time ``sync`` task closes a layer that
ends with a pair, so the next layer cannot start early). Both streams share the device memory:
each transfer is capped by its unit's own path (the Logic-PIM's through the TSVs) and together
they share the memory's ``shared_bandwidth_bytes_per_s`` (the banks' total, read in bundles).
The analytical path counts a co-processed pair as :class:`sim.estimate.ConcurrentGroup`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from decodex.core.errors import ArgumentError
from decodex.hw_models.bank_pim import BankPimUnit
from decodex.hw_models.bank_pim_gemv import expert_shapes
from decodex.hw_models.cost import OpCost
from decodex.hw_models.device import DeviceSpec
from decodex.hw_models.logic_pim import LogicPimUnit
from decodex.hw_models.system import SystemSpec
from decodex.mappers.base import PimUnits, Placement, Plan, find_pim_units, register_mapper, replica_device
from decodex.mappers.gpu import layer_runs, op_task, template_named
from decodex.mappers.schedule import Block, Schedule, Stream, Task
from decodex.workloads.graph import Graph, LayerTemplate
from decodex.workloads.ops import AttentionOp, MoEExpertsOp, Op, OpKind

SELECTIONS = ("time", "opb", "xpu")
PIM_KINDS = (OpKind.MATMUL, OpKind.ATTENTION, OpKind.MOE_EXPERTS)
XPU_STREAM, PIM_STREAM = 0, 1  # stream indices of the schedule


def find_units(device: DeviceSpec) -> PimUnits:
    """The device's near-memory unit (a logic_pim unit, or a bank_pim unit: Duplex's Bank-PIM
    comparison point), its first other matrix unit (the xPU) and vector unit."""
    return find_pim_units(device, (LogicPimUnit, BankPimUnit), "duplex")


def op_cost_on(device: DeviceSpec, unit: str, op: Op) -> OpCost:
    """Cost of one instance of ``op`` on ``unit`` of ``device``."""
    return device.units[unit].op_cost(op, device.memories)


def ridge_flop_per_byte(device: DeviceSpec, unit: str, op: Op) -> float:
    """Arithmetic intensity (FLOP/B) at which ``op``'s compute and memory times are equal on
    ``unit``: the op's Op/B scaled by its memory time over its compute time there."""
    cost = op_cost_on(device, unit, op)
    if cost.compute_s <= 0 or cost.memory_s <= 0:
        return float("inf") if cost.compute_s <= 0 else 0.0
    return op.arithmetic_intensity * cost.memory_s / cost.compute_s


def faster_unit(device: DeviceSpec, units: PimUnits, op: Op, selection: str) -> str:
    """The unit ``op`` runs on under ``selection`` (module docstring); ties go to the xPU."""
    if selection == "xpu" or op.kind not in PIM_KINDS or not device.units[units.pim].supports(op.dtype):
        return units.host
    if selection == "opb":
        return units.pim if op.arithmetic_intensity < ridge_flop_per_byte(device, units.pim, op) else units.host
    pim = op_cost_on(device, units.pim, op).time_s
    xpu = op_cost_on(device, units.host, op).time_s
    return units.pim if pim < xpu else units.host


def masked_experts(op: MoEExpertsOp, keep: np.ndarray, suffix: str) -> MoEExpertsOp:
    """``op`` with only the experts where ``keep`` (same shape as ``expert_tokens``) is true."""
    tokens = np.where(keep, op.expert_tokens, 0)
    return replace(op, name=f"{op.name}.{suffix}", expert_tokens=tokens)


def _executed_flop_factor(unit: object, op: MoEExpertsOp) -> float:
    """1 / density when ``unit`` cannot skip the op's N:M zeros (it runs them dense), else 1."""
    sparsity = op.sparsity
    if sparsity is None or sparsity.pattern in getattr(unit, "sparsity_patterns", ()):
        return 1.0
    return 1.0 / sparsity.density if sparsity.density > 0 else 1.0


def split_experts(device: DeviceSpec, units: PimUnits, op: MoEExpertsOp) -> np.ndarray | None:
    """Expert co-processing: a boolean mask (shape of ``expert_tokens``) of the experts moved to
    the Logic-PIM, or None when moving none is best. Per (draw, rank), experts are moved fewest
    tokens first; every prefix (0 .. all experts moved) is priced at once (cumulative FLOP,
    active experts and bytes of the sorted experts) and the one with the lowest pair time is
    kept: max(T_xPU, T_PIM, both sides' bytes / the memory's shared bandwidth). That is the
    paper's "move while the slower side's time falls" without stopping at a plateau (moving an
    expert with no tokens changes nothing) and never worse than all on one side."""
    tokens = op.expert_tokens.astype(np.float64)
    total = tokens.sum(axis=2)
    if not (total > 0).any():
        return None
    order = np.argsort(tokens, axis=2, kind="stable")
    ranked = np.take_along_axis(tokens, order, axis=2)  # ascending per (draw, rank)
    zero = np.zeros((*tokens.shape[:2], 1))
    moved_tokens = np.concatenate([zero, np.cumsum(ranked, axis=2)], axis=2)  # (draws, ranks, E + 1)
    moved_active = np.concatenate([zero, np.cumsum(ranked > 0, axis=2)], axis=2)
    flop_per_token = float(op.rank_flops.sum() / total.sum())
    act_per_token = float(op.rank_activation_bytes.sum() / total.sum())
    weight_per_expert = op.resident_weight_bytes / op.local_experts
    memory = device.memories[device.units[units.host].memory]

    def side(unit_name: str, part_tokens: np.ndarray, part_active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        unit = device.units[unit_name]
        flops = part_tokens * flop_per_token * _executed_flop_factor(unit, op)
        nbytes = part_active * weight_per_expert + part_tokens * act_per_token
        # a bank PIM prices each token's GEMVs by the expert's matrix shapes (hw_models.bank_pim_gemv)
        shaped = {"shapes": expert_shapes(op), "weight_dtype": op.weight_dtype} if isinstance(unit, BankPimUnit) else {}
        return unit.grouped_gemm_times(flops, part_active, nbytes, op.dtype, memory, **shaped)[0], nbytes  # type: ignore[attr-defined]

    t_pim, b_pim = side(units.pim, moved_tokens, moved_active)
    t_xpu, b_xpu = side(units.host, total[:, :, None] - moved_tokens, moved_active[:, :, -1:] - moved_active)
    # the pair's time as the analytical path counts it (sim.estimate.ConcurrentGroup): the slower
    # side, and at least the time the shared memory needs for both sides' bytes
    curve = np.maximum(np.maximum(t_pim, t_xpu), (b_pim + b_xpu) / memory.shared_bandwidth_bytes_per_s)
    stop = np.argmin(curve, axis=2)  # (draws, ranks): experts moved, fewest tokens first
    if not stop.any():
        return None
    position = np.empty_like(order)
    np.put_along_axis(position, order, np.broadcast_to(np.arange(tokens.shape[2]), order.shape).copy(), axis=2)
    return position < stop[:, :, None]


def split_attention(op: AttentionOp) -> tuple[AttentionOp, AttentionOp] | None:
    """Attention co-processing: (prefill requests' attention, decode requests' attention), or
    None when the step has only one kind."""
    prefill = op.query_lens > 1
    if prefill.all() or not prefill.any():
        return None

    def part(mask: np.ndarray, suffix: str) -> AttentionOp:
        return op.subset(mask, f"{op.name}.{suffix}")

    return part(prefill, "prefill"), part(~prefill, "decode")


@register_mapper("duplex")
@dataclass(frozen=True)
class DuplexMapper:
    """xPU + Logic-PIM mapping (see module docstring).

    ``selection``: ``time`` (faster unit), ``opb`` (Op/B against the Logic-PIM's ridge) or ``xpu``
    (no Logic-PIM). ``expert_coprocessing`` / ``attention_coprocessing``: split MoE experts /
    prefill and decode attention between the two processors.
    """

    name: str = "duplex"
    selection: str = "time"
    expert_coprocessing: bool = True
    attention_coprocessing: bool = True

    def map(self, graph: Graph, system: SystemSpec) -> Plan:
        if self.selection not in SELECTIONS:
            raise ArgumentError(f"selection: {self.selection!r} not one of {', '.join(SELECTIONS)}")
        device = replica_device(graph, system, "duplex")
        units = find_units(device)
        par = graph.parallelism
        placed = {id(op): self._place(template, op, system, device, units) for template, op in graph.ops()}
        placements = tuple(p for _, op in graph.ops() for p in placed[id(op)])
        schedule = self._schedule(graph, placed, device, units)
        options = {"selection": self.selection, "expert_coprocessing": self.expert_coprocessing,
                   "attention_coprocessing": self.attention_coprocessing}
        return Plan(graph, system, self.name, placements, par.devices, options, schedule)

    def _place(self, template: LayerTemplate, op: Op, system: SystemSpec, device: DeviceSpec,
               units: PimUnits) -> list[Placement]:
        """Placements of one op (two, concurrent, when it is co-processed)."""
        if op.kind in (OpKind.COLLECTIVE, OpKind.TRANSFER):
            return [Placement(template, op, device, link=system.link_for_group(op.devices))]
        if op.kind not in PIM_KINDS:
            unit = units.vector if device.units[units.vector].supports(op.dtype) else units.host
            return [Placement(template, op, device, unit=unit)]
        if self.selection != "xpu" and device.units[units.pim].supports(op.dtype):
            if self.expert_coprocessing and isinstance(op, MoEExpertsOp):
                mask = split_experts(device, units, op)
                if mask is not None and not mask[op.expert_tokens > 0].all():
                    return [Placement(template, masked_experts(op, ~mask, "xpu"), device, unit=units.host),
                            Placement(template, masked_experts(op, mask, "pim"), device, unit=units.pim,
                                      concurrent=True)]
            if self.attention_coprocessing and isinstance(op, AttentionOp):
                parts = split_attention(op)
                if parts is not None:
                    chosen = [faster_unit(device, units, part, self.selection) for part in parts]
                    if chosen[0] != chosen[1]:
                        return [Placement(template, parts[0], device, unit=chosen[0]),
                                Placement(template, parts[1], device, unit=chosen[1], concurrent=True)]
        return [Placement(template, op, device, unit=faster_unit(device, units, op, self.selection))]

    @staticmethod
    def _schedule(graph: Graph, placed: dict[int, list[Placement]], device: DeviceSpec, units: PimUnits) -> Schedule:
        """Two streams: ``xpu`` runs every op in order (on whichever unit it is placed: a task
        holds that unit), ``pim`` runs the concurrent members of co-processed pairs beside it."""
        sync_track = f"d0.{units.host}"

        def block(name: str, ops: tuple[Op, ...], repeat: int = 1) -> tuple[Block, Block]:
            main: list[Task] = []
            side: list[Task] = []
            waiting: tuple[tuple[int, int], ...] = ()  # side tasks the next main task waits for
            for op in ops:
                group = placed[id(op)]
                leader, followers = group[0], group[1:]
                if followers and not main:  # nothing before it in this repetition: run in sequence
                    main += [op_task(p, 0) for p in group]
                    continue
                before = len(main) - 1
                main.append(replace(op_task(leader, 0), after=waiting))
                waiting = ()
                for follower in followers:
                    side.append(replace(op_task(follower, 0), after=((XPU_STREAM, before),)))
                    waiting += ((PIM_STREAM, len(side) - 1),)
            if waiting:  # the repetition ends when the side tasks do
                main.append(Task((), (), sync_track, "sync", after=waiting))
            return Block(name, tuple(main), repeat), Block(name, tuple(side), repeat)

        streams: tuple[list[Block], list[Block]] = ([], [])

        def add(pair: tuple[Block, Block]) -> None:
            for stream, blk in zip(streams, pair, strict=True):
                stream.append(blk)

        embedding = template_named(graph, "embedding")
        if embedding is not None:
            add(block("embedding", embedding.ops))
        for template, first, count in layer_runs(graph):
            add(block(f"{template.name}@{first}", template.ops, count))
        head = template_named(graph, "head")
        if head is not None:
            add(block("head", head.ops))
        memories = tuple(sorted({(f"d0.{u.memory}", 0, u.memory) for u in device.units.values()}))
        return Schedule((Stream("xpu", tuple(streams[XPU_STREAM])), Stream("pim", tuple(streams[PIM_STREAM]), 1)),
                        memories)
