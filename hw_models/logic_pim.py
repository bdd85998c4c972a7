"""The near-memory processor unit ("logic_pim"): Duplex's Logic-PIM and its BankGroup-PIM variant.

(Duplex's Bank-PIM comparison point is a ``bank_pim`` unit, priced command by command:
:mod:`hw_models.bank_pim` and :mod:`hw_models.bank_pim_gemv`; ``level = "bank"`` here remains a
roofline what-if.)

A processor built into the memory stacks of a device. Its compute is ``stacks`` ×
``modules_per_stack`` GEMM modules of ``macs_per_module`` multiply-accumulators at
``frequency_hz``:

    peak = 2 · stacks · modules_per_stack · macs_per_module · frequency_hz   FLOP/s

for every dtype in ``dtypes`` (one datapath). It reads the memory named by ``memory`` through its
own path, ``bandwidth_multiple`` times that memory's external bandwidth (Logic-PIM: extra TSVs
to the logic die; BankGroup-PIM: bank-group I/O on the DRAM die; Bank-PIM: every bank's I/O),
at ``memory_efficiency`` of that peak and ``energy_per_byte_j`` per byte (an internal access: no
interposer PHY). ``level`` names where the compute sits (``logic_die``, ``bank_group``, ``bank``):
descriptive, the numbers are what differ.

The ridge point, the arithmetic intensity (Op/B, FLOP per byte) above which an op is
compute-bound here, is ``peak / (bandwidth_multiple · external bandwidth · memory_efficiency)``:
≈ 8 for Duplex's Logic-PIM (21.3 TFLOP/s and 4 × 0.67 TB/s per HBM3 stack), ≈ 1 for Bank-PIM,
against ≈ 300 for an H100's tensor cores. Ops are priced by the roofline: time = max(FLOP /
(peak · efficiency), bytes / path bandwidth) + ``op_overhead_s``; MoE experts per rank as on any
roofline unit (:class:`hw_models.roofline.RooflineUnit`, which this model delegates to with its
own compute and a view of the memory through its path). Dynamic energy = FLOP ×
``energy_per_flop_j`` + bytes × ``energy_per_byte_j``.

Sharing the memory with the device's other units (the xPU): the two read different bank
bundles at the same time (Duplex); in the discrete-event engine each transfer is capped by its
own path and all of them share the memory's ``shared_bandwidth_bytes_per_s`` (the banks' total).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from decodex.core.dtypes import DType
from decodex.hw_models.cost import OpCost
from decodex.hw_models.efficiency import EfficiencyCurve
from decodex.hw_models.memory import MemorySpec
from decodex.hw_models.roofline import RooflineUnit
from decodex.hw_models.spec_reader import TableReader
from decodex.hw_models.units import register_unit_model
from decodex.workloads.ops import MoEExpertsOp, Op

LEVELS = ("logic_die", "bank_group", "bank")


@dataclass(frozen=True)
class LogicPimUnit:
    """A near-memory GEMM engine with its own path into the device memory (module docstring)."""

    name: str
    role: str
    memory: str
    level: str
    stacks: int
    modules_per_stack: int
    macs_per_module: int
    frequency_hz: float
    bandwidth_multiple: float
    memory_efficiency: float
    energy_per_byte_j: float
    dtypes: tuple[DType, ...]
    energy_per_flop_j: float
    efficiency: EfficiencyCurve
    op_overhead_s: float = 0.0
    module_buffer_bytes: float = 0.0
    shared_buffer_bytes: float = 0.0
    _engine: RooflineUnit = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        peak = self.peak_flops_any
        engine = RooflineUnit(
            name=self.name, role=self.role, memory=self.memory,
            peak_flops_by_dtype={d: peak for d in self.dtypes},
            energy_per_flop_j={d: self.energy_per_flop_j for d in self.dtypes},
            efficiency=self.efficiency, op_overhead_s=self.op_overhead_s)
        object.__setattr__(self, "_engine", engine)

    @property
    def peak_flops_any(self) -> float:
        """Peak FLOP/s of the unit (every supported dtype)."""
        return 2.0 * self.stacks * self.modules_per_stack * self.macs_per_module * self.frequency_hz

    def supports(self, dtype: DType) -> bool:
        return dtype in self.dtypes

    def peak_flops(self, dtype: DType) -> float:
        return self._engine.peak_flops(dtype)

    def path_bandwidth(self, memory: MemorySpec) -> float:
        """Achieved bandwidth of this unit's own path into ``memory``, B/s."""
        return self.bandwidth_multiple * memory.bandwidth_bytes_per_s * self.memory_efficiency

    def ridge_flop_per_byte(self, memory: MemorySpec) -> float:
        """Arithmetic intensity (FLOP/B) at which compute and memory time are equal here."""
        return self.peak_flops_any * self.efficiency.at(1e12) / self.path_bandwidth(memory)

    def internal_memory(self, memory: MemorySpec) -> MemorySpec:
        """``memory`` as this unit sees it: its path's peak and efficiency, its energy per byte."""
        return replace(memory, bandwidth_bytes_per_s=self.bandwidth_multiple * memory.bandwidth_bytes_per_s,
                       efficiency=EfficiencyCurve.constant(self.memory_efficiency),
                       energy_per_byte_j=self.energy_per_byte_j)

    def op_cost(self, op: Op, memories: Mapping[str, MemorySpec]) -> OpCost:
        inner = {self.memory: self.internal_memory(memories[self.memory])}
        return self._engine.op_cost(op, inner)

    def experts_times(self, op: MoEExpertsOp, memory: MemorySpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per (draw, rank) time, compute and memory arrays (s) of a grouped expert GEMM here."""
        return self._engine.experts_times(op, self.internal_memory(memory))

    def grouped_gemm_times(self, flops: np.ndarray, gemms: np.ndarray, nbytes: np.ndarray, dtype: DType,
                           memory: MemorySpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`hw_models.roofline.RooflineUnit.grouped_gemm_times` through this unit's path."""
        return self._engine.grouped_gemm_times(flops, gemms, nbytes, dtype, self.internal_memory(memory))


@register_unit_model("logic_pim")
def read_logic_pim_unit(name: str, table: TableReader, memories: tuple[str, ...]) -> LogicPimUnit:
    """Build a LogicPimUnit from ``[units.NAME]`` (see docs/specs.md and docs/duplex.md)."""
    dtypes = []
    for text in table.string_list("dtypes"):
        try:
            dtypes.append(DType(text))
        except ValueError:
            raise table.error("dtypes", f"unknown dtype {text!r}; allowed: "
                              f"{', '.join(d.value for d in DType)}") from None
    if not dtypes:
        raise table.error("dtypes", "needs at least one dtype")
    return LogicPimUnit(
        name=name,
        role=table.string("role", choices=("matrix", "vector"), default="matrix"),
        memory=table.string("memory", choices=memories),
        level=table.string("level", choices=LEVELS),
        stacks=table.integer("stacks", lo=1, hi=64),
        modules_per_stack=table.integer("modules_per_stack", lo=1, hi=1 << 20),
        macs_per_module=table.integer("macs_per_module", lo=1, hi=1 << 20),
        frequency_hz=table.number("frequency_hz", lo=1e6, hi=1e11),
        bandwidth_multiple=table.number("bandwidth_multiple", lo=0.0, hi=1024.0, lo_open=True),
        memory_efficiency=table.number("memory_efficiency", lo=0.0, hi=1.0, lo_open=True),
        energy_per_byte_j=table.number("energy_per_byte_j", hi=1e-9),
        dtypes=tuple(dtypes),
        energy_per_flop_j=table.number("energy_per_flop_j", hi=1e-9),
        efficiency=EfficiencyCurve.read(table),
        op_overhead_s=table.number("op_overhead_s", hi=1.0, default=0.0),
        module_buffer_bytes=table.number("module_buffer_bytes", default=0.0),
        shared_buffer_bytes=table.number("shared_buffer_bytes", default=0.0),
    )
