"""``op_time``: the cost of one op on a named unit of a device."""

from __future__ import annotations

from decodex.core.errors import ArgumentError
from decodex.hw_models.cost import OpCost
from decodex.hw_models.device import DeviceSpec
from decodex.hw_models.units import UnitModel
from decodex.workloads.ops import Op


def op_time(op: Op, unit: str | UnitModel, device: DeviceSpec) -> OpCost:
    """Time (s), bound and dynamic energy (J) of one instance of ``op`` on ``unit`` of ``device``.

    ``unit`` is a unit name of the device (``"tensor"``, ``"simt"`` ...) or a unit model.
    """
    if isinstance(unit, str):
        if unit not in device.units:
            raise ArgumentError(f"unit: device {device.name!r} has no unit {unit!r} "
                                f"(it has: {', '.join(device.units)})")
        unit = device.units[unit]
    return unit.op_cost(op, device.memories)
