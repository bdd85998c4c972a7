"""Compute-unit models and their registry.

A unit model answers: how long, and with how much dynamic energy, does this op take on me.
Each model is registered under the name that spec files give in ``units.<name>.model``; the
registry lets the CLI, dashboard and sweeps list what exists without an if-chain.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

from decodex.core.dtypes import DType
from decodex.hw_models.cost import OpCost
from decodex.hw_models.spec_reader import TableReader
from decodex.workloads.ops import Op

if TYPE_CHECKING:
    from decodex.hw_models.memory import MemorySpec


class UnitModel(Protocol):
    """What every compute-unit model provides."""

    name: str
    role: str  # "matrix" or "vector"
    memory: str  # name of the device memory it reads and writes

    def supports(self, dtype: DType) -> bool:
        """Whether the unit has a datapath for ``dtype``."""
        ...

    def peak_flops(self, dtype: DType) -> float:
        """Peak FLOP/s for ``dtype``."""
        ...

    def op_cost(self, op: Op, memories: Mapping[str, MemorySpec]) -> OpCost:
        """Time and dynamic energy of one instance of ``op`` on this unit."""
        ...


UnitReader = Callable[[str, TableReader, tuple[str, ...]], UnitModel]
UNIT_MODELS: dict[str, UnitReader] = {}


def register_unit_model(name: str) -> Callable[[UnitReader], UnitReader]:
    """Decorator: register a reader that builds a unit model from its spec table."""
    def wrap(reader: UnitReader) -> UnitReader:
        UNIT_MODELS[name] = reader
        return reader
    return wrap


def read_unit(name: str, table: TableReader, memories: tuple[str, ...]) -> UnitModel:
    """Build the unit named ``name`` from its table, with the model its ``model`` field names."""
    model = table.string("model", choices=tuple(sorted(UNIT_MODELS)))
    return UNIT_MODELS[model](name, table, memories)
