"""Price one placed op: a compute op on its unit, a collective on its link."""

from __future__ import annotations

from decodex.hw_models.collectives import collective_cost
from decodex.hw_models.cost import OpCost
from decodex.mappers.base import Placement
from decodex.workloads.ops import CollectiveOp


def placement_cost(placement: Placement) -> OpCost:
    """Time and dynamic energy (per device) of one instance of a placed op."""
    op = placement.op
    if isinstance(op, CollectiveOp):
        assert placement.link is not None
        cost = collective_cost(op.collective, op.payload_bytes, op.devices, placement.link)
        return OpCost(cost.time_s, 0.0, 0.0, 0.0, "network", cost.energy_j)
    assert placement.unit is not None
    device = placement.device
    return device.units[placement.unit].op_cost(op, device.memories)
