"""Collective communication times with the standard ring formulas (α-β model).

For p devices, a buffer of S bytes per device, link bandwidth β (B/s per direction, achieved)
and per-hop latency α:

- all-reduce (ring: reduce-scatter + all-gather): 2(p-1)/p · S/β + 2(p-1)·α
- all-gather, reduce-scatter:                      (p-1)/p · S/β + (p-1)·α
- all-to-all (each device sends (p-1)/p of S):     (p-1)/p · S/β + α
  (p-1 point-to-point transfers issued together, as NCCL's grouped send/recv and DeepEP do:
  their latencies overlap, unlike a ring's p-1 dependent hops)
- send/recv (point to point):                      S/β + α

plus the link's ``collective_overhead_s`` once per group collective (launch and rank synchronization;
not for send/recv).
"""

from __future__ import annotations

from dataclasses import dataclass

from decodex.hw_models.memory import LinkSpec


@dataclass(frozen=True)
class CollectiveCost:
    """Time (s) of a collective, bytes each device sends, and the energy of moving them (J)."""

    time_s: float
    sent_bytes: float
    energy_j: float


def collective_cost(collective: str, payload_bytes: float, devices: int, link: LinkSpec) -> CollectiveCost:
    """Cost of ``collective`` over ``devices`` devices on ``link`` (see module docstring)."""
    p = devices
    if p <= 1 and collective != "send_recv":
        return CollectiveCost(0.0, 0.0, 0.0)
    if collective == "all_reduce":
        sent, hops = 2.0 * (p - 1) / p * payload_bytes, 2 * (p - 1)
    elif collective in ("all_gather", "reduce_scatter"):
        sent, hops = (p - 1) / p * payload_bytes, p - 1
    elif collective == "all_to_all":
        sent, hops = (p - 1) / p * payload_bytes, 1
    elif collective == "send_recv":
        sent, hops = payload_bytes, 1
    else:
        raise ValueError(f"unknown collective {collective!r}")
    # the fixed launch-and-synchronize cost belongs to group collectives; a point-to-point send
    # has only its hop latency
    fixed = 0.0 if collective == "send_recv" else link.collective_overhead_s
    time = sent / link.effective_bandwidth + hops * link.latency_s + fixed
    return CollectiveCost(time, sent, sent * link.energy_per_byte_j)
