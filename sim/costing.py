"""Price one placed op: a compute op on its unit, a collective on its link."""

from __future__ import annotations

from decodex.hw_models.collectives import collective_cost
from decodex.hw_models.cost import OpCost
from decodex.hw_models.memory import LinkSpec
from decodex.mappers.base import Placement
from decodex.workloads.ops import CollectiveOp

_MEMO = "_decodex_costs"  # per-op memo of its costs, in the op's own __dict__ (it lives as long as the op)


def collective_op_cost(collective: str, payload_bytes: float, devices: int, link: LinkSpec) -> OpCost:
    """One collective of ``payload_bytes`` B per device over ``devices`` devices on ``link``
    (:func:`hw_models.collectives.collective_cost`) as an op's cost: time in s, energy in J."""
    cost = collective_cost(collective, payload_bytes, devices, link)
    return OpCost(cost.time_s, 0.0, 0.0, 0.0, "network", cost.energy_j)


def _price(placement: Placement) -> OpCost:
    op = placement.op
    if isinstance(op, CollectiveOp):
        assert placement.link is not None
        return collective_op_cost(op.collective, op.payload_bytes, op.devices, placement.link)
    assert placement.unit is not None
    device = placement.device
    return device.units[placement.unit].op_cost(op, device.memories)


def placement_cost(placement: Placement) -> OpCost:
    """Time and dynamic energy (per device) of one instance of a placed op.

    An op is immutable, so its cost on one unit of one device (or on one link) is computed once:
    graphs that a mapper reuses (:func:`mappers.afd.decode_graph`) are priced once per op. The
    memo is keyed by the unit or link and checked by the identity of the device or link spec."""
    op = placement.op
    where = placement.link if placement.link is not None else placement.device
    key = placement.link.name if placement.link is not None else placement.unit
    memo: dict[object, tuple[object, OpCost]] = op.__dict__.setdefault(_MEMO, {})
    hit = memo.get(key)
    if hit is not None and hit[0] is where:
        return hit[1]
    cost = _price(placement)
    memo[key] = (where, cost)
    return cost
