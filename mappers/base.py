"""Plans (each op placed on a unit or link) and the mapper registry."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from decodex.core.errors import ArgumentError, InfeasibleError
from decodex.hw_models.device import DeviceSpec
from decodex.hw_models.memory import LinkSpec
from decodex.hw_models.system import SystemSpec
from decodex.workloads.graph import Graph, LayerTemplate
from decodex.workloads.ops import Op

if TYPE_CHECKING:
    from decodex.mappers.schedule import Schedule


@dataclass(frozen=True, eq=False, slots=True)
class Placement:
    """Where one op runs: a unit of a device (compute ops) or a link (collectives).

    ``concurrent``: the op runs at the same time as the placement before it (on another unit,
    e.g. Duplex's co-processing), so the analytical path counts the group's slowest member (and
    the time their shared memory needs for all their bytes) instead of the sum."""

    template: LayerTemplate
    op: Op
    device: DeviceSpec
    unit: str | None = None
    link: LinkSpec | None = None
    concurrent: bool = False

    @property
    def location(self) -> str:
        """The unit's name, or the link's (what an op record names as its ``unit``)."""
        return self.unit or (self.link.name if self.link else "")


@dataclass(frozen=True, eq=False)
class Plan:
    """A graph mapped onto a system: every op placed, in execution order.

    ``devices_used``: devices one model replica occupies. ``schedule``: the streams, blocks and
    tasks the discrete-event engine runs (``placements`` is what the analytical path sums),
    given as ``schedule_source``: the schedule or a function that builds it.
    """

    graph: Graph
    system: SystemSpec
    mapper: str
    placements: tuple[Placement, ...]
    devices_used: int
    options: Mapping[str, Any] = field(default_factory=dict)
    schedule_source: Schedule | Callable[[], Schedule] | None = None

    @property
    def schedule(self) -> Schedule | None:
        """The engine's schedule; a mapper may give a builder instead, run on first use (the
        analytical path, which sums ``placements``, never needs it)."""
        source = self.schedule_source
        if callable(source):
            source = source()
            object.__setattr__(self, "schedule_source", source)
        return source


class Mapper(Protocol):
    """Places a graph on a system."""

    name: str

    def map(self, graph: Graph, system: SystemSpec) -> Plan:
        """Place every op of ``graph`` on a unit or link of ``system``."""
        ...


MapperFactory = Callable[..., Mapper]
MAPPERS: dict[str, MapperFactory] = {}


def register_mapper(name: str) -> Callable[[MapperFactory], MapperFactory]:
    """Decorator: register a mapper class (or factory) under ``name``."""
    def wrap(factory: MapperFactory) -> MapperFactory:
        MAPPERS[name] = factory
        return factory
    return wrap


def get_mapper(name: str, **options: Any) -> Mapper:
    """An instance of the mapper registered as ``name`` with ``options``."""
    if name not in MAPPERS:
        raise ArgumentError(f"mapper: unknown mapper {name!r}; registered: {', '.join(sorted(MAPPERS))}")
    try:
        return MAPPERS[name](**options)
    except TypeError as err:
        raise ArgumentError(f"mapper {name!r}: bad options {sorted(options)}: {err}") from None


@dataclass(frozen=True)
class PimUnits:
    """Unit names of a device with a processing-in-memory unit: the host processor's first
    matrix unit (``host``: an NPU's arrays, an xPU's tensor cores), its first vector unit and
    the PIM unit."""

    host: str
    vector: str
    pim: str


def find_pim_units(device: DeviceSpec, pim_type: type | tuple[type, ...], mapper: str) -> PimUnits:
    """The device's first unit of ``pim_type`` (a type, or a tuple of types: any of them) and its
    first other matrix and vector units; InfeasibleError naming ``mapper`` and the device's units
    when one is missing."""
    pim = next((n for n, u in device.units.items() if isinstance(u, pim_type)), None)
    host = next((n for n, u in device.units.items() if u.role == "matrix" and n != pim), None)
    vector = next((n for n, u in device.units.items() if u.role == "vector" and n != pim), None)
    if pim is None or host is None or vector is None:
        kinds = " or ".join(t.__name__ for t in (pim_type if isinstance(pim_type, tuple) else (pim_type,)))
        raise InfeasibleError(f"the {mapper} mapper needs a {kinds}, a matrix unit and a vector unit; "
                              f"device {device.name!r} has {sorted(device.units)}")
    return PimUnits(host, vector, pim)


def replica_device(graph: Graph, system: SystemSpec, mapper: str) -> DeviceSpec:
    """The device every shard of ``graph`` runs on: the system must have one device group and,
    unless it is scalable, as many devices as the graph's parallelism needs (InfeasibleError)."""
    if len(system.groups) != 1:
        raise InfeasibleError(f"the {mapper} mapper needs identical devices; {system.name!r} has "
                              f"{len(system.groups)} device groups")
    par = graph.parallelism
    if par.devices > system.device_count and not system.scalable:
        raise InfeasibleError(f"{par.label} needs {par.devices} devices; system "
                              f"{system.name!r} has {system.device_count}")
    return system.primary_device
