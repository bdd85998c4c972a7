"""Decode stretches: several identical decode-only iterations planned and recorded at once.

At deployment scale most iterations of a loaded replica are decode-only iterations of an unchanged
batch: the scheduler re-plans the same requests, each emits one token, their contexts grow by one.
The serving loop spends its time on that bookkeeping, not on anything that changes. When the
scheduler promises (:meth:`Scheduler.steady_until`) that its next plans repeat the current
decode-only iteration until a running request finishes (``"finish"``), or until that or a new
request arrives (``"arrival"``), the engine plans the following iterations in one go:

- **how many**: up to and including the first iteration in which a request emits its last
  token; only while the KV blocks the growing contexts need are free (a step that would run short
  is left to the ordinary path, which preempts); with ``"arrival"``, only iterations that start
  strictly before the next arrival.
- **what each costs**: the step-time cache looked up with the exact batch of each iteration
  (the same decodes, context sum + ``decodes`` per step) and the same host time, with the same
  floating-point operations as one iteration at a time, so start and end times are bit-identical.
- **what they record**: every iteration's start, duration, energy, KV blocks in use and tokens
  emitted, as one-at-a-time would; token times are written as one block.

So the record of a run is the same with and without stretches (``tests/test_serving_stretch.py``
holds them equal); only the number of Python-level steps drops. Times in s, energy in J.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from decodex.sim.serving.state import Iteration, ReplicaState
from decodex.sim.serving.step_times import StepTimes


@dataclass(slots=True)
class Stretch:
    """Decode-only iterations of one batch back to back: ``it`` (the first, as planned by the
    scheduler) and ``ends`` (each iteration's end time, s; the next one starts there)."""

    it: Iteration
    ends: list[float]

    @property
    def steps(self) -> int:
        """Iterations in the stretch."""
        return len(self.ends)


def kv_growth(state: ReplicaState, decodes: np.ndarray, steps: int) -> np.ndarray:
    """Cumulative KV blocks the ``decodes`` take beyond what they hold, before each of the next
    ``steps`` decode iterations (index 0: the iteration just planned, whose blocks are taken).

    Each request holds blocks for ``input + generated`` tokens; iteration ``j`` needs
    ``ceil((input + generated + j) / block_size)``. Its first extra block comes at
    ``j = held * block_size - tokens + 1``, then one every ``block_size`` iterations.
    """
    kv = state.kv
    size = kv.block_size
    tokens = state.input_tokens[decodes] + state.generated[decodes]
    first = kv.held[decodes] * size - tokens + 1
    first = first[first < steps]
    if not first.size:
        return np.zeros(steps, dtype=np.int64)
    padded = -(-steps // size) * size
    starts = np.bincount(first, minlength=padded)
    per_step = starts.reshape(-1, size).cumsum(axis=0).ravel()[:steps]  # requests growing at each step
    return np.cumsum(per_step)


def plan_stretch(state: ReplicaState, it: Iteration, mode: str, start_s: float, first_duration_s: float,
                 next_arrival_s: float, step_times: StepTimes, host_overhead_s: float, request_overhead_s: float,
                 host_power_w: float, records: tuple[list[float], list[float], list[int], list[int], list[int],
                                                     list[int], list[float]]) -> Stretch | None:
    """The stretch that follows ``it`` (decode-only, planned at ``start_s`` and lasting
    ``first_duration_s``), or None when it would hold one iteration.

    ``mode``: the scheduler's promise (module doc). ``next_arrival_s``: the next request's
    arrival (s; inf when none). ``records``: the engine's per-iteration lists (start, duration,
    decodes, prefills, prefill tokens, KV blocks, energy), extended with iterations 2.. of the
    stretch; the KV blocks of the whole stretch are taken.
    """
    decodes = it.decode_ids
    count = decodes.size
    left = state.output_tokens[decodes] - state.generated[decodes]
    most = int(left.min())  # the iteration that emits some request's last token ends the stretch
    if most < 2:
        return None
    need = kv_growth(state, decodes, most)
    kv = state.kv
    most = int(np.searchsorted(need, kv.free_blocks, side="right"))  # iterations whose growth fits
    if most < 2:
        return None
    horizon = next_arrival_s if mode == "arrival" else float("inf")
    starts, durations, decode_counts, prefills, prefill_tokens, kv_blocks, energies = records
    used = kv.used_blocks
    host = host_overhead_s + request_overhead_s * count
    context = it.decode_context
    ends = [start_s + first_duration_s]
    now = ends[0]
    lookup = step_times.lookup
    for step in range(1, most):
        if now >= horizon:
            break
        context += count
        duration, energy = lookup(count, context, 0, 0, 0)
        duration += host
        energy += host * host_power_w
        starts.append(now)
        durations.append(duration)
        decode_counts.append(count)
        prefills.append(0)
        prefill_tokens.append(0)
        kv_blocks.append(used + int(need[step]))
        energies.append(energy)
        now = now + duration
        ends.append(now)
    steps = len(ends)
    if steps < 2:
        return None
    tokens = state.input_tokens[decodes] + state.generated[decodes] + (steps - 1)
    held = np.maximum(kv.held[decodes], -(-tokens // kv.block_size))
    kv.held[decodes] = held
    kv.free_blocks -= int(need[steps - 1])
    return Stretch(it, ends)
