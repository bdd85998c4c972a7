"""Running a :class:`ServingEngine` with the compiled loop (:mod:`sim.serving.compiled_loop`).

:func:`run_compiled` copies the engine's state into arrays, runs the Numba loop, prices every
batch the loop asks for with the engine's :class:`StepTimes` (so the cache, its hits and misses
and the step model are the ones the Python loop uses), calls the watch between stretches of
events, and writes the record back into the engine: afterwards the engine reads exactly as if
:meth:`ServingEngine.run` had stepped it in Python. Only the four built-in schedulers run
compiled (:func:`compiled_kind`); a subclass or a registered scheduler of one's own runs in
Python.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from numba import types
from numba.typed import Dict

from decodex.sim.serving import compiled_loop as loop
from decodex.sim.serving.schedulers import ChunkedScheduler, ContinuousScheduler, InflightScheduler, StaticScheduler

if TYPE_CHECKING:
    from decodex.sim.serving.engine import ServingEngine

_KINDS = {StaticScheduler: loop.STATIC, ContinuousScheduler: loop.CONTINUOUS, ChunkedScheduler: loop.CHUNKED,
          InflightScheduler: loop.INFLIGHT}
_KEY = types.UniTuple(types.int64, 5)
_VALUE = types.UniTuple(types.float64, 2)
WATCH_EVENTS = 4096  # events between two calls of the watch (as the Python loop; ~3 ms of compiled loop)
FIRST_RECORDS = 4096  # iterations the record arrays hold at first (doubled when full)


def compiled_kind(engine: ServingEngine) -> int | None:
    """The compiled loop's scheduler kind for the engine's scheduler, None when it must run in
    Python (not one of the built-in classes exactly)."""
    return _KINDS.get(type(engine.scheduler))


def run_compiled(engine: ServingEngine, watch: Callable[[ServingEngine], None] | None = None) -> None:
    """Run ``engine`` (fresh, nothing processed) to the end with the compiled loop; ``watch``
    is called with the engine (its ``finished`` and iteration count current) every
    :data:`WATCH_EVENTS` events. Raises RuntimeError when the loop stalls, as ``run`` does."""
    kind = compiled_kind(engine)
    assert kind is not None
    state, kv, sched, steps = engine.state, engine.state.kv, engine.scheduler, engine.step_times
    n = engine.arrival_s.size
    req = np.zeros((8, n), dtype=np.int64)
    req[loop.INPUT], req[loop.OUTPUT] = state.input_tokens, state.output_tokens
    req[loop.GENERATED], req[loop.PROMPT], req[loop.PREFILLED] = state.generated, state.prompt_tokens, state.prefilled
    req[loop.PREEMPTED], req[loop.HELD], req[loop.ALIVE] = state.preemptions, kv.held, state.alive
    times = np.full((3, n), np.nan)
    si = np.zeros(loop.SI_SIZE, dtype=np.int64)
    sf = np.zeros(loop.SF_SIZE)
    si[[loop.S_N, loop.S_KIND, loop.S_MAX_BATCH, loop.S_CHUNK, loop.S_MAX_PREFILL, loop.S_BLOCK, loop.S_RESERVE,
        loop.S_FREE, loop.S_TOTAL_BLOCKS]] = (n, kind, sched.max_batch, sched.chunk, sched.max_prefill_tokens,
                                              kv.block_size, int(state.reserve_output), kv.free_blocks,
                                              kv.total_blocks)
    waiting = np.zeros(2 * n + 1, dtype=np.int64)  # a queue that preemption pushes in front of: start mid-way
    si[loop.S_WAIT_HEAD] = si[loop.S_WAIT_TAIL] = n
    running = np.zeros(max(n, 1), dtype=np.int64)
    if n:
        si[[loop.S_ARR_VALID, loop.S_ARR_NEXT, loop.S_ARR_SEQ, loop.S_SEQ]] = (1, 0, 1, 2)
        sf[loop.F_ARR_TIME] = float(engine.arrival_s[0])
    sf[[loop.F_HOST, loop.F_PER_REQUEST, loop.F_HOST_POWER, loop.F_LOG_STEP]] = (
        engine.host_overhead_s, engine.request_overhead_s, engine.host_power_w, steps._log_step)
    fl_dec = np.zeros(max(n, 1), dtype=np.int64)
    fl_pre = np.zeros((3, max(n, 1)), dtype=np.int64)
    scratch = np.zeros(max(n, 1), dtype=np.int64)
    table = Dict.empty(key_type=_KEY, value_type=_VALUE)
    for key, value in steps._cache.items():  # a shared cache: what earlier runs priced
        table[key] = value
    key_out = np.zeros(5, dtype=np.int64)
    rec_f = np.zeros((3, FIRST_RECORDS))
    rec_i = np.zeros((5, FIRST_RECORDS), dtype=np.int64)
    misses = 0
    arrival = np.ascontiguousarray(engine.arrival_s, dtype=np.float64)
    while True:
        code = loop.run_loop(arrival, req, times, si, sf, running, waiting, fl_dec, fl_pre, scratch,
                             engine.token_time_s, engine.token_offsets, table, key_out, rec_f, rec_i, WATCH_EVENTS)
        if code == loop.NEED_PRICE:
            key = (int(key_out[0]), int(key_out[1]), int(key_out[2]), int(key_out[3]), int(key_out[4]))
            table[key] = steps.price_key(key)
            misses += 1
        elif code == loop.NEED_ROOM:
            rec_f = np.concatenate([rec_f, np.zeros_like(rec_f)], axis=1)
            rec_i = np.concatenate([rec_i, np.zeros_like(rec_i)], axis=1)
        elif code == loop.WATCH:
            if watch is not None:
                engine.finished = int(si[loop.S_FINISHED])
                engine.iteration_count = int(si[loop.S_RECORDS])
                watch(engine)
        else:
            break
    steps.hits += int(si[loop.S_HITS]) - misses  # a priced miss is looked up once more on re-entry
    _write_back(engine, req, times, si, rec_f, rec_i, running, waiting)
    if engine.finished != n:
        raise RuntimeError(f"serving loop stalled: {engine.finished} of {n} requests finished")


def _write_back(engine: ServingEngine, req: np.ndarray, times: np.ndarray, si: np.ndarray, rec_f: np.ndarray,
                rec_i: np.ndarray, running: np.ndarray, waiting: np.ndarray) -> None:
    """Put the loop's state and record into the engine's own fields."""
    state = engine.state
    state.generated[:], state.prompt_tokens[:], state.prefilled[:] = (req[loop.GENERATED], req[loop.PROMPT],
                                                                      req[loop.PREFILLED])
    state.preemptions[:], state.kv.held[:] = req[loop.PREEMPTED], req[loop.HELD]
    state.alive[:] = req[loop.ALIVE].astype(bool)
    state.kv.free_blocks = int(si[loop.S_FREE])
    state.running = running[:si[loop.S_RUNNING]].copy()
    state.waiting = deque(waiting[si[loop.S_WAIT_HEAD]:si[loop.S_WAIT_TAIL]].tolist())
    engine.scheduled_s[:], engine.first_token_s[:], engine.finish_s[:] = times
    engine.finished = int(si[loop.S_FINISHED])
    engine.busy = bool(si[loop.S_BUSY])
    count = int(si[loop.S_RECORDS])
    engine.iteration_count = count
    engine.it_start, engine.it_duration, engine.it_energy = (rec_f[row, :count].copy() for row in range(3))
    engine.it_decodes, engine.it_prefills, engine.it_prefill_tokens, engine.it_kv_blocks = (
        rec_i[row, :count].copy() for row in range(4))
    engine.it_output_tokens = rec_i[4, :count - int(si[loop.S_IT_VALID])].copy()  # in flight: nothing emitted yet
