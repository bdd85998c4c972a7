"""Batch schedulers: which requests run in the next iteration.

Every scheduler implements ``next_batch(now, state) -> Iteration | None``: it may admit waiting
requests (giving them KV blocks) and preempt running ones (the most recently admitted first,
vLLM recompute semantics, see :meth:`ReplicaState.reserve_decodes`), then returns the planned
iteration, or None when there is nothing to run. Register new ones with
:func:`register_scheduler`. ``steady_until(state, it)`` says whether a decode-only plan will
repeat (the serving loop then plans the repeats at once, :mod:`sim.serving.stretch`); a new
scheduler that does not override it promises nothing and runs iteration by iteration.

- ``static``: a batch of up to ``max_batch`` requests is prefilled together, then decoded until
  every request of it has finished; nothing joins mid-batch.
- ``continuous`` (Orca / vLLM v0 default, prefill-prioritized): whenever waiting requests can be
  admitted (FCFS, within ``max_batch`` running requests, free KV blocks and
  ``max_prefill_tokens`` prompt tokens), the iteration prefills their whole prompts and nothing
  else (a prefill-only iteration, as vLLM v0 does); otherwise it decodes every running request.
- ``inflight`` (TensorRT-LLM in-flight batching, chunked context off): every running decode, then
  whole prompts of waiting requests (FCFS) while the iteration's tokens stay within ``chunk``
  (TensorRT-LLM's ``max_num_tokens``: a decode counts one token, or ``1 + state.lookahead`` when it
  verifies drafted tokens, a prompt all of its tokens) and
  ``max_batch`` requests run; a prompt longer than ``chunk`` runs alone in an iteration with the
  decodes. Prefill and decode share iterations, prompts are never split.
- ``chunked`` (Sarathi-Serve, vLLM chunked prefill): a budget of ``chunk`` tokens per iteration;
  every running decode first, then chunks of partially prefilled prompts (admission order), then
  newly admitted waiting requests (FCFS) fill the rest; a prompt may span iterations. Decodes are
  never cut, so an iteration holds more than ``chunk`` tokens when more than ``chunk`` requests
  decode.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar, TypeVar

import numpy as np

from decodex.core.errors import ArgumentError
from decodex.sim.serving.state import Iteration, ReplicaState

SCHEDULERS: dict[str, type[Scheduler]] = {}
S = TypeVar("S", bound="type[Scheduler]")


def register_scheduler(name: str) -> Callable[[S], S]:
    """Class decorator: make a Scheduler subclass available as ``scheduler=name``."""

    def decorate(cls: S) -> S:
        cls.name = name  # type: ignore[attr-defined]
        SCHEDULERS[name] = cls  # type: ignore[assignment]
        return cls

    return decorate


def get_scheduler(name: str) -> type[Scheduler]:
    """The Scheduler class registered as ``name``; ArgumentError lists the known ones."""
    try:
        return SCHEDULERS[name]
    except (KeyError, TypeError):
        raise ArgumentError(f"scheduler: {name!r} not one of {', '.join(sorted(SCHEDULERS))}") from None


def _check(name: str, value: object, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or not lo <= value <= hi:
        raise ArgumentError(f"{name}: {value!r} must be an integer in [{lo}, {hi}]")
    return int(value)


class Scheduler(ABC):
    """Plans iterations. ``max_batch``: most requests running at once. ``chunk``: token budget
    of one iteration (``chunked`` only). ``max_prefill_tokens``: most prompt tokens of one
    prefill iteration (``continuous`` only; vLLM's ``max_num_batched_tokens``)."""

    name: ClassVar[str] = ""

    def __init__(self, *, max_batch: int = 256, chunk: int = 512, max_prefill_tokens: int = 8192) -> None:
        self.max_batch = _check("max_batch", max_batch, 1, 1_000_000)
        self.chunk = _check("chunk", chunk, 1, 10_000_000)
        self.max_prefill_tokens = _check("max_prefill_tokens", max_prefill_tokens, 1, 100_000_000)

    @property
    def max_step_tokens(self) -> int:
        """Most tokens one iteration processes (sizes the activation workspace), tokens."""
        return self.max_prefill_tokens

    def max_step_tokens_ahead(self, lookahead: int) -> int:
        """:attr:`max_step_tokens` when every decode also verifies ``lookahead`` drafted tokens
        (speculative decoding): at least ``max_batch`` decodes of ``1 + lookahead`` tokens."""
        return max(self.max_step_tokens, self.max_batch * (1 + lookahead)) if lookahead else self.max_step_tokens

    @abstractmethod
    def next_batch(self, now: float, state: ReplicaState) -> Iteration | None:
        """Admit/preempt as the policy says and return the next iteration (None: nothing to run).
        ``now`` is the simulated time in s."""

    def steady_until(self, state: ReplicaState, it: Iteration) -> str:
        """Called right after :meth:`next_batch` planned ``it``, decode-only: ``"finish"`` when every
        next plan repeats it (the same decodes, one token more each) until a running request
        finishes or KV blocks run short, whatever arrives; ``"arrival"`` when that holds only
        until a request arrives; ``""`` when nothing is promised (the default)."""
        return ""

    @staticmethod
    def _head_blocked(state: ReplicaState, room: int) -> bool:
        """Whether the waiting queue's head cannot be admitted now and, FCFS, until a running
        request finishes: no ``room`` in the batch, or too few free KV blocks (growing decodes
        only take more)."""
        return room <= 0 or not state.can_admit(state.waiting[0])

    def _admit_prompts(self, state: ReplicaState, token_cap: int | None) -> list[int]:
        """Admit waiting requests FCFS while ``max_batch``, the KV blocks and ``token_cap``
        prompt tokens allow; returns them in admission order."""
        admitted: list[int] = []
        tokens = 0
        room = self.max_batch - state.running.size
        waiting = state.waiting
        while waiting and len(admitted) < room:
            request = waiting[0]
            prompt = state.recompute_tokens(request)
            if token_cap is not None and tokens + prompt > token_cap and admitted:
                break
            if not state.can_admit(request):
                break
            waiting.popleft()
            state.admit(request)
            admitted.append(request)
            tokens += prompt
        return admitted

    @staticmethod
    def _prefill_whole(state: ReplicaState, admitted: list[int]) -> Iteration:
        ids = np.asarray(admitted, dtype=np.int64)
        return Iteration(np.zeros(0, np.int64), 0, ids, state.prompt_tokens[ids].copy(), np.zeros(ids.size, np.int64))


@register_scheduler("static")
class StaticScheduler(Scheduler):
    """Static batching: prefill up to ``max_batch`` requests together, decode until all of them
    finish, then take the next batch (no admission mid-batch)."""

    def next_batch(self, now: float, state: ReplicaState) -> Iteration | None:
        """The batch's next decode, or the next batch's prefill when the batch is done."""
        if state.running.size:
            decodes, context = state.reserve_decodes(state.running)
            if decodes.size:
                return Iteration.decode_only(decodes, context)
        admitted = self._admit_prompts(state, None)
        return self._prefill_whole(state, admitted) if admitted else None

    def steady_until(self, state: ReplicaState, it: Iteration) -> str:
        """A static batch decodes until it is done, whatever arrives: ``"finish"``."""
        return "finish"


@register_scheduler("continuous")
class ContinuousScheduler(Scheduler):
    """Iteration-level (continuous) batching with prefill-only iterations (vLLM v0 default)."""

    def next_batch(self, now: float, state: ReplicaState) -> Iteration | None:
        """A prefill of newly admitted prompts when any can be admitted, else all decodes."""
        for _ in range(2):
            admitted = self._admit_prompts(state, self.max_prefill_tokens)
            if admitted:
                return self._prefill_whole(state, admitted)
            if not state.running.size:
                return None
            decodes, context = state.reserve_decodes(state.running)
            if decodes.size:
                return Iteration.decode_only(decodes, context)
        return None

    def steady_until(self, state: ReplicaState, it: Iteration) -> str:
        """Decodes repeat until an arrival (queue empty) or a finish (its head blocked)."""
        if not state.waiting:
            return "arrival"
        return "finish" if self._head_blocked(state, self.max_batch - state.running.size) else ""


@register_scheduler("chunked")
class ChunkedScheduler(Scheduler):
    """Sarathi-Serve chunked prefill: decodes first, then prompt chunks up to ``chunk`` tokens."""

    @property
    def max_step_tokens(self) -> int:
        """Most tokens one iteration processes: the chunk budget (or ``max_batch`` decodes)."""
        return max(self.chunk, self.max_batch)

    def next_batch(self, now: float, state: ReplicaState) -> Iteration | None:
        """Every decode plus prefill chunks filling the rest of the ``chunk`` token budget."""
        decodes, context = state.reserve_decodes(state.decoding())
        budget = self.chunk - decodes.size * (1 + state.lookahead)  # a verify's drafted tokens count
        ids: list[int] = []
        chunks: list[int] = []
        done: list[int] = []
        if budget > 0:
            for request in state.prefilling().tolist():
                left = int(state.prompt_tokens[request] - state.prefilled[request])
                take = min(left, budget)
                ids.append(request)
                chunks.append(take)
                done.append(int(state.prefilled[request]))
                budget -= take
                if budget <= 0:
                    break
        waiting = state.waiting
        while budget > 0 and waiting and state.running.size < self.max_batch:
            request = waiting[0]
            prompt = state.recompute_tokens(request)
            if not state.can_admit(request):
                break
            waiting.popleft()
            state.admit(request)
            take = min(prompt, budget)
            ids.append(request)
            chunks.append(take)
            done.append(0)
            budget -= take
        if not ids:
            return Iteration.decode_only(decodes, context) if decodes.size else None
        return Iteration(decodes, context, np.asarray(ids, dtype=np.int64), np.asarray(chunks, dtype=np.int64),
                         np.asarray(done, dtype=np.int64))

    def steady_until(self, state: ReplicaState, it: Iteration) -> str:
        """Decodes repeat until a finish when they fill the token budget, else until an arrival
        (queue empty) or a finish (its head blocked); prompt chunks left end the promise."""
        if self.chunk - it.decode_ids.size <= 0:
            return "finish"
        if state.running.size != it.decode_ids.size:  # a prompt is part-way prefilled
            return ""
        if not state.waiting:
            return "arrival"
        return "finish" if self._head_blocked(state, self.max_batch - state.running.size) else ""


@register_scheduler("inflight")
class InflightScheduler(ChunkedScheduler):
    """TensorRT-LLM in-flight batching without chunked context: decodes plus whole prompts (the
    token budget of :class:`ChunkedScheduler`, prompts never split)."""

    def next_batch(self, now: float, state: ReplicaState) -> Iteration | None:
        """Every decode plus whole waiting prompts filling the rest of the ``chunk`` token budget."""
        decodes, context = state.reserve_decodes(state.decoding())
        budget = self.chunk - decodes.size * (1 + state.lookahead)  # a verify's drafted tokens count
        ids: list[int] = []
        waiting = state.waiting
        while waiting and state.running.size < self.max_batch:
            request = waiting[0]
            prompt = state.recompute_tokens(request)
            if (ids and prompt > budget) or not state.can_admit(request):
                break
            waiting.popleft()
            state.admit(request)
            ids.append(request)
            budget -= prompt
        if not ids:
            return Iteration.decode_only(decodes, context) if decodes.size else None
        admitted = np.asarray(ids, dtype=np.int64)
        return Iteration(decodes, context, admitted, state.prompt_tokens[admitted].copy(),
                         np.zeros(admitted.size, np.int64))

    def steady_until(self, state: ReplicaState, it: Iteration) -> str:
        """Decodes repeat until an arrival (queue empty) or a finish (its head blocked): a waiting
        prompt joins whatever the token budget when the batch holds none."""
        if state.running.size != it.decode_ids.size:
            return ""
        if not state.waiting:
            return "arrival"
        return "finish" if self._head_blocked(state, self.max_batch - state.running.size) else ""
