"""Where a bank-level PIM's requests run and when each channel finishes.

Every request's KV cache lives in one PIM channel. :func:`assign_channels` places requests
(``round_robin``: the naive NPU+PIM baseline; ``greedy``: NeuPIMs' longest-first balancing),
:func:`channel_loads` sums per-channel work, and :func:`channel_finish_cycles` says when each
channel is done when the host issues the PIM instructions at a bounded rate (the naive
baseline's core: one per cycle, channel by channel). Used by :mod:`hw_models.bank_pim`.
"""

from __future__ import annotations

import heapq

import numpy as np

from decodex.core.errors import ArgumentError

CHANNEL_POLICIES = ("round_robin", "greedy")


def assign_channels(context_lens: np.ndarray, channels: int, policy: str = "round_robin") -> np.ndarray:
    """Channel index of each request (int64 array, same length as ``context_lens``).

    ``context_lens`` is any non-negative per-request load (context lengths, or
    :meth:`BankPimUnit.request_cycles` for exact balance). ``round_robin``: request i -> i mod
    ``channels`` (the naive NPU+PIM baseline). ``greedy`` (NeuPIMs): longest first, each to the
    least loaded channel (LPT); if that ever leaves a larger maximum load than round-robin (LPT is
    a heuristic: e.g. loads [5, 4, 3, 3, 3] on 2 channels), the round-robin assignment is returned,
    so greedy is never worse than round-robin on the slowest channel.
    """
    loads = np.asarray(context_lens, dtype=np.float64).ravel()
    if channels < 1:
        raise ArgumentError(f"channels: {channels} must be >= 1")
    if policy not in CHANNEL_POLICIES:
        raise ArgumentError(f"channel_policy: {policy!r} not one of {', '.join(CHANNEL_POLICIES)}")
    robin = np.arange(loads.size, dtype=np.int64) % channels
    if policy == "round_robin" or loads.size <= channels:
        return robin
    order = np.argsort(-loads, kind="stable")
    heap = [(0.0, c) for c in range(channels)]
    greedy = np.empty(loads.size, dtype=np.int64)
    for index in order:
        load, channel = heapq.heappop(heap)
        greedy[index] = channel
        heapq.heappush(heap, (load + float(loads[index]), channel))
    if channel_loads(loads, greedy, channels).max() > channel_loads(loads, robin, channels).max():
        return robin
    return greedy


def channel_loads(loads: np.ndarray, channel_of_request: np.ndarray, channels: int) -> np.ndarray:
    """Sum of the per-request ``loads`` on each channel (length ``channels``)."""
    return np.bincount(np.asarray(channel_of_request, dtype=np.int64),
                       weights=np.asarray(loads, dtype=np.float64), minlength=channels)


def channel_finish_cycles(cycles: np.ndarray, instructions: np.ndarray, channel_of_request: np.ndarray,
                          channels: int, issue_per_cycle: float = 0.0) -> np.ndarray:
    """Cycle at which each channel finishes its requests' PIM work (length ``channels``).

    ``issue_per_cycle`` = 0: every instruction is issued at once (the host pushes the whole stream),
    so a channel finishes after its busy time, the sum of its requests' ``cycles``. Otherwise the
    host issues ``issue_per_cycle`` instructions per cycle in request order, channel by channel
    (the requests of channel 0 first, as a batch gathered from per-channel queues is issued), and a
    channel can start a request only once its first instruction is issued and end it no earlier
    than its last: finish = max over its requests r of (issue start of r + the cycles of r and of
    the channel's later requests), and at least the issue end of its last request."""
    cycles = np.asarray(cycles, dtype=np.float64).ravel()
    channel = np.asarray(channel_of_request, dtype=np.int64).ravel()
    if issue_per_cycle <= 0 or cycles.size == 0:
        return channel_loads(cycles, channel, channels)
    order = np.argsort(channel, kind="stable")
    work, chan = cycles[order], channel[order]
    issued = np.cumsum(np.asarray(instructions, dtype=np.float64).ravel()[order]) / issue_per_cycle
    start = issued - np.asarray(instructions, dtype=np.float64).ravel()[order] / issue_per_cycle
    firsts = np.flatnonzero(np.r_[True, chan[1:] != chan[:-1]])
    lasts = np.r_[firsts[1:], chan.size] - 1
    before = np.cumsum(work) - work  # cycles of the requests sorted before each one
    group_total = np.add.reduceat(work, firsts)
    group_offset = np.repeat(before[firsts], np.diff(np.r_[firsts, chan.size]))
    later = np.repeat(group_total, np.diff(np.r_[firsts, chan.size])) - (before - group_offset)
    finish = np.zeros(channels)
    finish[chan[firsts]] = np.maximum(np.maximum.reduceat(start + later, firsts), issued[lasts])
    return finish
