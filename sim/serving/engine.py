"""The serving loop of one replica: a small heap-driven discrete-event simulation (Vidur style).

Events are request arrivals and iteration completions, ordered by time (then by creation).
Each handler returns its follow-up events: an arrival returns the next arrival; whenever the
replica is idle and has work, the scheduler plans an iteration, its latency comes from
:class:`StepTimes`, and an iteration-completion event is returned for ``now + latency``.
Completing an iteration emits its tokens (stamped with the completion time), finishes requests
and frees their KV blocks. With ``fast_forward``, a decode-only iteration that the scheduler
promises to repeat is planned with the iterations that repeat it as one :class:`Stretch`
(:mod:`sim.serving.stretch`; the record is the same). Time is in seconds.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np

from decodex.sim.serving.schedulers import Scheduler
from decodex.sim.serving.state import Iteration, ReplicaState
from decodex.sim.serving.step_times import StepTimes
from decodex.sim.serving.stretch import Stretch, plan_stretch

if TYPE_CHECKING:
    from decodex.sim.serving.speculation import AcceptanceDraws

ARRIVAL = 0
ITERATION_END = 1
STRETCH_LAST = 2  # a stretch's last iteration starts: its end event is made then, as one-at-a-time would
Event = tuple[float, int, int, object]
WATCH_EVENTS = 4096  # events between two calls of run()'s watch (~10 ms of simulation at ~2.5 us per event)


class ServingEngine:
    """Runs requests (``arrival_s``, ``input_tokens``, ``output_tokens``) through one replica.

    ``host_overhead_s`` + ``request_overhead_s`` x requests: the serving software's host time of an
    iteration (s), added to its device time; the devices idle meanwhile at ``host_power_w`` (W, the replica's idle
    power), charged to the iteration's energy.

    After :meth:`run`, per-request times (``scheduled_s``: start of the first iteration that
    prefilled it, ``first_token_s``, ``finish_s``, ``token_time_s`` with ``token_offsets``) and
    per-iteration lists (``it_*``) hold the record.

    ``sequence``: the counter that orders events of equal time (default: the engine's own); a
    cluster of replicas (:mod:`sim.serving.cluster`) gives all of them one, so that one heap
    orders every replica's events, and drives them with :meth:`enqueue`, :meth:`start` and
    :meth:`end_iteration` instead of :meth:`run`.

    ``fast_forward``: plan decode stretches (module doc) in :meth:`run`; a replica driven from
    outside keeps it off, since a router reads its state between iterations. ``compiled``:
    :meth:`run` runs the compiled loop (:mod:`sim.serving.compiled_engine`; the same record)
    when the scheduler is a built-in one, this loop otherwise.

    ``speculation``: the accepted-token draws of speculative decoding
    (:mod:`sim.serving.speculation`): each decode then emits ``1 + accepted`` tokens, stamped at
    the iteration's end; such a run goes iteration by iteration (no stretches, no compiled loop).
    """

    def __init__(self, arrival_s: np.ndarray, state: ReplicaState, scheduler: Scheduler,
                 step_times: StepTimes, *, host_overhead_s: float = 0.0, request_overhead_s: float = 0.0,
                 host_power_w: float = 0.0, sequence: Iterator[int] | None = None,
                 fast_forward: bool = False, compiled: bool = False,
                 speculation: AcceptanceDraws | None = None) -> None:
        self.arrival_s = arrival_s
        self.host_overhead_s = float(host_overhead_s)
        self.request_overhead_s = float(request_overhead_s)
        self.host_power_w = float(host_power_w)
        self.state = state
        self.scheduler = scheduler
        self.step_times = step_times
        n = arrival_s.size
        self.now = 0.0
        self.busy = False
        self._sequence = itertools.count(1) if sequence is None else sequence
        self.scheduled_s = np.full(n, np.nan)
        self.first_token_s = np.full(n, np.nan)
        self.finish_s = np.full(n, np.nan)
        self.token_offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(state.output_tokens, out=self.token_offsets[1:])
        self.token_time_s = np.full(int(self.token_offsets[-1]), np.nan)
        self.finished = 0
        self.speculation = speculation
        self.fast_forward = bool(fast_forward) and speculation is None
        self.compiled = bool(compiled) and speculation is None
        self.iteration_count: int | None = None  # set by the compiled loop; else len(it_start)
        self.arrived = 0  # arrival events handled by run()
        self.stretches = 0  # decode stretches planned (each counts its iterations in it_*)
        self.stretched = 0  # iterations planned in stretches beyond their first (events saved)
        self.it_start: list[float] = []
        self.it_duration: list[float] = []
        self.it_decodes: list[int] = []
        self.it_prefills: list[int] = []
        self.it_prefill_tokens: list[int] = []
        self.it_output_tokens: list[int] = []
        self.it_kv_blocks: list[int] = []
        self.it_energy: list[float] = []
        self._handlers: dict[int, Callable[[object], list[Event]]] = {
            ARRIVAL: self._on_arrival, ITERATION_END: self._on_iteration_end, STRETCH_LAST: self._on_stretch_last}
        self._records = (self.it_start, self.it_duration, self.it_decodes, self.it_prefills, self.it_prefill_tokens,
                         self.it_kv_blocks, self.it_energy)

    def _event(self, time: float, kind: int, payload: object) -> Event:
        return (time, next(self._sequence), kind, payload)

    def run(self, watch: Callable[[ServingEngine], None] | None = None) -> None:
        """Process events until every request has finished. ``watch`` (progress, time and memory
        limits) is called with the engine every WATCH_EVENTS events (an iteration of a stretch
        counts as the event it saves); whatever it raises ends the run."""
        if self.compiled:
            from decodex.sim.serving.compiled_engine import compiled_kind, run_compiled  # numba loads on use

            if compiled_kind(self) is not None:
                run_compiled(self, watch)
                return
        heap: list[Event] = [self._event(float(self.arrival_s[0]), ARRIVAL, 0)] if self.arrival_s.size else []
        handlers = self._handlers
        pop, push = heapq.heappop, heapq.heappush
        events = 0
        next_watch = WATCH_EVENTS
        while heap:
            time, _, kind, payload = pop(heap)
            self.now = time
            for event in handlers[kind](payload):
                push(heap, event)
            events += 1
            if watch is not None and events + self.stretched >= next_watch:
                next_watch = events + self.stretched + WATCH_EVENTS
                watch(self)
        if self.finished != self.arrival_s.size:
            raise RuntimeError(f"serving loop stalled: {self.finished} of {self.arrival_s.size} requests finished")

    @property
    def iterations_done(self) -> int:
        """Iterations planned so far (the record's length)."""
        return len(self.it_start) if self.iteration_count is None else self.iteration_count

    # stepping from outside (a cluster's global clock) -------------------------------------
    def enqueue(self, request: int) -> None:
        """Put ``request``, arrived now, at the back of the waiting queue (starts nothing)."""
        self.state.waiting.append(request)

    def start(self, now: float) -> list[Event]:
        """At ``now`` (s): when idle, plan and start the next iteration; returns its completion
        event (none when busy or nothing can run)."""
        self.now = now
        return [] if self.busy else self._start_iteration()

    def end_iteration(self, now: float, it: Iteration) -> list[Event]:
        """At ``now`` (s): complete ``it`` (the payload of its completion event) and start the
        next iteration; returns that iteration's completion event, if any."""
        self.now = now
        return self._on_iteration_end(it)

    # handlers ------------------------------------------------------------------------------
    def _on_arrival(self, payload: object) -> list[Event]:
        request = int(payload)  # type: ignore[call-overload]
        self.state.waiting.append(request)
        self.arrived = request + 1
        events = []
        simultaneous = False
        if request + 1 < self.arrival_s.size:
            following = float(self.arrival_s[request + 1])
            simultaneous = following <= self.now  # the scheduler sees every request of one instant
            events.append(self._event(following, ARRIVAL, request + 1))
        if not self.busy and not simultaneous:
            events += self._start_iteration()
        return events

    def _on_iteration_end(self, payload: object) -> list[Event]:
        if isinstance(payload, Stretch):
            self._complete_stretch(payload)
        else:
            assert isinstance(payload, Iteration)
            self._complete(payload)
        self.busy = False
        return self._start_iteration()

    def _on_stretch_last(self, payload: object) -> list[Event]:
        assert isinstance(payload, Stretch)
        return [self._event(payload.ends[-1], ITERATION_END, payload)]

    # iterations ----------------------------------------------------------------------------
    def _start_iteration(self) -> list[Event]:
        state = self.state
        if not state.waiting and not state.running.size:
            return []
        it = self.scheduler.next_batch(self.now, state)
        if it is None:
            return []
        pre = it.prefill_chunks
        if pre.size:
            fresh = it.prefill_ids[np.isnan(self.scheduled_s[it.prefill_ids])]
            self.scheduled_s[fresh] = self.now
        prefill_tokens = int(pre.sum()) if pre.size else 0
        prefill_context = int(it.prefill_done.sum()) if pre.size else 0
        if self.speculation is not None:  # the decodes' drafted tokens in the key too
            duration, energy = self.step_times.lookup_drafted(  # type: ignore[attr-defined]
                self.speculation.drafted_for(it.decode_ids), it.decode_ids.size, it.decode_context, pre.size,
                prefill_tokens, prefill_context)
        else:
            duration, energy = self.step_times.lookup(it.decode_ids.size, it.decode_context, pre.size,
                                                      prefill_tokens, prefill_context)
        host = self.host_overhead_s + self.request_overhead_s * (it.decode_ids.size + pre.size)
        duration += host
        energy += host * self.host_power_w
        self.it_start.append(self.now)
        self.it_duration.append(duration)
        self.it_decodes.append(it.decode_ids.size)
        self.it_prefills.append(pre.size)
        self.it_prefill_tokens.append(prefill_tokens)
        self.it_kv_blocks.append(state.kv.used_blocks)
        self.it_energy.append(energy)
        self.busy = True
        if self.fast_forward and not pre.size and it.decode_ids.size:
            mode = self.scheduler.steady_until(state, it)
            if mode:
                following = float(self.arrival_s[self.arrived]) if self.arrived < self.arrival_s.size else np.inf
                stretch = plan_stretch(state, it, mode, self.now, duration, following, self.step_times,
                                       self.host_overhead_s, self.request_overhead_s, self.host_power_w,
                                       self._records)
                if stretch is not None:
                    self.stretches += 1
                    self.stretched += stretch.steps - 1
                    return [self._event(stretch.ends[-2], STRETCH_LAST, stretch)]
        return [self._event(self.now + duration, ITERATION_END, it)]

    def _complete_stretch(self, stretch: Stretch) -> None:
        """Emit the tokens of every iteration of ``stretch`` (each at its end time); finish the
        requests that produced their last in its last iteration."""
        state = self.state
        dec = stretch.it.decode_ids
        steps = stretch.steps
        first = state.generated[dec]
        slots = (self.token_offsets[dec] + first)[:, None] + np.arange(steps)
        self.token_time_s[slots] = np.asarray(stretch.ends)
        count = first + steps
        state.generated[dec] = count
        self.it_output_tokens.extend([dec.size] * steps)
        done = dec[count == state.output_tokens[dec]]
        if done.size:
            self._finish(done)

    def _finish(self, ids: np.ndarray) -> None:
        """Requests ``ids`` emitted their last token now: stamp them, free their KV blocks."""
        state = self.state
        self.finish_s[ids] = self.now
        self.finished += ids.size
        state.kv.free(ids)
        state.alive[ids] = False
        state.running = state.running[state.alive[state.running]]

    def _complete(self, it: Iteration) -> None:
        """Emit the iteration's tokens at ``now``; finish requests that produced their last."""
        state = self.state
        now = self.now
        generated, outputs = state.generated, state.output_tokens
        emitted = 0
        finished = []
        dec = it.decode_ids
        if dec.size and self.speculation is not None:
            before = generated[dec]
            emit = self.speculation.emitted(dec, outputs[dec] - before)
            count = before + emit
            generated[dec] = count
            total = int(emit.sum())
            starts = np.cumsum(emit) - emit  # each request's first slot among the emitted tokens
            slots = np.repeat(self.token_offsets[dec] + before - starts, emit) + np.arange(total)
            self.token_time_s[slots] = now
            emitted += total
            done = count == outputs[dec]
            if done.any():
                finished.append(dec[done])
        elif dec.size:
            count = generated[dec] + 1
            generated[dec] = count
            self.token_time_s[self.token_offsets[dec] + count - 1] = now
            emitted += dec.size
            done = count == outputs[dec]
            if done.any():
                finished.append(dec[done])
        pre = it.prefill_ids
        if pre.size:
            state.prefilled[pre] += it.prefill_chunks
            complete = pre[state.prefilled[pre] == state.prompt_tokens[pre]]
            if complete.size:
                before = generated[complete]
                first = complete[before == 0]
                self.first_token_s[first] = now
                generated[complete] = before + 1
                self.token_time_s[self.token_offsets[complete] + before] = now
                emitted += complete.size
                done = before + 1 == outputs[complete]
                if done.any():
                    finished.append(complete[done])
        self.it_output_tokens.append(emitted)
        if finished:
            self._finish(np.concatenate(finished) if len(finished) > 1 else finished[0])
