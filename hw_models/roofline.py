"""The roofline unit: GPU tensor cores, GPU CUDA cores, CPU cores.

time = max(FLOP / (peak × compute efficiency), bytes / (bandwidth × memory efficiency)) + overhead

Peaks are per dtype; the efficiencies are data in the spec (constants or curves over size);
an op with N:M sparsity runs its reduced FLOPs only where the unit lists that pattern.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from hw_models.cost import OpCost, UnsupportedOpError, roofline_bound
from hw_models.efficiency import EfficiencyCurve
from hw_models.memory import MemorySpec
from hw_models.spec_reader import TableReader
from hw_models.units import register_unit_model
from workloads.ops import MoEExpertsOp, Op
from workloads.precision import DType


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
        flops = self.executed_flops(op)
        compute_s = 0.0
        if flops > 0:
            compute_s = flops / (self.peak_flops(op.dtype) * self.efficiency.at(flops))
        nbytes = op.bytes
        memory_s = memory.transfer_time(nbytes)
        time_s = max(compute_s, memory_s) + self.op_overhead_s
        energy = flops * self.energy_per_flop_j.get(op.dtype, 0.0) + nbytes * memory.energy_per_byte_j
        return OpCost(time_s, compute_s, memory_s, self.op_overhead_s,
                      roofline_bound(compute_s, memory_s, self.op_overhead_s), energy)

    def _experts_cost(self, op: MoEExpertsOp, memory: MemorySpec) -> OpCost:
        """Grouped expert GEMM: each rank's time is its roofline; the step waits for the slowest
        rank of each layer's routing draw; the result is the mean over draws (layers)."""
        peak = self.peak_flops(op.dtype)
        sparse_ok = op.sparsity is not None and op.sparsity.pattern in self.sparsity_patterns
        density = op.sparsity.density if (op.sparsity is not None and not sparse_ok) else 1.0
        flops = op.rank_flops / density  # (draws, ranks)
        active = np.maximum((op.expert_tokens > 0).sum(axis=2), 1)
        per_gemm = flops / active
        compute = np.where(flops > 0, flops / (peak * self.efficiency.at_many(per_gemm)), 0.0)
        nbytes = op.rank_weight_bytes + op.rank_activation_bytes
        bandwidth = memory.bandwidth_bytes_per_s * memory.efficiency.at_many(nbytes)
        mem = np.where(nbytes > 0, nbytes / bandwidth, 0.0)
        per_rank = np.maximum(compute, mem)
        critical = per_rank.argmax(axis=1)
        rows = np.arange(per_rank.shape[0])
        compute_s = float(compute[rows, critical].mean())
        memory_s = float(mem[rows, critical].mean())
        time_s = float(per_rank.max(axis=1).mean()) + self.op_overhead_s
        energy = float(flops.mean()) * self.energy_per_flop_j.get(op.dtype, 0.0)
        energy += float(nbytes.mean()) * memory.energy_per_byte_j
        return OpCost(time_s, compute_s, memory_s, self.op_overhead_s,
                      roofline_bound(compute_s, memory_s, self.op_overhead_s), energy)


def _dtype_table(table: TableReader, key: str, positive: bool) -> dict[DType, float]:
    sub = table.sub(key)
    out: dict[DType, float] = {}
    for name in sub:
        try:
            dtype = DType(name)
        except ValueError:
            raise sub.error(name, f"unknown dtype; allowed: {', '.join(d.value for d in DType)}") from None
        out[dtype] = sub.positive(name) if positive else sub.number(name)
    if not out:
        raise table.error(key, "needs at least one dtype")
    return out


@register_unit_model("roofline")
def read_roofline_unit(name: str, table: TableReader, memories: tuple[str, ...]) -> RooflineUnit:
    """Build a RooflineUnit from ``[units.NAME]`` (see docs/specs.md)."""
    peaks = _dtype_table(table, "peak_flops", positive=True)
    energy = _dtype_table(table, "energy_per_flop_j", positive=False)
    missing = [str(d) for d in peaks if d not in energy]
    if missing:
        raise table.error("energy_per_flop_j", f"missing for dtypes with a peak: {', '.join(missing)}")
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
    )
