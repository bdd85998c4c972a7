"""Collective communication times: ring formulas (α-β model) and one-/two-shot all-reduce kernels.

For p devices, a buffer of S bytes per device, link bandwidth β (B/s per direction, achieved)
and per-hop latency α:

- all-reduce (ring: reduce-scatter + all-gather): 2(p-1)/p · S/β + 2(p-1)·α
- all-gather, reduce-scatter:                      (p-1)/p · S/β + (p-1)·α
- all-to-all (each device sends (p-1)/p of S):     (p-1)/p · S/β + α
  (p-1 point-to-point transfers issued together, as NCCL's grouped send/recv and DeepEP do:
  their latencies overlap, unlike a ring's p-1 dependent hops)
- send/recv (point to point):                      S/β + α

plus the link's ``collective_overhead_s`` once per group collective (launch and rank
synchronization of an NCCL call; not for send/recv).

An all-reduce on a link with ``custom_allreduce_latency_s`` (NVLink/NVSwitch: peers read each
other's memory) may instead run the kernels serving engines use for small and mid-size messages
(TensorRT-LLM ``customAllReduceKernels.cu``, vLLM/SGLang custom all-reduce, PyTorch intra-node
comm), with L = ``custom_allreduce_latency_s`` + (p-1) · ``custom_allreduce_peer_latency_s``
per synchronization:

- one-shot (every device reads the p-1 peers' whole buffers and sums, one barrier): (p-1) · S/β + L
- two-shot (reduce-scatter then all-gather through peer reads, two barriers): 2(p-1)/p · S/β + 2L

for S up to ``custom_allreduce_max_bytes`` (their workspace). The cheapest algorithm the link
offers is taken: one-shot at small sizes (latency), two-shot in the middle, the ring beyond the
workspace; ``algorithm`` forces one (``"ring"`` prices what an NCCL call costs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from decodex.hw_models.memory import LinkSpec

ALGORITHMS = ("ring", "oneshot", "twoshot")


@dataclass(frozen=True)
class CollectiveCost:
    """Time (s) of a collective, bytes each device sends, and the energy of moving them (J)."""

    time_s: float
    sent_bytes: float
    energy_j: float


@dataclass(frozen=True)
class CollectiveForm:
    """One algorithm of a collective as a line in the payload S (B): time = fixed_s + seconds_per_byte
    · S, valid for S <= max_bytes; each device sends sent_factor · S bytes."""

    algorithm: str
    fixed_s: float
    sent_factor: float
    seconds_per_byte: float
    max_bytes: float = np.inf


def collective_forms(collective: str, devices: int, link: LinkSpec,
                     algorithm: str | None = None) -> tuple[CollectiveForm, ...]:
    """The algorithms ``collective`` may take over ``devices`` devices on ``link`` (see the module
    docstring), or only ``algorithm``; empty when p <= 1 (nothing to exchange)."""
    p = devices
    if algorithm is not None and algorithm not in ALGORITHMS:
        raise ValueError(f"unknown all-reduce algorithm {algorithm!r}; known: {', '.join(ALGORITHMS)}")
    if p <= 1 and collective != "send_recv":
        return ()
    beta = link.effective_bandwidth
    if collective == "all_reduce":
        sent, hops = 2.0 * (p - 1) / p, 2 * (p - 1)
    elif collective in ("all_gather", "reduce_scatter"):
        sent, hops = (p - 1) / p, p - 1
    elif collective == "all_to_all":
        sent, hops = (p - 1) / p, 1
    elif collective == "send_recv":
        sent, hops = 1.0, 1
    else:
        raise ValueError(f"unknown collective {collective!r}")
    # the fixed launch-and-synchronize cost belongs to group collectives; a point-to-point send
    # has only its hop latency
    overhead = 0.0 if collective == "send_recv" else link.collective_overhead_s
    forms = [CollectiveForm("ring", hops * link.latency_s + overhead, sent, sent / beta)]
    if collective == "all_reduce" and link.custom_allreduce_latency_s is not None:
        sync = link.custom_allreduce_latency_s + (p - 1) * link.custom_allreduce_peer_latency_s
        limit = link.custom_allreduce_max_bytes
        forms.append(CollectiveForm("oneshot", sync, float(p - 1), (p - 1) / beta, limit))
        forms.append(CollectiveForm("twoshot", 2.0 * sync, sent, sent / beta, limit))
    if algorithm is not None:
        forms = [f for f in forms if f.algorithm == algorithm]
        if not forms:
            raise ValueError(f"{link.name}: no {algorithm} algorithm for {collective}")
    return tuple(forms)


def collective_cost(collective: str, payload_bytes: float, devices: int, link: LinkSpec,
                    algorithm: str | None = None) -> CollectiveCost:
    """Cost of ``collective`` over ``devices`` devices on ``link``: the cheapest algorithm the link
    offers at this payload (B), or ``algorithm`` (see the module docstring)."""
    forms = collective_forms(collective, devices, link, algorithm)
    if not forms:
        return CollectiveCost(0.0, 0.0, 0.0)
    usable = [f for f in forms if payload_bytes <= f.max_bytes] or [forms[0]]
    best = min(usable, key=lambda f: f.fixed_s + f.seconds_per_byte * payload_bytes)
    sent = best.sent_factor * payload_bytes
    return CollectiveCost(best.fixed_s + best.seconds_per_byte * payload_bytes, sent, sent * link.energy_per_byte_j)


def collective_cost_many(collective: str, payload_bytes: np.ndarray, devices: int,
                         link: LinkSpec) -> tuple[np.ndarray, np.ndarray]:
    """Vectorized :func:`collective_cost`: time (s) and bytes sent per device for each payload (B)."""
    forms = collective_forms(collective, devices, link)
    payload = np.asarray(payload_bytes, dtype=np.float64)
    if not forms:
        return np.zeros_like(payload), np.zeros_like(payload)
    time = np.full(payload.shape, np.inf)
    sent = np.zeros_like(payload)
    for index, form in enumerate(forms):
        t = form.fixed_s + form.seconds_per_byte * payload
        # the ring (first) is always available; the custom kernels only within their workspace
        t = t if index == 0 else np.where(payload <= form.max_bytes, t, np.inf)
        better = t < time
        time = np.where(better, t, time)
        sent = np.where(better, form.sent_factor * payload, sent)
    return time, sent
