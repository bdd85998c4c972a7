"""The bank-level PIM unit ("bank_pim"): Newton / HBM-PIM style GEMV engines in every DRAM bank.

(Somewhat longer than ~400 lines for one job: the unit's command timing, its sharing of the
memory and its spec reader belong together; channel placement lives in :mod:`hw_models.pim_channels`,
weight GEMVs in :mod:`hw_models.bank_pim_gemv`.)

Each of ``channels`` channels has ``banks_per_channel`` (B_ch) banks with ``multipliers_per_bank``
multipliers and one global vector buffer per channel. Every request's KV cache lives in one
channel; its attention runs there as the NeuPIMs artifact issues it (``PIMGEMVSoftmax.cc``,
``NeuPIMSAttend.cc``; the paper's Algorithm 1). Symbols (``docs/neupims-devices.md``):

- P_DRAM = ``row_bytes`` / element bytes: elements in one DRAM row (512 FP16 in a 1 KB row). A
  *tile* is one row opened in all banks of the channel; a GWRITE loads P_DRAM elements (one row's
  worth) of the input vector into the global buffer.
- P_comp = min(``multipliers_per_bank``, ``burst_bytes`` / element bytes): elements one all-bank
  COMP multiplies per bank (16: the artifact's ``pim_comp_coverage``); a tile of s elements per
  bank needs ceil(s / P_comp) COMPs, one every tCCD_L.
- GQA: E = kv_heads · qk_dim, the K width of one KV-head group; the g = q_heads / kv_heads query
  heads of a group need g passes (the global buffer holds one query vector).

Per query token of a request with seq = context + query tokens:

- K·q, per pass: ceil(E / P_DRAM) GWRITEs; ceil(seq / B_ch) tiles per chunk of the E elements
  (bank b holds tokens b, b + B_ch, ...), each with ceil(s / P_comp) COMPs and one READRES per
  head in the chunk (ceil(s / qk_dim)), s = the chunk's width (P_DRAM, or the remainder).
  With E a multiple of P_DRAM: (seq/B_ch)·(E/P_DRAM) tiles plus E/P_DRAM GWRITEs.
- softmax: on the NPU's vector unit, not priced here (a per-request vector op, overlapped with
  other requests' PIM work; the mapper prices it on the vector unit).
- logits·V, per query head: ceil(seq / P_DRAM) GWRITEs (one per tile column: the head's chunk of
  logits); ceil(v_dim / B_ch) tiles per chunk (bank b holds V columns b, b + B_ch, ... of the
  head), each with ceil(s / P_comp) COMPs (s = P_DRAM or the last chunk's remainder) and one READRES.
  With seq a multiple of P_DRAM: (E/N_head/B_ch)·(seq/P_DRAM)·N_head tiles for MHA.

Timing of one tile with n COMPs and h READRESes, in tCK cycles (:meth:`BankPimUnit.tile_cycles`):

    tile(n, h) = header + max(spread + tRCD + span(n, h) + tRTP, tRAS) + max(precharge_commands, tRP)

``header``: ``tile_header_cycles`` (a P_HEADER command); ``spread``: the activation commands
(``activates_per_row_open`` over ``ranks``, each opening ``banks_per_activate`` banks, at most four
bank activations per tFAW in a rank, the ranks one command apart); ``span``: from the first compute
command to the issue of the last, ``separate`` (every COMP one per tCCD_L, then h READRESes of
``readres`` = ceil(B_ch · element bytes / io_bytes)·io_cycles) or ``fused`` (one COMPS_READRES per
result, each waiting tCCD_L · (max(n / h, ``fused_fill_comps``) + 1) for the one before); the row
closes tRTP after the last command issues, bank by bank (``precharge_commands``) or at once, and
the next activation waits tRP. Refresh (``trefi``, ``trfc`` per rank) stretches a stream of tiles
by :meth:`BankPimUnit.refresh_factor`. A GWRITE costs ``gwrite_cycles`` ((tCCD_S + tCCD_L) × 32 =
96); each of the two GEMVs ends with the CL of its last READRES; the new token's K/V are written
with ordinary ``io_bytes`` writes (io_cycles each). docs/neupims.md checks every term against the
NeuPIMs artifact's command trace.

The batch's PIM time is its slowest channel's: requests are assigned to channels by the caller
(:func:`hw_models.pim_channels.assign_channels`: ``round_robin`` or ``greedy``);
:meth:`BankPimUnit.op_cost` assumes round-robin. With ``issue_instructions_per_cycle`` > 0 the host
issues the PIM instructions at that rate, channel by channel, and a channel cannot run ahead of
its instructions (:func:`hw_models.pim_channels.channel_finish_cycles`). Dynamic energy:
``comp_energy_j`` per COMP, ``read_energy_j`` per io_bytes read or written (READRES, K/V writes),
and a GWRITE as row_bytes / io_bytes writes.

Sharing the memory with the NPU: PIM commands use only the command/address bus. With dual row
buffers (the memory's ``access = "concurrent"``) the PIM time is not slowed by NPU traffic; the
op reports no memory time, unless ``command_bus_shared``: then the PIM's commands, served first,
take :meth:`BankPimUnit.bus_share` of the bus from the NPU for the whole op (``memory_s =
compute_s`` and :meth:`BankPimUnit.moved_bytes` = share × time × bus bandwidth in the engine). With a single
row buffer (``access = "exclusive"``) the PIM work holds the memory for its whole duration
(``memory_s = compute_s``), so NPU transfers and PIM commands exclude each other in the engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from decodex.core.dtypes import DType
from decodex.core.errors import ArgumentError
from decodex.hw_models.cost import OpCost, UnsupportedOpError, roofline_bound
from decodex.hw_models.memory import MemorySpec
from decodex.hw_models.pim_channels import (  # noqa: F401  (re-exported: the mappers and tests use them here)
    CHANNEL_POLICIES,
    assign_channels,
    channel_finish_cycles,
    channel_loads,
)
from decodex.hw_models.spec_reader import TableReader
from decodex.hw_models.units import register_unit_model
from decodex.workloads.ops import AttentionOp, Op

COMP_ISSUES = ("separate", "fused")  # every COMP and READRES a command / one COMPS_READRES per result
ACTIVATES_PER_TFAW = 4  # JEDEC four-activate window: at most 4 ACTs per tFAW


def _ceil(a: np.ndarray | float, b: float) -> np.ndarray:
    return np.ceil(np.asarray(a, dtype=np.float64) / b)


@dataclass(frozen=True, eq=False, kw_only=True)
class ChannelAssignedAttentionOp(AttentionOp):
    """An attention op whose requests a mapper has assigned to PIM channels:
    ``channel_of_request[i]`` is the channel holding request i's KV cache (the unit's
    :meth:`BankPimUnit.op_cost` uses it instead of round-robin)."""

    channel_of_request: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


@dataclass(frozen=True)
class RequestWork:
    """Per-request command counts and cycles of one attention op (arrays over requests)."""

    cycles: np.ndarray
    comps: np.ndarray
    gwrites: np.ndarray
    readres: np.ndarray
    tiles: np.ndarray
    io_writes: np.ndarray
    instructions: np.ndarray = field(default_factory=lambda: np.zeros(0))


@dataclass(frozen=True)
class BankPimUnit:
    """Bank-level PIM (see module docstring). Cycles are DRAM clocks of ``tck_s`` seconds;
    sizes in bytes; energies in J."""

    name: str
    role: str
    memory: str
    dtypes: tuple[DType, ...]
    channels: int
    banks_per_channel: int
    multipliers_per_bank: int
    row_bytes: int
    burst_bytes: int
    io_bytes: int
    io_cycles: int
    tck_s: float
    cl: int
    trcd: int
    trp: int
    tras: int
    tccd_s: int
    tccd_l: int
    tfaw: int
    activates_per_row_open: int
    gwrite_cycles: int
    read_energy_j: float
    comp_energy_j: float
    op_overhead_s: float = 0.0
    ranks: int = 1
    banks_per_activate: int = 1
    tile_header_cycles: int = 0
    comp_issue: str = "separate"
    fused_fill_comps: int = 0
    trtp: int = 0
    precharge_commands: int = 1
    trefi: int = 0
    trfc: int = 0
    issue_instructions_per_cycle: float = 0.0
    command_bus_shared: bool = False

    def supports(self, dtype: DType) -> bool:
        return dtype in self.dtypes

    def _check(self, dtype: DType) -> None:
        if not self.supports(dtype):
            have = ", ".join(str(d) for d in self.dtypes)
            raise UnsupportedOpError(f"unit {self.name!r} has no {dtype} datapath (it has: {have})")

    def elements_per_comp(self, dtype: DType) -> int:
        """P_comp: elements one all-bank COMP multiplies in each bank."""
        return int(min(self.multipliers_per_bank, self.burst_bytes // dtype.nbytes))

    def elements_per_row(self, dtype: DType) -> int:
        """P_DRAM: elements in one DRAM row."""
        return int(self.row_bytes // dtype.nbytes)

    def peak_flops(self, dtype: DType) -> float:
        """2 FLOP per multiplier, every bank of every channel, one COMP per tCCD_L, FLOP/s."""
        self._check(dtype)
        per_comp = 2.0 * self.banks_per_channel * self.elements_per_comp(dtype)
        return self.channels * per_comp / (self.tccd_l * self.tck_s)

    @property
    def readres_cycles(self) -> float:
        """Cycles to read one result from every bank of a channel (B_ch × 2 B in io_bytes reads)."""
        return float(np.ceil(self.banks_per_channel * 2.0 / self.io_bytes)) * self.io_cycles

    @property
    def activation_spread_cycles(self) -> float:
        """Cycles from a tile's first activation command to its last: ``activates_per_row_open``
        commands, each opening ``banks_per_activate`` banks, dealt over ``ranks`` ranks; within a
        rank at most four bank activations per tFAW (JEDEC), the ranks' commands interleaved one
        command cycle apart."""
        per_rank = np.ceil(self.activates_per_row_open / self.ranks)
        windows = np.ceil(per_rank * self.banks_per_activate / ACTIVATES_PER_TFAW) - 1.0
        return float(windows * self.tfaw + (min(self.activates_per_row_open, self.ranks) - 1))

    def issue_span_cycles(self, comps: np.ndarray | float, readres: np.ndarray | float) -> np.ndarray:
        """Cycles from a tile's first compute command to the issue of its last.
        ``separate``: every COMP and READRES is a command, COMPs one per tCCD_L, each READRES
        ``readres_cycles``; ``fused``: one COMPS_READRES per READRES, each waiting for the one before
        to finish its max(COMPs per READRES, ``fused_fill_comps``) + 1 command slots of tCCD_L."""
        comps = np.asarray(comps, dtype=np.float64)
        readres = np.maximum(np.asarray(readres, dtype=np.float64), 1.0)
        if self.comp_issue == "fused":
            per_result = np.maximum(comps / readres, self.fused_fill_comps) + 1.0
            return (readres - 1.0) * self.tccd_l * per_result
        return np.maximum(comps - 1.0, 0.0) * self.tccd_l + readres * self.readres_cycles

    def tile_cycles(self, comps: np.ndarray | float, readres: np.ndarray | float) -> np.ndarray:
        """Cycles of one tile: one row opened in all banks, ``comps`` COMPs, ``readres`` READRESes:

            tile = header + max(spread + tRCD + span + tRTP, tRAS) + max(precharge_commands, tRP)

        (the header command, the activations, the compute commands, the row closed tRTP after the
        last of them issues, bank by bank one command per cycle or all at once; the next tile's
        activation waits tRP after its banks close)."""
        span = self.issue_span_cycles(comps, readres)
        open_row = np.maximum(self.activation_spread_cycles + self.trcd + span + self.trtp, self.tras)
        return self.tile_header_cycles + open_row + max(self.precharge_commands, self.trp)

    def refresh_factor(self, comps: np.ndarray | float, readres: np.ndarray | float) -> np.ndarray:
        """Busy-time multiplier of refresh for a stream of such tiles (1 when ``trefi`` = 0).

        Each rank refreshes once per tREFI and all-bank PIM commands stop for it. Before a tile
        the controller checks that its worst-case latency (closing an open row bank by bank,
        ``precharge_commands`` × tRTP, then activating and computing) fits before the refresh;
        when it does not, the channel idles until then: on average that guard minus half a tile.
        Then the rank's banks close (``precharge_commands`` / ``ranks`` commands, tRP), the
        refresh takes tRFC. Per refresh: stall = max(guard - tile / 2, 0) + banks closed + tRP +
        tRFC; busy time / (1 - ranks × stall / tREFI)."""
        tile = self.tile_cycles(comps, readres)
        if self.trefi <= 0:
            return np.ones_like(tile)
        guard = (self.precharge_commands * self.trtp + self.activation_spread_cycles + self.trcd
                 + self.issue_span_cycles(comps, readres))
        stall = (np.maximum(guard - tile / 2.0, 0.0) + self.precharge_commands / self.ranks + self.trp
                 + self.trfc)
        fraction = self.ranks * stall / self.trefi
        return 1.0 / np.maximum(1.0 - fraction, 1e-3)

    def request_work(self, context_len: np.ndarray, query_len: np.ndarray | int = 1, *, q_heads: int,
                     kv_heads: int, qk_dim: int, v_dim: int, kv_bytes_per_token: float = 0.0,
                     dtype: DType = DType.FP16) -> RequestWork:
        """Command counts and cycles of each request's attention (module docstring), vectorized."""
        ctx = np.atleast_1d(np.asarray(context_len, dtype=np.float64))
        q = np.broadcast_to(np.asarray(query_len, dtype=np.float64), ctx.shape)
        seq = ctx + q
        p_row = self.elements_per_row(dtype)
        p_comp = self.elements_per_comp(dtype)
        banks = self.banks_per_channel
        group = q_heads / kv_heads
        # K·q: E = kv_heads·qk_dim split into row-sized chunks
        width = kv_heads * qk_dim
        full, rem = divmod(width, p_row)
        chunks = full + (rem > 0)
        chunk_comps = full * np.ceil(p_row / p_comp) + (np.ceil(rem / p_comp) if rem else 0.0)
        chunk_readres = full * np.ceil(p_row / qk_dim) + (np.ceil(rem / qk_dim) if rem else 0.0)
        chunk_cycles = full * self.tile_cycles(np.ceil(p_row / p_comp), np.ceil(p_row / qk_dim))
        if rem:
            chunk_cycles = chunk_cycles + self.tile_cycles(np.ceil(rem / p_comp), np.ceil(rem / qk_dim))
        kq_refresh = (self.refresh_factor(np.ceil(p_row / p_comp), np.ceil(p_row / qk_dim)) if full
                      else self.refresh_factor(np.ceil(rem / p_comp), np.ceil(rem / qk_dim)))
        token_groups = _ceil(seq, banks)
        kq_cycles = kq_refresh * group * (chunks * self.gwrite_cycles + token_groups * chunk_cycles)
        kq_comps = group * token_groups * chunk_comps
        kq_readres = group * token_groups * chunk_readres
        kq_gwrites = np.full_like(seq, group * chunks)
        kq_tiles = group * token_groups * chunks
        # logits·V: per query head, seq split into row-sized chunks, v_dim over the banks
        seq_full = np.floor(seq / p_row)
        seq_rem = seq - seq_full * p_row
        seq_chunks = seq_full + (seq_rem > 0)
        col_tiles = float(np.ceil(v_dim / banks))
        rem_comps = np.ceil(seq_rem / p_comp)
        lv_tile_cycles = (seq_full * self.tile_cycles(np.ceil(p_row / p_comp), 1.0)
                          + np.where(seq_rem > 0, self.tile_cycles(rem_comps, 1.0), 0.0))
        lv_refresh = np.where(seq_full > 0, self.refresh_factor(np.ceil(p_row / p_comp), 1.0),
                              self.refresh_factor(rem_comps, 1.0))
        lv_cycles = lv_refresh * q_heads * (seq_chunks * self.gwrite_cycles + col_tiles * lv_tile_cycles)
        lv_comps = q_heads * col_tiles * (seq_full * np.ceil(p_row / p_comp) + rem_comps)
        lv_readres = q_heads * col_tiles * seq_chunks
        lv_tiles = lv_readres
        lv_gwrites = q_heads * seq_chunks
        io_writes = np.ceil(q * kv_bytes_per_token / self.io_bytes)
        cycles = q * (kq_cycles + lv_cycles + 2.0 * self.cl) + io_writes * self.io_cycles
        comps, gwrites = q * (kq_comps + lv_comps), q * (kq_gwrites + lv_gwrites)
        readres, tiles = q * (kq_readres + lv_readres), q * (kq_tiles + lv_tiles)
        return RequestWork(cycles=cycles, comps=comps, gwrites=gwrites, readres=readres, tiles=tiles,
                           io_writes=io_writes, instructions=self.instruction_count(comps, readres, tiles, gwrites))

    def instruction_count(self, comps: np.ndarray, readres: np.ndarray, tiles: np.ndarray,
                          gwrites: np.ndarray) -> np.ndarray:
        """PIM instructions the host issues for that work: a header per tile (when the tile has
        one), a GWRITE per input chunk, and a COMP per COMP and a READRES per READRES
        (``separate``) or one COMPS_READRES per READRES (``fused``)."""
        header = 1.0 if self.tile_header_cycles > 0 else 0.0
        compute = readres if self.comp_issue == "fused" else comps + readres
        return header * tiles + gwrites + compute

    def request_cycles(self, context_len: np.ndarray, query_len: np.ndarray | int = 1, *, q_heads: int,
                       kv_heads: int, qk_dim: int, v_dim: int, kv_bytes_per_token: float = 0.0,
                       dtype: DType = DType.FP16) -> np.ndarray:
        """DRAM cycles of each request's attention in its channel (float64 array over requests)."""
        return self.request_work(context_len, query_len, q_heads=q_heads, kv_heads=kv_heads, qk_dim=qk_dim,
                                 v_dim=v_dim, kv_bytes_per_token=kv_bytes_per_token, dtype=dtype).cycles

    def op_work(self, op: AttentionOp) -> RequestWork:
        """:meth:`request_work` for the requests of ``op``."""
        self._check(op.dtype)
        return self.request_work(op.context_lens, op.query_lens, q_heads=op.q_heads, kv_heads=op.kv_heads,
                                 qk_dim=op.qk_dim, v_dim=op.v_dim, kv_bytes_per_token=op.kv_bytes_per_token,
                                 dtype=op.dtype)

    def attention_time(self, op: AttentionOp, channel_of_request: np.ndarray) -> tuple[float, np.ndarray]:
        """(batch PIM time, each channel's finish time), s: the batch waits for its slowest channel
        (:func:`channel_finish_cycles`: its busy time, or later when the host issues the PIM
        instructions at a bounded rate). Excludes ``op_overhead_s``."""
        channel_of_request = np.asarray(channel_of_request, dtype=np.int64)
        if channel_of_request.shape != np.shape(op.context_lens):
            raise ArgumentError("channel_of_request: needs one channel per request")
        if channel_of_request.size and (channel_of_request.min() < 0 or channel_of_request.max() >= self.channels):
            raise ArgumentError(f"channel_of_request: channels are 0..{self.channels - 1}")
        work = self.op_work(op)
        finish = channel_finish_cycles(work.cycles, work.instructions, channel_of_request, self.channels,
                                       self.issue_instructions_per_cycle) * self.tck_s
        return float(finish.max(initial=0.0)), finish

    def energy_j(self, work: RequestWork) -> float:
        """Dynamic energy of the commands in ``work``, J."""
        gwrite_j = self.row_bytes / self.io_bytes * self.read_energy_j
        return float(work.comps.sum() * self.comp_energy_j + work.gwrites.sum() * gwrite_j
                     + (work.readres.sum() * np.ceil(self.banks_per_channel * 2.0 / self.io_bytes)
                        + work.io_writes.sum()) * self.read_energy_j)

    def op_cost(self, op: Op, memories: Mapping[str, MemorySpec],
                channel_of_request: np.ndarray | None = None) -> OpCost:
        """Cost of an attention op with requests on channels ``channel_of_request`` (default
        round-robin: request i -> channel i mod channels, unless ``op`` is a
        :class:`ChannelAssignedAttentionOp`, whose assignment is used). Weight matmuls and MoE
        experts are GEMVs over weights resident in the banks (:mod:`hw_models.bank_pim_gemv`);
        other ops are refused."""
        if not isinstance(op, AttentionOp):
            from decodex.hw_models.bank_pim_gemv import gemv_op_cost  # imports this module

            return gemv_op_cost(self, op, memories)
        self._check(op.dtype)
        if channel_of_request is None and isinstance(op, ChannelAssignedAttentionOp):
            channel_of_request = op.channel_of_request
        if channel_of_request is None:
            channel_of_request = np.arange(np.size(op.context_lens), dtype=np.int64) % self.channels
        compute_s, _ = self.attention_time(op, channel_of_request)
        exclusive = memories[self.memory].access == "exclusive"
        memory_s = compute_s if exclusive or self.command_bus_shared else 0.0
        time_s = compute_s + self.op_overhead_s
        energy = self.energy_j(self.op_work(op))
        return OpCost(time_s, compute_s, memory_s, self.op_overhead_s,
                      roofline_bound(compute_s, memory_s, self.op_overhead_s), energy)

    @property
    def bus_bandwidth_bytes_per_s(self) -> float:
        """Peak data-bus bandwidth of all channels: ``io_bytes`` per ``io_cycles`` each, B/s."""
        return self.channels * self.io_bytes / (self.io_cycles * self.tck_s)

    def bus_share(self, work: RequestWork) -> float:
        """Fraction of its channels' data-bus cycles the PIM's commands take from other traffic while
        it runs (``command_bus_shared``): the controller serves PIM commands first on the one
        command bus, so each PIM command (header, activation, compute, precharge) costs the host
        one cycle of its reads, each READRES its result transfer and each GWRITE its row of data;
        over the PIM's busy cycles (refresh included)."""
        busy = float(np.sum(work.cycles))
        if busy <= 0:
            return 0.0
        per_tile = (1.0 if self.tile_header_cycles > 0 else 0.0) + self.activates_per_row_open + self.precharge_commands
        compute = work.readres if self.comp_issue == "fused" else work.comps + work.readres
        lost = (np.sum(work.tiles) * per_tile + np.sum(compute) + np.sum(work.readres) * self.readres_cycles
                + np.sum(work.gwrites) * self.row_bytes / self.io_bytes * self.io_cycles)
        return float(min(lost / busy, 1.0))

    def moved_bytes(self, op: Op) -> float:
        """Bytes of the device memory's bandwidth the op takes in the discrete-event engine, B:
        for attention with ``command_bus_shared``, its bus share × its time × the bus bandwidth
        (held at that rate for the whole op, so host transfers beside it get the rest); otherwise
        the op's own bytes."""
        if not (self.command_bus_shared and isinstance(op, AttentionOp)):
            return op.bytes
        channel = (op.channel_of_request if isinstance(op, ChannelAssignedAttentionOp)
                   else np.arange(np.size(op.context_lens), dtype=np.int64) % self.channels)
        time_s, _ = self.attention_time(op, channel)
        return self.bus_share(self.op_work(op)) * time_s * self.bus_bandwidth_bytes_per_s

    def grouped_gemm_times(self, flops: np.ndarray, gemms: np.ndarray, nbytes: np.ndarray, dtype: DType,
                           memory: MemorySpec, *, shapes: tuple[tuple[int, int], ...] | None = None,
                           weight_dtype: DType | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Grouped expert GEMVs of the (K, N) matrices ``shapes`` one token passes through:
        :func:`hw_models.bank_pim_gemv.grouped_gemm_times` (time, compute, memory arrays, s)."""
        from decodex.hw_models.bank_pim_gemv import grouped_gemm_times  # imports this module

        self._check(dtype)
        return grouped_gemm_times(self, flops, gemms, nbytes, dtype, memory, shapes, weight_dtype)


@register_unit_model("bank_pim")
def read_bank_pim_unit(name: str, table: TableReader, memories: tuple[str, ...]) -> BankPimUnit:
    """Build a BankPimUnit from ``[units.NAME]`` (fields: see docs/neupims-devices.md)."""
    dtypes = []
    for text in table.string_list("dtypes", default=("fp16",)):
        try:
            dtypes.append(DType(text))
        except ValueError:
            allowed = ", ".join(d.value for d in DType)
            raise table.error("dtypes", f"unknown dtype {text!r}; allowed: {allowed}") from None
    tccd_s = table.integer("tccd_s", lo=0, hi=1_000)
    tccd_l = table.integer("tccd_l", lo=1, hi=1_000)
    row_bytes = table.integer("row_bytes", lo=2, hi=1 << 20)
    burst_bytes = table.integer("burst_bytes", lo=2, hi=1 << 20)
    if burst_bytes > row_bytes:
        raise table.error("burst_bytes", f"{burst_bytes} exceeds row_bytes={row_bytes}")
    default_gwrite = (tccd_s + tccd_l) * (row_bytes // burst_bytes)
    return BankPimUnit(
        name=name,
        role=table.string("role", choices=("matrix", "vector"), default="matrix"),
        memory=table.string("memory", choices=memories),
        dtypes=tuple(dtypes),
        channels=table.integer("channels", lo=1, hi=1_000_000),
        banks_per_channel=table.integer("banks_per_channel", lo=1, hi=4096),
        multipliers_per_bank=table.integer("multipliers_per_bank", lo=1, hi=65_536),
        row_bytes=row_bytes,
        burst_bytes=burst_bytes,
        io_bytes=table.integer("io_bytes", lo=1, hi=1 << 20),
        io_cycles=table.integer("io_cycles", lo=1, hi=1_000),
        tck_s=table.positive("tck_s"),
        cl=table.integer("cl", lo=0, hi=1_000),
        trcd=table.integer("trcd", lo=0, hi=1_000),
        trp=table.integer("trp", lo=0, hi=1_000),
        tras=table.integer("tras", lo=0, hi=1_000),
        tccd_s=tccd_s,
        tccd_l=tccd_l,
        tfaw=table.integer("tfaw", lo=0, hi=10_000),
        activates_per_row_open=table.integer("activates_per_row_open", lo=1, hi=4096, default=1),
        gwrite_cycles=table.integer("gwrite_cycles", lo=0, hi=1_000_000, default=default_gwrite),
        read_energy_j=table.number("read_energy_j"),
        comp_energy_j=table.number("comp_energy_j"),
        op_overhead_s=table.number("op_overhead_s", hi=1.0, default=0.0),
        ranks=table.integer("ranks", lo=1, hi=64, default=1),
        banks_per_activate=table.integer("banks_per_activate", lo=1, hi=4096, default=1),
        tile_header_cycles=table.integer("tile_header_cycles", lo=0, hi=1_000, default=0),
        comp_issue=table.string("comp_issue", choices=COMP_ISSUES, default="separate"),
        fused_fill_comps=table.integer("fused_fill_comps", lo=0, hi=1_000, default=0),
        trtp=table.integer("trtp", lo=0, hi=1_000, default=0),
        precharge_commands=table.integer("precharge_commands", lo=1, hi=4096, default=1),
        trefi=table.integer("trefi", lo=0, hi=10_000_000, default=0),
        trfc=table.integer("trfc", lo=0, hi=100_000, default=0),
        issue_instructions_per_cycle=table.number("issue_instructions_per_cycle", hi=1e6, default=0.0),
        command_bus_shared=table.boolean("command_bus_shared", default=False),
    )
