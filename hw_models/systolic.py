"""The weight-stationary systolic-array unit ("systolic"): NeuPIMs' NPU matrix engine.

A unit has ``arrays`` arrays of ``rows × cols`` multiply-accumulate cells at ``frequency_hz``.
A matmul (m × k) @ (k × n) is cut into ``ceil(k/rows) · ceil(n/cols)`` weight tiles (times the
op's ``count``); the tiles are dealt over the arrays in ``waves = ceil(tiles / arrays)``. On one
array, consecutive tiles are pipelined: a tile occupies the array for ``max(m, rows)`` cycles
(its m input rows stream through; loading the next tile's weights takes ``rows`` cycles, hidden
only when m >= rows), and the op pays the pipeline's fill and drain once,
``rows + cols - 2`` cycles (the NeuPIMs artifact's per-instruction latency
``core_height + core_width - 2 + max(size, 4)`` and its ``core_height`` weight-preload offset,
``NeuPIMSystolicWS.cc``):

    cycles(m, k, n) = ceil(count · ceil(k/rows) · ceil(n/cols) / arrays) · max(m, rows) + rows + cols - 2

so utilization ``m·k·n·count / (arrays·rows·cols·cycles)`` falls when m, k or n do not fill the
array (an M = 1 GEMV uses 1/rows of it at best) and rises monotonically with m.

``dataflow = "input-stationary"`` (a unit field; default ``"weight-stationary"``, above) is the
NeuPIMs artifact's own MatMul mapping (``MatMul.cc`` sets ``_is_transposed``, so the activation
tile is the stationary operand and the weights stream): the ``ceil(m/rows)·ceil(k/cols)·count``
activation tiles are loaded one after another, each taking ``rows`` cycles that are not hidden
(its ``GEMM_PRELOAD`` issues ``core_height`` cycles after the previous instruction), then the n
weight columns stream in blocks of ``cols`` split over the arrays, ``max(ceil(cols/arrays), 4)``
cycles a block (an instruction's ``size = loop_size / 8`` and the 4-cycle issue minimum), the
first block inside the preload slot:

    cycles(m, k, n) = ceil(m/rows)·ceil(k/cols)·count · (rows + (ceil(n/cols) - 1)·b)
                      + rows + cols - 2 + b,      b = max(ceil(cols/arrays), 4)

Up to 128 tokens this costs as much as 128; the unhidden preloads add ``rows`` cycles per
stationary tile over the weight-stationary pipeline.

time = max(cycles / frequency, bytes / achieved memory bandwidth) + op_overhead_s: the GEMM is also
bounded by the memory it reads. ``stream_overlap = "first-pass"`` (input-stationary only) is how
the NeuPIMs artifact runs a GEMM of more than ``rows`` tokens: the weights stream from memory
during the first pass (its first ``rows`` activation rows) and the later passes compute from the
on-chip copy without overlapping that stream (the artifact's QKV at 256 tokens takes 45.9 k cycles
where 128 tokens take 31.2 k and the stream ~28 k):

    time = max(cycles(min(m, rows)) / frequency, memory time) + (cycles(m) - cycles(min(m, rows))) / frequency

(the default ``"all"`` overlaps every pass with the stream, the formula above). Dynamic energy =
dense FLOP × energy_per_flop_j + bytes × the
memory's energy per byte.

``attention_issue = "head-serial"`` (default ``"batched"``, below) is how the NeuPIMs artifact's
NPU-only branch issues attention (``FusedMHA.cc``): one in-order queue, every (request, KV head) a
dependent chain of one q.K instruction of ``ceil(L/arrays)`` rows and ``ceil((L + rows - 1)/rows)``
L.V instructions of ``ceil(cols/arrays)`` rows, each instruction taking ``rows + cols - 1 + size``
cycles and starting when the previous one ends (preloads back to back):

    cycles = sum over requests and KV heads of
             (rows + cols - 1 + ceil(L/arrays)) + ceil((L + rows - 1)/rows) · (rows + cols - 1 + ceil(cols/arrays))

(~1.38 k cycles per head at 350 keys on 8 arrays of 128x128, where streaming the head's K and V
takes ~175: latency-bound). The query heads sharing a KV head ride in the same instructions.

Attention on this unit (the NPU-only baseline) is a pair of per-request GEMMs per KV head:
scores (m_i × qk_dim) @ (qk_dim × L_i) and output (m_i × L_i) @ (L_i × v_dim), with
m_i = query tokens × query heads per KV head (queries sharing one K/V head stream through the
same stationary K/V tile) and L_i = context + query tokens (the causal triangle of a multi-token
query is rounded up to the full L_i). Requests run one after another, each one's tiles spread over
the arrays; the fill and drain is paid once per op. Element-wise ops belong on a vector unit
(a plain "roofline" unit) and are refused here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from decodex.core.dtypes import DType
from decodex.hw_models.cost import OpCost, UnsupportedOpError, roofline_bound
from decodex.hw_models.memory import MemorySpec
from decodex.hw_models.spec_reader import TableReader, read_dtype_table
from decodex.hw_models.units import register_unit_model
from decodex.workloads.ops import AttentionOp, MatmulOp, MoEExpertsOp, Op

IntLike = int | np.ndarray


DATAFLOWS = ("weight-stationary", "input-stationary")
STREAM_OVERLAPS = ("all", "first-pass")
ATTENTION_ISSUES = ("batched", "head-serial")
"""Systolic dataflows: weights held in the arrays (default), or the activation tile held and the
weights streamed (the NeuPIMs artifact's MatMul mapping); module docstring."""


def _stream_block(cols: int, arrays: int) -> int:
    """Input-stationary: cycles to stream one block of ``cols`` weight columns over the arrays."""
    return max(-(-cols // arrays), 4)


def fill_drain_cycles(*, rows: int, cols: int, arrays: int, dataflow: str = "weight-stationary") -> int:
    """Cycles an op pays once to fill and drain the pipeline: ``rows + cols - 2``, plus one
    streamed block for input-stationary (module docstring); ValueError for an unknown ``dataflow``."""
    if dataflow == "weight-stationary":
        return rows + cols - 2
    if dataflow == "input-stationary":
        return rows + cols - 2 + _stream_block(cols, arrays)
    raise ValueError(f"dataflow {dataflow!r} not one of {', '.join(DATAFLOWS)}")


def gemm_cycles(m: IntLike, k: IntLike, n: IntLike, *, rows: int, cols: int, arrays: int,
                count: IntLike = 1, fill_drain: bool = True, dataflow: str = "weight-stationary") -> np.ndarray:
    """Cycles of ``count`` (m × k) @ (k × n) products on ``arrays`` systolic arrays.

    Weight-stationary: ``ceil(count·ceil(k/rows)·ceil(n/cols) / arrays) · max(m, rows) +
    (rows + cols - 2)``; input-stationary: the formula in the module docstring. The fill/drain
    term is left out with ``fill_drain=False`` (for summing back-to-back GEMMs that share one
    pipeline fill). Broadcasts over numpy arrays; shapes with a zero dimension cost 0 cycles.
    Returns float64 cycles; ValueError for an unknown ``dataflow``.
    """
    m_a = np.asarray(m, dtype=np.float64)
    k_a = np.asarray(k, dtype=np.float64)
    n_a = np.asarray(n, dtype=np.float64)
    count_a = np.asarray(count, dtype=np.float64)
    fill = fill_drain_cycles(rows=rows, cols=cols, arrays=arrays, dataflow=dataflow)  # checks dataflow
    if dataflow == "weight-stationary":
        tiles = count_a * np.ceil(k_a / rows) * np.ceil(n_a / cols)
        cycles = np.ceil(tiles / arrays) * np.maximum(m_a, rows)
    else:
        tiles = count_a * np.ceil(m_a / rows) * np.ceil(k_a / cols)
        cycles = tiles * (rows + np.maximum(np.ceil(n_a / cols) - 1, 0) * _stream_block(cols, arrays))
    if fill_drain:
        cycles = cycles + fill
    return np.where((m_a > 0) & (k_a > 0) & (n_a > 0) & (count_a > 0), cycles, 0.0)


def gemm_utilization(m: IntLike, k: IntLike, n: IntLike, *, rows: int, cols: int, arrays: int,
                     count: IntLike = 1, dataflow: str = "weight-stationary") -> np.ndarray:
    """Fraction of the arrays' MAC cells doing useful work over :func:`gemm_cycles`, in [0, 1]."""
    cycles = gemm_cycles(m, k, n, rows=rows, cols=cols, arrays=arrays, count=count, dataflow=dataflow)
    macs = (np.asarray(m, dtype=np.float64) * np.asarray(k, dtype=np.float64)
            * np.asarray(n, dtype=np.float64) * np.asarray(count, dtype=np.float64))
    capacity = float(arrays * rows * cols) * cycles
    return np.divide(macs, capacity, out=np.zeros_like(capacity), where=capacity > 0)


@dataclass(frozen=True)
class SystolicUnit:
    """Systolic arrays, weight- or input-stationary (see module docstring). Frequencies in Hz,
    energies in J."""

    name: str
    role: str
    memory: str
    arrays: int
    rows: int
    cols: int
    frequency_hz: float
    energy_per_flop_j: Mapping[DType, float]
    op_overhead_s: float = 0.0
    dataflow: str = "weight-stationary"
    stream_overlap: str = "all"
    attention_issue: str = "batched"

    def supports(self, dtype: DType) -> bool:
        return dtype in self.energy_per_flop_j

    def peak_flops(self, dtype: DType) -> float:
        """Peak FLOP/s: 2 FLOP per MAC cell per cycle, all arrays."""
        if not self.supports(dtype):
            have = ", ".join(str(d) for d in self.energy_per_flop_j)
            raise UnsupportedOpError(f"unit {self.name!r} has no {dtype} datapath (it has: {have})")
        return 2.0 * self.arrays * self.rows * self.cols * self.frequency_hz

    def cycles(self, m: IntLike, k: IntLike, n: IntLike, count: IntLike = 1,
               fill_drain: bool = True) -> np.ndarray:
        """:func:`gemm_cycles` with this unit's geometry."""
        return gemm_cycles(m, k, n, rows=self.rows, cols=self.cols, arrays=self.arrays, count=count,
                           fill_drain=fill_drain, dataflow=self.dataflow)

    def attention_cycles(self, op: AttentionOp) -> float:
        """Cycles of an attention op as per-request GEMMs, or as head-serial instruction chains
        (``attention_issue``; module docstring)."""
        if self.attention_issue == "head-serial":
            return self._head_serial_cycles(op)
        q = np.asarray(op.query_lens, dtype=np.float64)
        seq = np.asarray(op.context_lens, dtype=np.float64) + q
        group = op.q_heads / op.kv_heads
        m = np.ceil(q * group)
        score = self.cycles(m, op.qk_dim, seq, count=op.kv_heads, fill_drain=False)
        value = self.cycles(m, seq, op.v_dim, count=op.kv_heads, fill_drain=False)
        body = float(score.sum() + value.sum())
        return body + self.fill_drain_cycles if body > 0 else 0.0

    def _head_serial_cycles(self, op: AttentionOp) -> float:
        """Cycles of the head-serial chains of ``attention_issue = "head-serial"`` (module docstring)."""
        keys = np.asarray(op.context_lens, dtype=np.float64) + np.asarray(op.query_lens, dtype=np.float64)
        latency = self.rows + self.cols - 1
        score = latency + np.ceil(keys / self.arrays)
        value = np.ceil((keys + self.rows - 1) / self.rows) * (latency + np.ceil(self.cols / self.arrays))
        return float(((score + value) * (keys > 0)).sum() * op.kv_heads)

    @property
    def fill_drain_cycles(self) -> float:
        """Cycles an op pays once to fill and drain the pipeline (:func:`fill_drain_cycles`)."""
        return float(fill_drain_cycles(rows=self.rows, cols=self.cols, arrays=self.arrays, dataflow=self.dataflow))

    def op_cost(self, op: Op, memories: Mapping[str, MemorySpec]) -> OpCost:
        memory = memories[self.memory]
        self.peak_flops(op.dtype)  # raises for an unsupported dtype
        if isinstance(op, MoEExpertsOp):
            return self._experts_cost(op, memory)
        if isinstance(op, MatmulOp):
            cycles = float(self.cycles(op.m, op.k, op.n, count=op.count))
            if self.stream_overlap == "first-pass" and op.m > self.rows:
                return self._first_pass_cost(op, memory, cycles)
        elif isinstance(op, AttentionOp):
            cycles = self.attention_cycles(op)
        else:
            raise UnsupportedOpError(f"unit {self.name!r} (systolic) runs matmul-class ops only; "
                                     f"{op.kind} op {op.name!r} belongs on a vector unit")
        compute_s = cycles / self.frequency_hz
        nbytes = op.bytes
        memory_s = memory.transfer_time(nbytes)
        time_s = max(compute_s, memory_s) + self.op_overhead_s
        energy = op.dense_flops * self.energy_per_flop_j[op.dtype] + nbytes * memory.energy_per_byte_j
        return OpCost(time_s, compute_s, memory_s, self.op_overhead_s,
                      roofline_bound(compute_s, memory_s, self.op_overhead_s), energy)

    def _first_pass_cost(self, op: MatmulOp, memory: MemorySpec, cycles: float) -> OpCost:
        """A GEMM whose weight stream overlaps only its first pass of ``rows`` tokens (module
        docstring, ``stream_overlap = "first-pass"``)."""
        first = float(self.cycles(self.rows, op.k, op.n, count=op.count))
        compute_s = cycles / self.frequency_hz
        memory_s = memory.transfer_time(op.bytes)
        time_s = max(first / self.frequency_hz, memory_s) + (cycles - first) / self.frequency_hz + self.op_overhead_s
        energy = op.dense_flops * self.energy_per_flop_j[op.dtype] + op.bytes * memory.energy_per_byte_j
        return OpCost(time_s, compute_s, memory_s, self.op_overhead_s,
                      roofline_bound(compute_s, memory_s, self.op_overhead_s), energy)

    def _experts_cost(self, op: MoEExpertsOp, memory: MemorySpec) -> OpCost:
        """Grouped expert GEMMs: per rank, the sum of its active experts' GEMM cycles; the layer
        waits for its slowest rank; the result is the mean over routing draws."""
        tokens = np.asarray(op.expert_tokens, dtype=np.float64)  # (draws, ranks, experts)
        d, f = op.hidden, op.intermediate
        up = self.cycles(tokens, d, f, count=2 if op.gated else 1, fill_drain=False)
        down = self.cycles(tokens, f, d, fill_drain=False)
        body = (up + down).sum(axis=2)
        compute = np.where(body > 0, (body + self.fill_drain_cycles) / self.frequency_hz, 0.0)
        nbytes = op.rank_weight_bytes + op.rank_activation_bytes
        bandwidth = memory.bandwidth_bytes_per_s * memory.efficiency.at_many(nbytes)
        mem = np.where(nbytes > 0, nbytes / bandwidth, 0.0)
        per_rank = np.maximum(compute, mem)
        critical = per_rank.argmax(axis=1)
        rows = np.arange(per_rank.shape[0])
        compute_s = float(compute[rows, critical].mean())
        memory_s = float(mem[rows, critical].mean())
        time_s = float(per_rank.max(axis=1).mean()) + self.op_overhead_s
        energy = op.dense_flops * self.energy_per_flop_j[op.dtype] + float(nbytes.mean()) * memory.energy_per_byte_j
        return OpCost(time_s, compute_s, memory_s, self.op_overhead_s,
                      roofline_bound(compute_s, memory_s, self.op_overhead_s), energy)


@register_unit_model("systolic")
def read_systolic_unit(name: str, table: TableReader, memories: tuple[str, ...]) -> SystolicUnit:
    """Build a SystolicUnit from ``[units.NAME]``: ``arrays``, ``rows``, ``cols``, ``frequency_hz``,
    ``op_overhead_s``, ``dataflow`` (:data:`DATAFLOWS`, default weight-stationary),
    ``stream_overlap`` (:data:`STREAM_OVERLAPS`, default all; first-pass needs input-stationary),
    ``attention_issue`` (:data:`ATTENTION_ISSUES`, default batched) and
    ``[units.NAME.energy_per_flop_j]`` (its dtypes are the supported ones)."""
    dataflow = table.string("dataflow", choices=DATAFLOWS, default="weight-stationary")
    overlap = table.string("stream_overlap", choices=STREAM_OVERLAPS, default="all")
    if overlap == "first-pass" and dataflow != "input-stationary":
        raise table.error("stream_overlap", "'first-pass' needs dataflow = 'input-stationary' (passes of "
                                            "stationary activation rows)")
    attention_issue = table.string("attention_issue", choices=ATTENTION_ISSUES, default="batched")
    return SystolicUnit(
        name=name,
        role=table.string("role", choices=("matrix", "vector"), default="matrix"),
        memory=table.string("memory", choices=memories),
        arrays=table.integer("arrays", lo=1, hi=1_000_000),
        rows=table.integer("rows", lo=1, hi=65_536),
        cols=table.integer("cols", lo=1, hi=65_536),
        frequency_hz=table.positive("frequency_hz"),
        energy_per_flop_j=read_dtype_table(table, "energy_per_flop_j", positive=False),
        op_overhead_s=table.number("op_overhead_s", hi=1.0, default=0.0),
        dataflow=dataflow,
        stream_overlap=overlap,
        attention_issue=attention_issue,
    )
