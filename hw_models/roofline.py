"""The roofline unit: GPU tensor cores, GPU CUDA cores, CPU cores.

time = max(FLOP / (peak × compute efficiency), bytes / (bandwidth × memory efficiency)) + overhead

Peaks are per dtype; the efficiencies are data in the spec (constants or curves over size);
an op with N:M sparsity runs its reduced FLOPs only where the unit lists that pattern.

Two optional refinements (absent = the plain roofline above), fitted on measured GEMMs
(docs/validation-external.md):

- ``tile_m``: tile quantization of matmuls. The unit computes whole tiles of rows, so a matmul's
  compute term counts its ``m`` rounded up to a power of two (at least 16) while ``m <= tile_m``
  and to a multiple of ``tile_m`` above; FLOP counts and energy stay those of the op.
- ``overlap_exponent`` n: compute and memory overlap imperfectly near the ridge point;
  ``max(c, m)`` becomes ``(c^n + m^n)^(1/n)`` (n = 1 adds them, large n tends to the max).

And ``[units.NAME.decode_attention]``: the decode requests of an attention op are priced as the
GPU kernel runs them, in thread blocks and SM waves (:mod:`hw_models.decode_attention`); its
prefill chunks stay on the roofline.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from decodex.core.dtypes import DType
from decodex.hw_models.cost import OpCost, UnsupportedOpError, roofline_bound
from decodex.hw_models.decode_attention import DecodeAttentionKernel, read_decode_attention
from decodex.hw_models.efficiency import EfficiencyCurve
from decodex.hw_models.memory import MemorySpec
from decodex.hw_models.spec_reader import TableReader, read_dtype_table
from decodex.hw_models.units import register_unit_model
from decodex.workloads.ops import AttentionOp, MatmulOp, MoEExpertsOp, Op

MIN_TILE_ROWS = 16  # smallest M of a tensor-core MMA (mma.m16n8k16, PTX ISA) used for short matmuls


def padded_rows(m: int, tile_m: int) -> int:
    """Rows a tensor unit with ``tile_m``-row tiles computes for an ``m``-row matmul (``tile_m`` 0:
    ``m`` itself): the next power of two (at least 16) up to ``tile_m``, whole tiles above."""
    if tile_m <= 0 or m <= 0:
        return m
    if m <= tile_m:
        return min(tile_m, max(MIN_TILE_ROWS, 1 << (m - 1).bit_length()))
    return -(-m // tile_m) * tile_m


def overlap(compute_s: float, memory_s: float, exponent: float) -> float:
    """Time of a compute term and a memory term that overlap with ``exponent`` (0: perfectly, the max), s."""
    high, low = (memory_s, compute_s) if memory_s > compute_s else (compute_s, memory_s)  # max, min without calls
    if exponent <= 0 or low <= 0:
        return high
    return high * (1.0 + (low / high) ** exponent) ** (1.0 / exponent)


@dataclass(frozen=True)
class RooflineUnit:
    """A compute unit priced by the roofline model (see module docstring)."""

    name: str
    role: str
    memory: str
    peak_flops_by_dtype: Mapping[DType, float]
    energy_per_flop_j: Mapping[DType, float]
    efficiency: EfficiencyCurve
    op_overhead_s: float = 0.0
    sparsity_patterns: tuple[str, ...] = ()
    tile_m: int = 0
    overlap_exponent: float = 0.0
    decode_attention: DecodeAttentionKernel | None = None
    weight_only_efficiency: Mapping[DType, float] = dataclasses.field(default_factory=dict)

    def weight_only_factor(self, op: Op) -> float:
        """Fraction of the memory efficiency a weight-only quantized matmul reaches (1 otherwise):
        a matmul whose stored weights are narrower than its activations dequantizes every weight
        in the kernel (W8A16, W4A16), which keeps it further below the HBM bandwidth than the
        same kernel on 16-bit weights (``weight_only_efficiency`` by stored weight format)."""
        if not isinstance(op, MatmulOp) or op.weight_dtype is None or op.weight_dtype == op.dtype:
            return 1.0
        if op.weight_dtype.nbytes >= op.dtype.nbytes and op.weight_bits is None:
            return 1.0
        return self.weight_only_efficiency.get(op.weight_dtype, 1.0)

    def tiled_flops(self, op: Op, flops: float) -> float:
        """FLOP the unit spends on ``op`` once its rows are padded to whole tiles (see module docstring)."""
        if not isinstance(op, MatmulOp):
            return flops
        return self.tiled_work(flops, op.m)

    def tiled_work(self, flops: float, m: int) -> float:
        """FLOP the unit spends on a matmul of ``flops`` FLOP over ``m`` rows, its rows padded to
        whole tiles (see module docstring)."""
        if self.tile_m <= 0 or m <= 0:
            return flops
        return flops * padded_rows(m, self.tile_m) / m

    def supports(self, dtype: DType) -> bool:
        return dtype in self.peak_flops_by_dtype

    def peak_flops(self, dtype: DType) -> float:
        try:
            return self.peak_flops_by_dtype[dtype]
        except KeyError:
            have = ", ".join(str(d) for d in self.peak_flops_by_dtype)
            raise UnsupportedOpError(f"unit {self.name!r} has no {dtype} datapath (it has: {have})") from None

    def executed_flops(self, op: Op) -> float:
        """FLOP the unit executes: the sparse count if it runs the op's N:M pattern, else dense."""
        sparsity = op.sparsity
        if sparsity is not None and sparsity.pattern in self.sparsity_patterns:
            return op.flops
        return op.dense_flops

    def op_cost(self, op: Op, memories: Mapping[str, MemorySpec]) -> OpCost:
        memory = memories[self.memory]
        if isinstance(op, MoEExpertsOp):
            return self._experts_cost(op, memory)
        if isinstance(op, AttentionOp) and self.decode_attention is not None and bool(op.decode_like.any()):
            return self._decode_attention_cost(op, memory)
        return self._roofline_cost(op, memory)

    def _roofline_cost(self, op: Op, memory: MemorySpec) -> OpCost:
        """``op`` on the roofline of the module docstring (tiles, overlap, overhead)."""
        flops = self.executed_flops(op)
        work = self.tiled_flops(op, flops) if flops > 0 else 0.0
        return self.roofline_priced(flops, work, op.bytes, op.dtype, memory, self.weight_only_factor(op))

    def roofline_priced(self, flops: float, work: float, nbytes: float, dtype: DType, memory: MemorySpec,
                        bandwidth_factor: float) -> OpCost:
        """One op on the roofline from its quantities: ``flops`` FLOP executed (energy), ``work``
        FLOP once its rows are padded to tiles (:meth:`tiled_work`), ``nbytes`` B moved in
        ``memory``, ``bandwidth_factor`` the fraction of the memory's efficiency it reaches
        (:meth:`weight_only_factor`); times in s, energy in J per device."""
        return self.roofline_pricer(dtype, memory, bandwidth_factor)(flops, work, nbytes)

    def roofline_pricer(self, dtype: DType, memory: MemorySpec,
                        bandwidth_factor: float) -> Callable[[float, float, float], OpCost]:
        """:meth:`roofline_priced` for ``dtype`` in ``memory`` at ``bandwidth_factor`` as a function
        of (``flops``, ``work``, ``nbytes``), with what does not depend on them looked up once (the
        scalar fast path, :mod:`sim.point_estimate`, keeps one per op). Raises UnsupportedOpError
        for a dtype the unit has no datapath for."""
        peak = self.peak_flops_by_dtype.get(dtype)  # None: no datapath, an error for an op with FLOP
        efficiency = self.efficiency.at
        transfer_time = memory.transfer_time
        exponent, overhead_s = self.overlap_exponent, self.op_overhead_s
        joules_per_flop, joules_per_byte = self.energy_per_flop_j.get(dtype, 0.0), memory.energy_per_byte_j

        def price(flops: float, work: float, nbytes: float) -> OpCost:
            compute_s = work / ((peak or self.peak_flops(dtype)) * efficiency(work)) if flops > 0 else 0.0
            memory_s = transfer_time(nbytes) / bandwidth_factor
            time_s = overlap(compute_s, memory_s, exponent) + overhead_s
            # tuple.__new__ is what OpCost's own __new__ calls, without its Python frame (one per op)
            return tuple.__new__(OpCost, (time_s, compute_s, memory_s, overhead_s,
                                          roofline_bound(compute_s, memory_s, overhead_s),
                                          flops * joules_per_flop + nbytes * joules_per_byte))

        return price

    def _decode_attention_cost(self, op: AttentionOp, memory: MemorySpec) -> OpCost:
        """The decode requests of ``op`` (and a speculative verify's, each a decode with a few query
        rows per block) as the kernel runs them (:mod:`hw_models.decode_attention`), plus its prefill
        chunks on the roofline; energy as the roofline counts it."""
        decode = op.decode_like
        prefill = None
        if not decode.all():  # the prefill chunks of a mixed batch, on the roofline
            prefill = self._roofline_cost(op.subset(~decode), memory)
            decode_op = op.subset(decode)
        else:
            decode_op = op
        return self.decode_attention_priced(int(decode.sum()), op.kv_heads, decode_op.flops, decode_op.bytes,
                                            op.dtype, memory, op.flops, op.bytes, prefill)

    def decode_attention_priced(self, requests: int, kv_heads: int, flops: float, nbytes: float, dtype: DType,
                                memory: MemorySpec, op_flops: float, op_bytes: float,
                                prefill: OpCost | None = None) -> OpCost:
        """An attention op whose ``requests`` decodes over ``kv_heads`` KV heads (this device) take
        ``flops`` FLOP and move ``nbytes`` B, priced by the decode kernel; ``prefill`` the cost of
        its prefill chunks (None: none); energy from the whole op's ``op_flops`` and ``op_bytes``.
        Times in s, energy in J per device."""
        kernel = self.decode_attention
        assert kernel is not None
        heads = requests * kv_heads
        head_bytes = nbytes / heads  # K and V read and the new token's written, query and output
        block_flops = flops / heads
        peak = self.peak_flops(dtype)
        time_s = kernel.time_s(requests, kv_heads, head_bytes, block_flops, memory.bandwidth_bytes_per_s, peak)
        compute_s = flops / peak
        memory_s = nbytes / (kernel.memory_efficiency * memory.bandwidth_bytes_per_s)
        if prefill is not None:
            time_s, compute_s, memory_s = time_s + prefill.time_s, compute_s + prefill.compute_s, \
                memory_s + prefill.memory_s
        overhead_s = max(0.0, time_s - max(compute_s, memory_s))
        energy = op_flops * self.energy_per_flop_j.get(dtype, 0.0) + op_bytes * memory.energy_per_byte_j
        return OpCost(time_s, compute_s, memory_s, overhead_s, roofline_bound(compute_s, memory_s, overhead_s), energy)

    def experts_times(self, op: MoEExpertsOp, memory: MemorySpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per (draw, rank) arrays of the grouped expert GEMM: time, compute and memory (s), each
        rank's roofline of its active experts (no op overhead)."""
        sparse_ok = op.sparsity is not None and op.sparsity.pattern in self.sparsity_patterns
        density = op.sparsity.density if (op.sparsity is not None and not sparse_ok) else 1.0
        active = (op.expert_tokens > 0).sum(axis=2)
        return self.grouped_gemm_times(op.rank_flops / density, active, op.rank_weight_bytes + op.rank_activation_bytes,
                                       op.dtype, memory)

    def grouped_gemm_times(self, flops: np.ndarray, gemms: np.ndarray, nbytes: np.ndarray, dtype: DType,
                           memory: MemorySpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Time, compute and memory (s) of grouped GEMMs of ``flops`` FLOP in ``gemms`` GEMMs moving
        ``nbytes`` B (arrays of one shape, element-wise; no op overhead)."""
        peak = self.peak_flops(dtype)
        per_gemm = flops / np.maximum(gemms, 1)
        compute = np.where(flops > 0, flops / (peak * self.efficiency.at_many(per_gemm)), 0.0)
        bandwidth = memory.bandwidth_bytes_per_s * memory.efficiency.at_many(nbytes)
        mem = np.where(nbytes > 0, nbytes / bandwidth, 0.0)
        per_rank = np.maximum(compute, mem)
        if self.overlap_exponent > 0:
            low = np.minimum(compute, mem)
            ratio = np.divide(low, per_rank, out=np.zeros_like(per_rank), where=per_rank > 0)
            per_rank = per_rank * (1.0 + ratio ** self.overlap_exponent) ** (1.0 / self.overlap_exponent)
        return per_rank, compute, mem

    def _experts_cost(self, op: MoEExpertsOp, memory: MemorySpec) -> OpCost:
        """Grouped expert GEMM: each rank's time is its roofline; the step waits for the slowest
        rank of each layer's routing draw; the result is the mean over draws (layers)."""
        per_rank, compute, mem = self.experts_times(op, memory)
        sparse_ok = op.sparsity is not None and op.sparsity.pattern in self.sparsity_patterns
        density = op.sparsity.density if (op.sparsity is not None and not sparse_ok) else 1.0
        flops = op.rank_flops / density
        nbytes = op.rank_weight_bytes + op.rank_activation_bytes
        critical = per_rank.argmax(axis=1)
        rows = np.arange(per_rank.shape[0])
        compute_s = float(compute[rows, critical].mean())
        memory_s = float(mem[rows, critical].mean())
        time_s = float(per_rank.max(axis=1).mean()) + self.op_overhead_s
        energy = float(flops.mean()) * self.energy_per_flop_j.get(op.dtype, 0.0)
        energy += float(nbytes.mean()) * memory.energy_per_byte_j
        return OpCost(time_s, compute_s, memory_s, self.op_overhead_s,
                      roofline_bound(compute_s, memory_s, self.op_overhead_s), energy)


@register_unit_model("roofline")
def read_roofline_unit(name: str, table: TableReader, memories: tuple[str, ...]) -> RooflineUnit:
    """Build a RooflineUnit from ``[units.NAME]`` (see docs/specs.md)."""
    peaks = read_dtype_table(table, "peak_flops", positive=True)
    energy = read_dtype_table(table, "energy_per_flop_j", positive=False)
    missing = [str(d) for d in peaks if d not in energy]
    if missing:
        raise table.error("energy_per_flop_j", f"missing for dtypes with a peak: {', '.join(missing)}")
    tile_m = table.integer("tile_m", lo=0, hi=4096, default=0)
    if tile_m and (tile_m < MIN_TILE_ROWS or tile_m & (tile_m - 1)):
        raise table.error("tile_m", f"{tile_m} is not 0 or a power of two >= {MIN_TILE_ROWS}")
    exponent = table.number("overlap_exponent", lo=0.0, hi=1000.0, default=0.0)
    if 0 < exponent < 1:
        raise table.error("overlap_exponent", f"{exponent!r} outside the allowed range: 0 (max) or [1, 1000]")
    patterns = table.string_list("sparsity_patterns")
    for pattern in patterns:
        n, _, m = pattern.partition(":")
        if not (n.isdigit() and m.isdigit() and 0 < int(n) <= int(m)):
            raise table.error("sparsity_patterns", f"{pattern!r} is not of the form N:M with 0 < N <= M")
    return RooflineUnit(
        name=name,
        role=table.string("role", choices=("matrix", "vector")),
        memory=table.string("memory", choices=memories),
        peak_flops_by_dtype=peaks,
        energy_per_flop_j=energy,
        efficiency=EfficiencyCurve.read(table),
        op_overhead_s=table.number("op_overhead_s", hi=1.0),
        sparsity_patterns=patterns,
        tile_m=tile_m,
        overlap_exponent=exponent,
        decode_attention=read_decode_attention(table),
        weight_only_efficiency=_read_weight_only(table),
    )


def _read_weight_only(table: TableReader) -> dict[DType, float]:
    """``[units.NAME.weight_only_efficiency]``: stored weight format -> fraction in (0, 1]."""
    if not table.has("weight_only_efficiency"):
        return {}
    values = read_dtype_table(table, "weight_only_efficiency", positive=True)
    for dtype, value in values.items():
        if value > 1.0:
            raise table.sub("weight_only_efficiency").error(str(dtype), f"{value!r} outside the allowed range (0, 1]")
    return values
