"""The serving loop of one replica compiled with Numba: the same events, schedulers, KV blocks
and records as :class:`sim.serving.engine.ServingEngine`, operation for operation.

The module is longer than 400 lines because it does one job: the loop and the four built-in
schedulers must be compiled together, and each function mirrors one of the Python engine's.

State lives in arrays so the loop can stop and resume: it returns to Python when a batch's step
time is not in the table yet (:data:`NEED_PRICE`: the key is in ``key_out``; the iteration stays
planned and is priced on re-entry), when its record arrays are full (:data:`NEED_ROOM`), every
``watch_events`` events (:data:`WATCH`) and when every request has finished (:data:`DONE`).

Rows of ``req`` (int64, per request): :data:`INPUT`, :data:`OUTPUT`, :data:`GENERATED`,
:data:`PROMPT`, :data:`PREFILLED`, :data:`PREEMPTED`, :data:`HELD` (KV blocks), :data:`ALIVE`.
Rows of ``times`` (float64, per request): :data:`SCHEDULED`, :data:`FIRST`, :data:`FINISH` (s).
Scalars: ``si`` (int64, indices ``S_*``) and ``sf`` (float64, indices ``F_*``). Records: ``rec_f``
(start s, duration s, energy J) and ``rec_i`` (decodes, prefills, prefill tokens, KV blocks
used, tokens emitted) per iteration. Times in seconds, energy in joules.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

INPUT, OUTPUT, GENERATED, PROMPT, PREFILLED, PREEMPTED, HELD, ALIVE = range(8)
SCHEDULED, FIRST, FINISH = range(3)
STATIC, CONTINUOUS, CHUNKED, INFLIGHT = range(4)
SCHEDULER_KINDS = {"static": STATIC, "continuous": CONTINUOUS, "chunked": CHUNKED, "inflight": INFLIGHT}
DONE, NEED_PRICE, NEED_ROOM, WATCH = range(4)

# int64 scalars
(S_N, S_KIND, S_MAX_BATCH, S_CHUNK, S_MAX_PREFILL, S_BLOCK, S_RESERVE, S_FREE, S_TOTAL_BLOCKS, S_WAIT_HEAD,
 S_WAIT_TAIL, S_RUNNING, S_BUSY, S_ARR_VALID, S_ARR_SEQ, S_ARR_NEXT, S_IT_VALID, S_IT_SEQ, S_SEQ, S_PENDING,
 S_FL_DEC, S_FL_PRE, S_FL_CONTEXT, S_RECORDS, S_FINISHED, S_HITS, S_EVENTS, S_LAST_WATCH) = range(28)
SI_SIZE = 28
# float64 scalars
F_NOW, F_ARR_TIME, F_IT_TIME, F_HOST, F_PER_REQUEST, F_HOST_POWER, F_LOG_STEP = range(7)
SF_SIZE = 7


@njit(cache=True)
def _blocks_for(tokens: int, size: int) -> int:
    return -(-tokens // size)


@njit(cache=True)
def _bucket(tokens: int, log_step: float) -> int:
    if tokens <= 0:
        return -1
    if log_step == 0.0:
        return tokens
    return int(np.rint(math.log(tokens) / log_step))


@njit(cache=True)
def _admission_tokens(req: np.ndarray, si: np.ndarray, r: int) -> int:
    if si[S_RESERVE]:
        return req[INPUT, r] + req[OUTPUT, r]
    return req[INPUT, r] + req[GENERATED, r]


@njit(cache=True)
def _can_admit(req: np.ndarray, si: np.ndarray, r: int) -> bool:
    return _blocks_for(_admission_tokens(req, si, r), si[S_BLOCK]) <= si[S_FREE]


@njit(cache=True)
def _admit(req: np.ndarray, si: np.ndarray, running: np.ndarray, r: int) -> int:
    prompt = req[INPUT, r] + req[GENERATED, r]
    blocks = _blocks_for(_admission_tokens(req, si, r), si[S_BLOCK])
    req[HELD, r] = blocks
    si[S_FREE] -= blocks
    req[PROMPT, r] = prompt
    req[PREFILLED, r] = 0
    req[ALIVE, r] = 1
    running[si[S_RUNNING]] = r
    si[S_RUNNING] += 1
    return prompt


@njit(cache=True)
def _pop_waiting(waiting: np.ndarray, si: np.ndarray) -> int:
    r = waiting[si[S_WAIT_HEAD]]
    si[S_WAIT_HEAD] += 1
    return r


@njit(cache=True)
def _preempt(req: np.ndarray, si: np.ndarray, running: np.ndarray, waiting: np.ndarray, r: int) -> None:
    si[S_FREE] += req[HELD, r]
    req[HELD, r] = 0
    req[PREFILLED, r] = 0
    req[ALIVE, r] = 0
    req[PREEMPTED, r] += 1
    kept = 0
    for i in range(si[S_RUNNING]):
        if running[i] != r:
            running[kept] = running[i]
            kept += 1
    si[S_RUNNING] = kept
    si[S_WAIT_HEAD] -= 1
    waiting[si[S_WAIT_HEAD]] = r


@njit(cache=True)
def _decoding_into(req: np.ndarray, si: np.ndarray, running: np.ndarray, out: np.ndarray) -> int:
    count = 0
    for i in range(si[S_RUNNING]):
        r = running[i]
        if req[PREFILLED, r] == req[PROMPT, r]:
            out[count] = r
            count += 1
    return count


@njit(cache=True)
def _reserve_decodes(req: np.ndarray, si: np.ndarray, running: np.ndarray, waiting: np.ndarray,
                     dec: np.ndarray, count: int) -> tuple[int, int]:
    """ReplicaState.reserve_decodes on ``dec[:count]`` in place: (decodes kept, context sum)."""
    size = si[S_BLOCK]
    while count > 0:
        total = 0
        tokens_sum = 0
        for i in range(count):
            r = dec[i]
            tokens = req[INPUT, r] + req[GENERATED, r]
            tokens_sum += tokens
            need = _blocks_for(tokens, size) - req[HELD, r]
            if need > 0:
                total += need
        if total <= si[S_FREE]:
            if total:
                for i in range(count):
                    r = dec[i]
                    need = _blocks_for(req[INPUT, r] + req[GENERATED, r], size) - req[HELD, r]
                    if need > 0:
                        req[HELD, r] += need
                si[S_FREE] -= total
            return count, tokens_sum - count
        victim = running[si[S_RUNNING] - 1]
        _preempt(req, si, running, waiting, victim)
        kept = 0
        for i in range(count):
            if dec[i] != victim:
                dec[kept] = dec[i]
                kept += 1
        count = kept
    return 0, 0


@njit(cache=True)
def _admit_prompts(req: np.ndarray, si: np.ndarray, running: np.ndarray, waiting: np.ndarray, ids: np.ndarray,
                   token_cap: int) -> int:
    """Scheduler._admit_prompts into ``ids``; ``token_cap`` < 0: no cap. Returns how many."""
    admitted = 0
    tokens = 0
    room = si[S_MAX_BATCH] - si[S_RUNNING]
    while si[S_WAIT_TAIL] > si[S_WAIT_HEAD] and admitted < room:
        r = waiting[si[S_WAIT_HEAD]]
        prompt = req[INPUT, r] + req[GENERATED, r]
        if token_cap >= 0 and tokens + prompt > token_cap and admitted:
            break
        if not _can_admit(req, si, r):
            break
        _pop_waiting(waiting, si)
        _admit(req, si, running, r)
        ids[admitted] = r
        admitted += 1
        tokens += prompt
    return admitted


@njit(cache=True)
def _prefill_whole(req: np.ndarray, si: np.ndarray, fl_pre: np.ndarray, admitted: int) -> None:
    for i in range(admitted):
        r = fl_pre[0, i]
        fl_pre[1, i] = req[PROMPT, r]
        fl_pre[2, i] = 0
    si[S_FL_DEC] = 0
    si[S_FL_PRE] = admitted
    si[S_FL_CONTEXT] = 0


@njit(cache=True)
def _decode_running(req: np.ndarray, si: np.ndarray, running: np.ndarray, waiting: np.ndarray,
                    fl_dec: np.ndarray) -> bool:
    """A decode of every running request into the flight buffers (reserving their blocks,
    preempting when short); False when none is left to decode."""
    count = si[S_RUNNING]
    fl_dec[:count] = running[:count]
    count, context = _reserve_decodes(req, si, running, waiting, fl_dec, count)
    if not count:
        return False
    si[S_FL_DEC] = count
    si[S_FL_CONTEXT] = context
    return True


@njit(cache=True)
def _plan(req: np.ndarray, si: np.ndarray, running: np.ndarray, waiting: np.ndarray, fl_dec: np.ndarray,
          fl_pre: np.ndarray, scratch: np.ndarray) -> bool:
    """The scheduler's next_batch into the flight buffers; False when there is nothing to run."""
    kind = si[S_KIND]
    si[S_FL_DEC] = 0
    si[S_FL_PRE] = 0
    si[S_FL_CONTEXT] = 0
    if kind == STATIC:
        if si[S_RUNNING] and _decode_running(req, si, running, waiting, fl_dec):
            return True
        admitted = _admit_prompts(req, si, running, waiting, fl_pre[0], -1)
        if admitted:
            _prefill_whole(req, si, fl_pre, admitted)
            return True
        return False
    if kind == CONTINUOUS:
        for _ in range(2):
            admitted = _admit_prompts(req, si, running, waiting, fl_pre[0], si[S_MAX_PREFILL])
            if admitted:
                _prefill_whole(req, si, fl_pre, admitted)
                return True
            if not si[S_RUNNING]:
                return False
            if _decode_running(req, si, running, waiting, fl_dec):
                return True
        return False
    # chunked and inflight: every decode first
    count = _decoding_into(req, si, running, fl_dec)
    count, context = _reserve_decodes(req, si, running, waiting, fl_dec, count)
    budget = si[S_CHUNK] - count
    ids = 0
    if kind == CHUNKED:
        if budget > 0:
            prefilling = 0
            for i in range(si[S_RUNNING]):  # ReplicaState.prefilling(), after the reservation
                r = running[i]
                if req[PREFILLED, r] < req[PROMPT, r]:
                    scratch[prefilling] = r
                    prefilling += 1
            for i in range(prefilling):
                r = scratch[i]
                left = req[PROMPT, r] - req[PREFILLED, r]
                take = min(left, budget)
                fl_pre[0, ids] = r
                fl_pre[1, ids] = take
                fl_pre[2, ids] = req[PREFILLED, r]
                ids += 1
                budget -= take
                if budget <= 0:
                    break
        while budget > 0 and si[S_WAIT_TAIL] > si[S_WAIT_HEAD] and si[S_RUNNING] < si[S_MAX_BATCH]:
            r = waiting[si[S_WAIT_HEAD]]
            prompt = req[INPUT, r] + req[GENERATED, r]
            if not _can_admit(req, si, r):
                break
            _pop_waiting(waiting, si)
            _admit(req, si, running, r)
            take = min(prompt, budget)
            fl_pre[0, ids] = r
            fl_pre[1, ids] = take
            fl_pre[2, ids] = 0
            ids += 1
            budget -= take
    else:  # INFLIGHT
        while si[S_WAIT_TAIL] > si[S_WAIT_HEAD] and si[S_RUNNING] < si[S_MAX_BATCH]:
            r = waiting[si[S_WAIT_HEAD]]
            prompt = req[INPUT, r] + req[GENERATED, r]
            if (ids and prompt > budget) or not _can_admit(req, si, r):
                break
            _pop_waiting(waiting, si)
            _admit(req, si, running, r)
            fl_pre[0, ids] = r
            fl_pre[1, ids] = req[PROMPT, r]
            fl_pre[2, ids] = 0
            ids += 1
            budget -= prompt
    if not ids and not count:
        return False
    si[S_FL_DEC] = count
    si[S_FL_CONTEXT] = context if count else 0
    si[S_FL_PRE] = ids
    return True


@njit(cache=True)
def _complete(req: np.ndarray, times: np.ndarray, si: np.ndarray, sf: np.ndarray, running: np.ndarray,
              fl_dec: np.ndarray, fl_pre: np.ndarray, token_time: np.ndarray, offsets: np.ndarray,
              rec_i: np.ndarray, record: int) -> None:
    """ServingEngine._complete of the flight iteration at ``sf[F_NOW]``."""
    now = sf[F_NOW]
    emitted = 0
    finished_any = False
    for i in range(si[S_FL_DEC]):
        r = fl_dec[i]
        count = req[GENERATED, r] + 1
        req[GENERATED, r] = count
        token_time[offsets[r] + count - 1] = now
        emitted += 1
        if count == req[OUTPUT, r]:
            _finish_one(req, times, si, r, now)
            finished_any = True
    for i in range(si[S_FL_PRE]):
        r = fl_pre[0, i]
        req[PREFILLED, r] += fl_pre[1, i]
    for i in range(si[S_FL_PRE]):
        r = fl_pre[0, i]
        if req[PREFILLED, r] == req[PROMPT, r]:
            before = req[GENERATED, r]
            if before == 0:
                times[FIRST, r] = now
            req[GENERATED, r] = before + 1
            token_time[offsets[r] + before] = now
            emitted += 1
            if before + 1 == req[OUTPUT, r]:
                _finish_one(req, times, si, r, now)
                finished_any = True
    rec_i[4, record] = emitted
    if finished_any:
        kept = 0
        for i in range(si[S_RUNNING]):
            if req[ALIVE, running[i]]:
                running[kept] = running[i]
                kept += 1
        si[S_RUNNING] = kept


@njit(cache=True)
def _finish_one(req: np.ndarray, times: np.ndarray, si: np.ndarray, r: int, now: float) -> None:
    times[FINISH, r] = now
    si[S_FINISHED] += 1
    si[S_FREE] += req[HELD, r]
    req[HELD, r] = 0
    req[ALIVE, r] = 0


@njit(cache=True)
def _price_flight(si: np.ndarray, sf: np.ndarray, fl_pre: np.ndarray, table: dict, key_out: np.ndarray,
                  rec_f: np.ndarray, rec_i: np.ndarray) -> int:
    """Look the flight iteration up, record it and make its end event (as _start_iteration);
    NEED_PRICE (key in ``key_out``) or NEED_ROOM when it cannot yet."""
    now = sf[F_NOW]
    pre = si[S_FL_PRE]
    prefill_tokens = 0
    prefill_context = 0
    for i in range(pre):
        prefill_tokens += fl_pre[1, i]
        prefill_context += fl_pre[2, i]
    decodes = si[S_FL_DEC]
    key = (decodes, pre, prefill_tokens, _bucket(si[S_FL_CONTEXT], sf[F_LOG_STEP]),
           _bucket(prefill_context, sf[F_LOG_STEP]))
    if key not in table:
        for i in range(5):
            key_out[i] = key[i]
        return NEED_PRICE
    record = si[S_RECORDS]
    if record >= rec_f.shape[1]:
        return NEED_ROOM
    duration, energy = table[key]
    si[S_HITS] += 1
    host = sf[F_HOST] + sf[F_PER_REQUEST] * (decodes + pre)
    duration += host
    energy += host * sf[F_HOST_POWER]
    rec_f[0, record] = now
    rec_f[1, record] = duration
    rec_f[2, record] = energy
    rec_i[0, record] = decodes
    rec_i[1, record] = pre
    rec_i[2, record] = prefill_tokens
    rec_i[3, record] = si[S_TOTAL_BLOCKS] - si[S_FREE]
    si[S_RECORDS] = record + 1
    si[S_BUSY] = 1
    si[S_PENDING] = 0
    si[S_IT_VALID] = 1
    si[S_IT_SEQ] = si[S_SEQ]
    si[S_SEQ] += 1
    sf[F_IT_TIME] = now + duration
    return DONE


@njit(cache=True)
def _start(req: np.ndarray, times: np.ndarray, si: np.ndarray, sf: np.ndarray, running: np.ndarray,
           waiting: np.ndarray, fl_dec: np.ndarray, fl_pre: np.ndarray, scratch: np.ndarray, table: dict,
           key_out: np.ndarray, rec_f: np.ndarray, rec_i: np.ndarray) -> int:
    """ServingEngine._start_iteration: plan (when idle and there is work) and price."""
    if si[S_WAIT_TAIL] == si[S_WAIT_HEAD] and si[S_RUNNING] == 0:
        return DONE
    if not _plan(req, si, running, waiting, fl_dec, fl_pre, scratch):
        return DONE
    si[S_PENDING] = 1
    pre = si[S_FL_PRE]
    for i in range(pre):  # scheduled at planning (a later re-entry keeps the time)
        r = fl_pre[0, i]
        if np.isnan(times[SCHEDULED, r]):
            times[SCHEDULED, r] = sf[F_NOW]
    return _price_flight(si, sf, fl_pre, table, key_out, rec_f, rec_i)


@njit(cache=True)
def run_loop(arrival: np.ndarray, req: np.ndarray, times: np.ndarray, si: np.ndarray, sf: np.ndarray,
             running: np.ndarray, waiting: np.ndarray, fl_dec: np.ndarray, fl_pre: np.ndarray,
             scratch: np.ndarray, token_time: np.ndarray, offsets: np.ndarray, table: dict, key_out: np.ndarray,
             rec_f: np.ndarray, rec_i: np.ndarray, watch_events: int) -> int:
    """Run (or resume) the event loop; returns DONE, NEED_PRICE, NEED_ROOM or WATCH (module doc)."""
    n = si[S_N]
    if si[S_PENDING]:  # an iteration planned before a return: price it now
        code = _price_flight(si, sf, fl_pre, table, key_out, rec_f, rec_i)
        if code != DONE:
            return code
    while si[S_ARR_VALID] or si[S_IT_VALID]:
        take_arrival = si[S_ARR_VALID] and (not si[S_IT_VALID] or sf[F_ARR_TIME] < sf[F_IT_TIME] or (
            sf[F_ARR_TIME] == sf[F_IT_TIME] and si[S_ARR_SEQ] < si[S_IT_SEQ]))
        if take_arrival:
            sf[F_NOW] = sf[F_ARR_TIME]
            r = si[S_ARR_NEXT]
            waiting[si[S_WAIT_TAIL]] = r
            si[S_WAIT_TAIL] += 1
            simultaneous = False
            if r + 1 < n:
                following = arrival[r + 1]
                simultaneous = following <= sf[F_NOW]
                si[S_ARR_NEXT] = r + 1
                sf[F_ARR_TIME] = following
                si[S_ARR_SEQ] = si[S_SEQ]
                si[S_SEQ] += 1
            else:
                si[S_ARR_VALID] = 0
            si[S_EVENTS] += 1
            if not si[S_BUSY] and not simultaneous:
                code = _start(req, times, si, sf, running, waiting, fl_dec, fl_pre, scratch, table, key_out, rec_f,
                              rec_i)
                if code != DONE:
                    return code
        else:
            sf[F_NOW] = sf[F_IT_TIME]
            si[S_IT_VALID] = 0
            _complete(req, times, si, sf, running, fl_dec, fl_pre, token_time, offsets, rec_i, si[S_RECORDS] - 1)
            si[S_BUSY] = 0
            si[S_EVENTS] += 1
            code = _start(req, times, si, sf, running, waiting, fl_dec, fl_pre, scratch, table, key_out, rec_f,
                          rec_i)
            if code != DONE:
                return code
        if si[S_EVENTS] - si[S_LAST_WATCH] >= watch_events:
            si[S_LAST_WATCH] = si[S_EVENTS]
            return WATCH
    return DONE
