"""Memories and links of a device."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from decodex.hw_models.efficiency import EfficiencyCurve
from decodex.hw_models.spec_reader import TableReader

LARGE_TRANSFER_BYTES = 1e9  # size at which the default shared budget takes the efficiency curve


@dataclass(frozen=True)
class MemorySpec:
    """A memory: capacity (B), peak bandwidth (B/s), achieved efficiency, energy per byte (J/B).

    ``capacity_bytes`` is the physical capacity in its datasheet unit (an "80 GB" HBM stack set of
    an A100/H100 is 80 GiB = 85.9e9 B). ``driver_reserved_bytes``: what the driver keeps and never
    exposes (capacity minus nvidia-smi's total: ECC, page tables, firmware).
    ``runtime_reserved_bytes``: what the runtime holds before any model state (CUDA context,
    library handles and workspaces). :attr:`available_bytes` is what weights, KV cache and
    activations share; a what-if scaling ``capacity_bytes`` keeps both reservations.

    On-chip caches may give only a capacity (bandwidth 0 = not modelled as a bottleneck).
    ``access``: how units of the device that run at once share it, in the discrete-event engine:
    ``"exclusive"`` (one unit's transfer at a time, e.g. a single row buffer shared by an NPU and
    PIM) or ``"concurrent"`` (each unit has its own path; together they share
    ``shared_bandwidth_bytes_per_s``, by default the achieved bandwidth of large transfers).
    """

    name: str
    capacity_bytes: float
    bandwidth_bytes_per_s: float = 0.0
    efficiency: EfficiencyCurve = field(default_factory=lambda: EfficiencyCurve.constant(1.0))
    energy_per_byte_j: float = 0.0
    access: str = "concurrent"
    shared_budget_bytes_per_s: float | None = None
    driver_reserved_bytes: float = 0.0
    runtime_reserved_bytes: float = 0.0

    @property
    def available_bytes(self) -> float:
        """Bytes for model state: capacity minus the driver's and the runtime's reservations."""
        return self.capacity_bytes - self.driver_reserved_bytes - self.runtime_reserved_bytes

    @property
    def shared_bandwidth_bytes_per_s(self) -> float:
        """Bandwidth budget concurrent units share, B/s."""
        if self.shared_budget_bytes_per_s is not None:
            return self.shared_budget_bytes_per_s
        return self.bandwidth_bytes_per_s * self.efficiency.at(LARGE_TRANSFER_BYTES)

    def effective_bandwidth(self, nbytes: float) -> float:
        """Achieved bandwidth for a transfer of ``nbytes``, B/s."""
        return self.bandwidth_bytes_per_s * self.efficiency.at(nbytes)

    def transfer_time(self, nbytes: float) -> float:
        """Seconds to move ``nbytes`` at the achieved bandwidth (inf when no bandwidth)."""
        if nbytes <= 0:
            return 0.0
        if self.bandwidth_bytes_per_s <= 0:
            return math.inf
        return nbytes / self.effective_bandwidth(nbytes)

    @classmethod
    def read(cls, name: str, table: TableReader) -> MemorySpec:
        capacity = table.positive("capacity_bytes")
        driver = table.number("driver_reserved_bytes", hi=capacity, default=0.0)
        runtime = table.number("runtime_reserved_bytes", hi=capacity, default=0.0)
        if driver + runtime >= capacity:
            raise table.error("runtime_reserved_bytes", f"driver_reserved_bytes + runtime_reserved_bytes = "
                              f"{driver + runtime:g} B leave nothing of capacity_bytes = {capacity:g} B")
        if not table.has("bandwidth_bytes_per_s"):
            return cls(name, capacity, driver_reserved_bytes=driver, runtime_reserved_bytes=runtime)
        budget = table.positive("shared_bandwidth_bytes_per_s") if table.has("shared_bandwidth_bytes_per_s") else None
        return cls(
            name=name,
            capacity_bytes=capacity,
            bandwidth_bytes_per_s=table.positive("bandwidth_bytes_per_s"),
            efficiency=EfficiencyCurve.read(table),
            energy_per_byte_j=table.number("energy_per_byte_j", default=0.0),
            access=table.string("access", choices=("concurrent", "exclusive"), default="concurrent"),
            shared_budget_bytes_per_s=budget,
            driver_reserved_bytes=driver,
            runtime_reserved_bytes=runtime,
        )


@dataclass(frozen=True)
class LinkSpec:
    """A link leaving a device: bandwidth per direction (B/s), latency per hop (s), achieved
    efficiency, and a fixed cost added once per collective on it (s: launch, rank synchronization).

    ``custom_allreduce_latency_s``/``custom_allreduce_peer_latency_s``/``custom_allreduce_max_bytes``:
    a link whose devices read each other's memory directly (NVLink/NVSwitch) may run all-reduces
    with the one-shot and two-shot kernels of serving engines (TensorRT-LLM, vLLM, SGLang, PyTorch
    intra-node comm) instead of an NCCL ring: their synchronization time is the fixed latency plus
    the per-peer latency x (p - 1); messages above ``custom_allreduce_max_bytes`` (the kernels'
    workspace) go to the ring. None: the link has no such kernels (see :mod:`hw_models.collectives`).
    """

    name: str
    bandwidth_bytes_per_s: float
    latency_s: float
    efficiency: float = 1.0
    energy_per_byte_j: float = 0.0
    collective_overhead_s: float = 0.0
    custom_allreduce_latency_s: float | None = None
    custom_allreduce_peer_latency_s: float = 0.0
    custom_allreduce_max_bytes: float = 0.0

    @property
    def effective_bandwidth(self) -> float:
        """Achieved bandwidth per direction, B/s."""
        return self.bandwidth_bytes_per_s * self.efficiency

    @classmethod
    def read(cls, name: str, table: TableReader) -> LinkSpec:
        if table.has("custom_allreduce_latency_s") and not table.has("custom_allreduce_max_bytes"):
            raise table.error("custom_allreduce_max_bytes", "required with custom_allreduce_latency_s (bytes, > 0)")
        return cls(
            name=name,
            bandwidth_bytes_per_s=table.positive("bandwidth_bytes_per_s"),
            latency_s=table.number("latency_s", hi=1.0),
            efficiency=table.number("efficiency", lo=0.0, hi=1.0, lo_open=True, default=1.0),
            energy_per_byte_j=table.number("energy_per_byte_j", default=0.0),
            collective_overhead_s=table.number("collective_overhead_s", hi=1.0, default=0.0),
            custom_allreduce_latency_s=(table.number("custom_allreduce_latency_s", hi=1.0)
                                        if table.has("custom_allreduce_latency_s") else None),
            custom_allreduce_peer_latency_s=table.number("custom_allreduce_peer_latency_s", hi=1.0, default=0.0),
            custom_allreduce_max_bytes=table.number("custom_allreduce_max_bytes", default=0.0),
        )
