"""The FPGA DSP engine ("fpga_dsp"): FlightLLM's matrix engine and special-function unit (FPGA 2024).

A unit is an array of DSP chains replicated in each of ``slrs`` super logic regions at
``frequency_hz``. Its matrix engine has two modes (the bitstream's configuration):

- matrix-matrix (MM): ``mm_macs_per_cycle_per_slr`` MACs per cycle per SLR on tiles of
  ``mm_tile_m`` rows (rows are padded to whole tiles);
- matrix-vector (MV): ``mv_macs_per_cycle_per_slr`` MACs per cycle per SLR, one row at a time.

An op runs in the faster mode: MV for decode (one row), MM once enough rows fill its tiles
(prefill). Attention runs in MV mode per query row (its QK and SV products are per request).
The rates are for the format with the most MACs per DSP (INT8); a format with fewer
``macs_per_dsp`` runs proportionally slower (FP16 attention: 1 MAC per DSP, half the rate).
The modes must fit the device's ``dsps``: MACs per cycle / ``macs_per_dsp`` (two INT8 MACs per
DSP48E2) per SLR x SLRs <= dsps (checked on load).

Sparse DSP chain: weights with an N:M pattern listed in ``sparsity_patterns`` (FlightLLM:
M = 16, N in {2, 4, 8, 16}) execute only the kept MACs, at ``sparse_chain_efficiency`` of the
dense rate (the reduction nodes and multiplexers of the configurable chain); other patterns run
dense. Low-bit weights (fewer bits than the compute format) are dequantized on the way in, at
``dequant_weights_per_cycle_per_slr`` weights per cycle per SLR (0: not a limit).

Memory: the unit streams weights and KV from the memory named by ``memory`` (HBM). Its achieved
efficiency depends on the access pattern the compiler achieved (``access``): ``local`` (each
stream inside its own pseudo-channels, ``local_efficiency``) or ``cross`` (streams spread across
channels, ``cross_efficiency``); on the channels the cores reach: each SLR core streams from its
own ``channels_per_slr`` of the memory's ``memory_channels`` (FlightLLM: 8 per core, so a 3-SLR
U280 uses 24 of its 32 pseudo-channels); and on ``fabric_bandwidth_bytes_per_s``, what the
fabric's ports can carry at the kernel clock (0: no limit). With ``activations_on_chip`` ("always-on-chip
decode") activations stay in on-chip buffers (URAM/BRAM), so only weights and the KV cache move
to or from the HBM; otherwise every op also reads and writes its activations there.

time = max(compute, memory, dequantization) + ``op_overhead_s`` (compute and the weight stream
overlap inside an op: the chain consumes the stream).

What the compiler's instruction stream does on top (FlightLLM artifact ``profile/inst_gen``; each
switch off or 1 reproduces the plain model above exactly):

- ``mv_tile_n``: an MV instruction always computes ``mv_tile_n`` output columns, so MV-mode work
  pads its output columns to whole tiles: a matmul's ``n``, attention's scores (one column per
  attended key) and its value product (``v_dim`` columns: a 128-wide head costs a 512-wide MV);
- ``attention_in_kv_format``: attention's MACs run in the KV cache's format (the query and the
  softmax output are quantized to it), not the op's activation format;
- ``kv_append_reread``: the step that appends the new token's K and V (a ``concat`` layer) loads
  the whole cached K and V again, so the cache is read twice per step;
- ``attention_phases``: the append, the scores (QK^T, softmax fused) and the value product are
  separate layers, each closed by a barrier: attention time = append read + max(K stream, score
  MACs) + max(V stream, value MACs) instead of one max over the whole op.

Role ``vector`` units are the special function units (softmax, LayerNorm, SiLU, element-wise):
``sfu_flops_per_cycle_per_slr`` FLOP per cycle per SLR. Dynamic energy = MACs x
``energy_per_mac_j`` (or FLOP x ``energy_per_flop_j`` on an SFU) + bytes moved x the memory's
energy per byte.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from decodex.core.dtypes import DType
from decodex.hw_models.cost import OpCost, UnsupportedOpError, roofline_bound
from decodex.hw_models.memory import MemorySpec
from decodex.hw_models.spec_reader import TableReader, read_dtype_table
from decodex.hw_models.units import register_unit_model
from decodex.workloads.ops import AttentionOp, MatmulOp, MoEExpertsOp, Op, stored_bytes_per_weight

ACCESS_PATTERNS = ("local", "cross")


@dataclass(frozen=True)
class FpgaUnit:
    """FlightLLM-style DSP engine or special-function unit (module docstring)."""

    name: str
    role: str
    memory: str
    slrs: int
    frequency_hz: float
    macs_per_dsp: Mapping[DType, float]
    energy_per_mac_j: Mapping[DType, float]
    dsps: int = 0
    mm_macs_per_cycle_per_slr: float = 0.0
    mv_macs_per_cycle_per_slr: float = 0.0
    mm_tile_m: int = 1
    sfu_flops_per_cycle_per_slr: float = 0.0
    sparsity_patterns: tuple[str, ...] = ()
    sparse_chain_efficiency: float = 1.0
    dequant_weights_per_cycle_per_slr: float = 0.0
    access: str = "local"
    local_efficiency: float = 1.0
    cross_efficiency: float = 1.0
    fabric_bandwidth_bytes_per_s: float = 0.0
    memory_channels: int = 0
    channels_per_slr: int = 0
    activations_on_chip: bool = False
    op_overhead_s: float = 0.0
    mv_tile_n: int = 1
    attention_in_kv_format: bool = False
    kv_append_reread: bool = False
    attention_phases: bool = False

    def supports(self, dtype: DType) -> bool:
        return dtype in self.macs_per_dsp

    def peak_flops(self, dtype: DType) -> float:
        if not self.supports(dtype):
            have = ", ".join(str(d) for d in self.macs_per_dsp)
            raise UnsupportedOpError(f"unit {self.name!r} has no {dtype} datapath (it has: {have})")
        if self.role == "vector":
            return self.sfu_flops_per_cycle_per_slr * self.slrs * self.frequency_hz
        return 2.0 * max(self.mm_macs_per_cycle_per_slr, self.mv_macs_per_cycle_per_slr) * self.slrs * self.frequency_hz

    # --- compute -----------------------------------------------------------------------------
    def _sparse_rate(self, op: Op) -> tuple[float, float]:
        """(MACs executed, rate factor) of the op's weight sparsity: the kept MACs at the sparse
        chain's efficiency for a supported N:M pattern, all dense MACs at full rate otherwise."""
        sparsity = op.sparsity
        if sparsity is None or sparsity.pattern not in self.sparsity_patterns:
            return op.dense_flops / 2.0, 1.0
        return op.flops / 2.0, self.sparse_chain_efficiency

    def _format_rate(self, dtype: DType) -> float:
        """Fraction of the INT8 MAC rate a format runs at (a wider format packs fewer MACs per DSP)."""
        return self.macs_per_dsp[dtype] / max(self.macs_per_dsp.values())

    def _padded(self, columns: float) -> float:
        """``columns`` rounded up to whole MV tiles of ``mv_tile_n`` output columns."""
        return math.ceil(columns / self.mv_tile_n) * self.mv_tile_n if self.mv_tile_n > 1 else columns

    def attention_dtype(self, op: AttentionOp) -> DType:
        """Format attention's MACs run in: the KV cache's with ``attention_in_kv_format`` (when the
        unit has a datapath for it), the op's otherwise."""
        if self.attention_in_kv_format and op.kv_dtype in self.macs_per_dsp:
            return op.kv_dtype
        return op.dtype

    def attention_macs(self, op: AttentionOp) -> tuple[float, float]:
        """(score MACs, value MACs) attention executes in MV mode, output columns padded to MV tiles:
        per query row and head, the scores have one column per attended key (rounded up to
        ``mv_tile_n``) over ``qk_dim``; the values ``v_dim`` columns (rounded up) over the keys."""
        ctx = op.context_lens.astype(np.float64)
        rows = op.query_lens.astype(np.float64)
        keys = float(op.attended_pairs)
        if self.mv_tile_n > 1:  # sum over query rows of ceil(keys / t) * t, keys = ctx + 1 .. ctx + rows
            keys = float((_tiled_prefix(ctx + rows, self.mv_tile_n) - _tiled_prefix(ctx, self.mv_tile_n)).sum())
        return op.q_heads * op.qk_dim * keys, op.q_heads * self._padded(op.v_dim) * op.attended_pairs

    def attention_cycles(self, op: AttentionOp) -> tuple[float, float]:
        """(score cycles, value cycles) of attention on the MV chain (``attention_macs`` at the rate
        of ``attention_dtype``)."""
        rate = self.mv_macs_per_cycle_per_slr * self.slrs * self._format_rate(self.attention_dtype(op))
        if rate <= 0:
            return math.inf, math.inf
        qk, sv = self.attention_macs(op)
        return qk / rate, sv / rate

    def matrix_cycles(self, op: Op) -> float:
        """Cycles of a matrix-class op in its faster mode (module docstring)."""
        if not isinstance(op, MatmulOp | MoEExpertsOp | AttentionOp):
            raise UnsupportedOpError(f"unit {self.name!r} runs matmul, attention and MoE ops, not {op.kind}")
        if isinstance(op, AttentionOp) and (self.mv_tile_n > 1 or self.attention_in_kv_format):
            return sum(self.attention_cycles(op))
        macs, rate = self._sparse_rate(op)
        rate *= self._format_rate(op.dtype)
        mv_rate = self.mv_macs_per_cycle_per_slr * self.slrs * rate
        mm_rate = self.mm_macs_per_cycle_per_slr * self.slrs * rate
        mv = macs / mv_rate if mv_rate > 0 else math.inf
        if isinstance(op, MatmulOp) and op.n:
            mv *= self._padded(op.n) / op.n
        if not isinstance(op, MatmulOp) or mm_rate <= 0:
            return mv
        padded = math.ceil(op.m / self.mm_tile_m) * self.mm_tile_m / op.m if op.m else 1.0
        return min(mv, macs * padded / mm_rate)

    def dequant_weights(self, op: Op) -> float:
        """Weights the op dequantizes on the way in: low-bit (< 8-bit) stored weights."""
        if not isinstance(op, MatmulOp | MoEExpertsOp) or op.weight_dtype is None:
            return 0.0
        per_weight = stored_bytes_per_weight(op.weight_dtype, op.weight_sparsity, op.weight_bits)
        bits = op.weight_bits if op.weight_bits is not None else op.weight_dtype.nbytes * 8
        if bits >= 8 or per_weight <= 0:
            return 0.0
        return op.weight_bytes / per_weight

    # --- memory ------------------------------------------------------------------------------
    def kv_reread_bytes(self, op: Op) -> float:
        """Cached K and V bytes the append step reads again (``kv_append_reread``), B."""
        if not self.kv_append_reread or not isinstance(op, AttentionOp):
            return 0.0
        return op.cached_tokens * op.kv_bytes_per_token

    def moved_bytes(self, op: Op) -> float:
        """Bytes the op moves to or from the memory (weights and KV, the append step's second read
        of the cache; activations unless on chip)."""
        moved = op.weight_bytes + op.kv_bytes if self.activations_on_chip else op.bytes
        return moved + self.kv_reread_bytes(op)

    @property
    def channel_share(self) -> float:
        """Fraction of the memory's channels the SLR cores stream from: each core reads its own
        ``channels_per_slr`` channels (1 when not given)."""
        if self.memory_channels <= 0 or self.channels_per_slr <= 0:
            return 1.0
        return min(1.0, self.slrs * self.channels_per_slr / self.memory_channels)

    def stream_bandwidth(self, memory: MemorySpec) -> float:
        """Achieved bandwidth of the unit's streams, B/s (access pattern, fabric ports)."""
        efficiency = self.local_efficiency if self.access == "local" else self.cross_efficiency
        bandwidth = memory.bandwidth_bytes_per_s * efficiency * self.channel_share

        if self.fabric_bandwidth_bytes_per_s > 0:
            bandwidth = min(bandwidth, self.fabric_bandwidth_bytes_per_s)
        return bandwidth

    def _attention_phases_cost(self, op: AttentionOp, memory: MemorySpec) -> OpCost:
        """Attention as the compiler issues it (``attention_phases``): the append's read of the
        cache, then the scores, then the values, each phase its stream and MACs overlapped, the
        phases one after the other (module docstring)."""
        bandwidth = self.stream_bandwidth(memory)
        reread = self.kv_reread_bytes(op)
        streamed = self.moved_bytes(op) - reread
        k_share = op.qk_dim / (op.qk_dim + op.v_dim)
        qk_cycles, sv_cycles = self.attention_cycles(op)
        qk_s, sv_s = qk_cycles / self.frequency_hz, sv_cycles / self.frequency_hz
        k_s, v_s = streamed * k_share / bandwidth, streamed * (1.0 - k_share) / bandwidth
        append_s = reread / bandwidth
        time_s = append_s + max(k_s, qk_s) + max(v_s, sv_s) + self.op_overhead_s
        compute_s, memory_s = qk_s + sv_s, append_s + k_s + v_s
        macs = sum(self.attention_macs(op))
        energy = (macs * self.energy_per_mac_j.get(self.attention_dtype(op), 0.0)
                  + (reread + streamed) * memory.energy_per_byte_j)
        return OpCost(time_s, compute_s, memory_s, self.op_overhead_s,
                      roofline_bound(compute_s, memory_s, self.op_overhead_s), energy)

    def op_cost(self, op: Op, memories: Mapping[str, MemorySpec]) -> OpCost:
        memory = memories[self.memory]
        if not self.supports(op.dtype):
            self.peak_flops(op.dtype)  # raises naming the datapaths
        if self.role == "matrix" and self.attention_phases and isinstance(op, AttentionOp):
            return self._attention_phases_cost(op, memory)
        if self.role == "vector":
            compute_s = op.flops / self.peak_flops(op.dtype) if op.flops > 0 else 0.0
            energy = op.flops / 2.0 * self.energy_per_mac_j.get(op.dtype, 0.0)
        elif isinstance(op, AttentionOp) and (self.mv_tile_n > 1 or self.attention_in_kv_format):
            compute_s = self.matrix_cycles(op) / self.frequency_hz
            energy = sum(self.attention_macs(op)) * self.energy_per_mac_j.get(self.attention_dtype(op), 0.0)
        else:
            compute_s = self.matrix_cycles(op) / self.frequency_hz
            energy = self._sparse_rate(op)[0] * self.energy_per_mac_j.get(op.dtype, 0.0)
        nbytes = self.moved_bytes(op)
        memory_s = nbytes / self.stream_bandwidth(memory) if nbytes > 0 else 0.0
        dequant_s = 0.0
        if self.dequant_weights_per_cycle_per_slr > 0:
            rate = self.dequant_weights_per_cycle_per_slr * self.slrs * self.frequency_hz
            dequant_s = self.dequant_weights(op) / rate
        energy += nbytes * memory.energy_per_byte_j
        busy = max(memory_s, dequant_s)
        time_s = max(compute_s, busy) + self.op_overhead_s
        return OpCost(time_s, compute_s, busy, self.op_overhead_s, roofline_bound(compute_s, busy, self.op_overhead_s),
                      energy)


def _tiled_prefix(n: np.ndarray, tile: int) -> np.ndarray:
    """sum over k = 1 .. n of ceil(k / tile) * tile (elementwise over ``n``, whole numbers)."""
    whole, rest = np.divmod(n, tile)
    return tile * (tile * whole * (whole + 1.0) / 2.0 + rest * (whole + 1.0))


@register_unit_model("fpga_dsp")
def read_fpga_unit(name: str, table: TableReader, memories: tuple[str, ...]) -> FpgaUnit:
    """Build an FpgaUnit from ``[units.NAME]`` (docs/flightllm.md)."""
    macs = read_dtype_table(table, "macs_per_dsp", positive=True)
    energy = read_dtype_table(table, "energy_per_mac_j", positive=False)
    role = table.string("role", choices=("matrix", "vector"))
    unit = FpgaUnit(
        name=name, role=role, memory=table.string("memory", choices=memories),
        slrs=table.integer("slrs", lo=1, hi=16), frequency_hz=table.number("frequency_hz", lo=1e6, hi=5e9),
        macs_per_dsp=macs, energy_per_mac_j=energy, dsps=table.integer("dsps", lo=0, hi=10**7, default=0),
        mm_macs_per_cycle_per_slr=table.number("mm_macs_per_cycle_per_slr", hi=1e7, default=0.0),
        mv_macs_per_cycle_per_slr=table.number("mv_macs_per_cycle_per_slr", hi=1e7, default=0.0),
        mm_tile_m=table.integer("mm_tile_m", lo=1, hi=4096, default=1),
        sfu_flops_per_cycle_per_slr=table.number("sfu_flops_per_cycle_per_slr", hi=1e7, default=0.0),
        sparsity_patterns=table.string_list("sparsity_patterns"),
        sparse_chain_efficiency=table.number("sparse_chain_efficiency", lo=0.0, hi=1.0, lo_open=True, default=1.0),
        dequant_weights_per_cycle_per_slr=table.number("dequant_weights_per_cycle_per_slr", hi=1e7, default=0.0),
        access=table.string("access", choices=ACCESS_PATTERNS, default="local"),
        local_efficiency=table.number("local_efficiency", lo=0.0, hi=1.0, lo_open=True, default=1.0),
        cross_efficiency=table.number("cross_efficiency", lo=0.0, hi=1.0, lo_open=True, default=1.0),
        fabric_bandwidth_bytes_per_s=table.number("fabric_bandwidth_bytes_per_s", hi=1e15, default=0.0),
        memory_channels=table.integer("memory_channels", lo=0, hi=4096, default=0),
        channels_per_slr=table.integer("channels_per_slr", lo=0, hi=4096, default=0),
        activations_on_chip=table.boolean("activations_on_chip", default=False),
        op_overhead_s=table.number("op_overhead_s", hi=1.0, default=0.0),
        mv_tile_n=table.integer("mv_tile_n", lo=1, hi=65536, default=1),
        attention_in_kv_format=table.boolean("attention_in_kv_format", default=False),
        kv_append_reread=table.boolean("kv_append_reread", default=False),
        attention_phases=table.boolean("attention_phases", default=False),
    )
    if role == "matrix":
        if unit.mv_macs_per_cycle_per_slr <= 0 and unit.mm_macs_per_cycle_per_slr <= 0:
            raise table.error("mv_macs_per_cycle_per_slr", "a matrix unit needs MV or MM MACs per cycle > 0")
        if unit.dsps:
            per_dsp = max(macs.values())
            need = max(unit.mm_macs_per_cycle_per_slr, unit.mv_macs_per_cycle_per_slr) / per_dsp * unit.slrs
            if need > unit.dsps:
                raise table.error("mm_macs_per_cycle_per_slr", f"needs {need:.0f} DSPs over {unit.slrs} SLRs; "
                                                               f"the device has dsps = {unit.dsps}")
    elif unit.sfu_flops_per_cycle_per_slr <= 0:
        raise table.error("sfu_flops_per_cycle_per_slr", "a vector (special-function) unit needs a rate > 0")
    return unit
