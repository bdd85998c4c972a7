"""Plans (each op placed on a unit or link) and the mapper registry."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from hw_models.device import DeviceSpec
from hw_models.memory import LinkSpec
from hw_models.system import SystemSpec
from workloads.errors import ArgumentError
from workloads.graph import Graph, LayerTemplate
from workloads.ops import Op

if TYPE_CHECKING:
    from mappers.schedule import Schedule


@dataclass(frozen=True, eq=False)
class Placement:
    """Where one op runs: a unit of a device (compute ops) or a link (collectives)."""

    template: LayerTemplate
    op: Op
    device: DeviceSpec
    unit: str | None = None
    link: LinkSpec | None = None


@dataclass(frozen=True, eq=False)
class Plan:
    """A graph mapped onto a system: every op placed, in execution order.

    ``devices_used``: devices one model replica occupies. ``schedule``: the streams, blocks and
    tasks the discrete-event engine runs (``placements`` is what the analytical path sums).
    """

    graph: Graph
    system: SystemSpec
    mapper: str
    placements: tuple[Placement, ...]
    devices_used: int
    options: Mapping[str, Any] = field(default_factory=dict)
    schedule: Schedule | None = None


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
