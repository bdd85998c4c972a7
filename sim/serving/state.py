"""What the schedulers and the serving loop share: the requests' progress and one planned iteration.

Requests are indices ``0..n-1`` in arrival order; their progress lives in numpy arrays so that
an iteration updates all of its requests at once.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from decodex.sim.serving.kv_cache import BlockManager

_EMPTY = np.zeros(0, dtype=np.int64)


@dataclass(slots=True)
class Iteration:
    """One planned iteration (a forward pass of the replica).

    ``decode_ids``: requests that decode one token. ``decode_context``: tokens in the KV cache of
    those requests before the step, summed. ``prefill_ids``/``prefill_chunks``: requests that
    prefill a chunk of their prompt and the chunk sizes (tokens); ``prefill_done``: prompt tokens
    of each already in the cache before the chunk (its context).
    """

    decode_ids: np.ndarray
    decode_context: int
    prefill_ids: np.ndarray
    prefill_chunks: np.ndarray
    prefill_done: np.ndarray

    @classmethod
    def decode_only(cls, ids: np.ndarray, context: int) -> Iteration:
        """An iteration of decodes only."""
        return cls(ids, context, _EMPTY, _EMPTY, _EMPTY)

    @property
    def prefill_tokens(self) -> int:
        """Prompt tokens processed in this iteration."""
        return int(self.prefill_chunks.sum()) if self.prefill_chunks.size else 0

    @property
    def batch_size(self) -> int:
        """Requests in this iteration."""
        return int(self.decode_ids.size + self.prefill_ids.size)


class ReplicaState:
    """Progress of every request on one replica.

    Per request (tokens): ``input_tokens``, ``output_tokens`` (to generate), ``generated`` (output
    tokens produced so far), ``prompt_tokens`` (the prompt of its current admission: the input
    plus, after a preemption, the tokens generated before it, which are recomputed) and
    ``prefilled`` (of that prompt, tokens already in the KV cache). ``waiting``: a FCFS queue of
    request indices; ``running``: admitted requests in admission order (last = most recent).
    A running request with ``prefilled == prompt_tokens`` decodes; it then holds
    ``input_tokens + generated - 1`` tokens in the KV cache (the newest token is written by the
    next decode).

    ``reserve_output``: admission takes the blocks of the whole request (prompt and every output
    token) at once, so that running requests never run short and nothing is preempted
    (TensorRT-LLM's ``GUARANTEED_NO_EVICT`` capacity policy); False takes the prompt's blocks and
    grows them token by token, preempting when short (vLLM).

    ``lookahead``: tokens a decode writes beyond its next one (a speculative verify's drafted
    tokens, :mod:`sim.serving.speculation`): decodes reserve blocks that far ahead, and an
    admission that reserves the whole request reserves them too.
    """

    def __init__(self, input_tokens: np.ndarray, output_tokens: np.ndarray, kv: BlockManager, *,
                 reserve_output: bool = False, lookahead: int = 0) -> None:
        n = input_tokens.size
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.generated = np.zeros(n, dtype=np.int64)
        self.prompt_tokens = input_tokens.copy()
        self.prefilled = np.zeros(n, dtype=np.int64)
        self.preemptions = np.zeros(n, dtype=np.int64)
        self.alive = np.zeros(n, dtype=bool)  # admitted and not finished or preempted
        self.kv = kv
        self.reserve_output = bool(reserve_output)
        self.lookahead = int(lookahead)
        self.waiting: deque[int] = deque()
        self.running: np.ndarray = _EMPTY

    def recompute_tokens(self, request: int) -> int:
        """Prompt tokens of ``request`` when admitted now: its input plus its generated tokens."""
        return int(self.input_tokens[request] + self.generated[request])

    def admission_tokens(self, request: int) -> int:
        """Tokens whose KV blocks ``request`` takes when admitted now: its prompt, or with
        ``reserve_output`` its whole sequence (input and all output tokens)."""
        if self.reserve_output:
            return int(self.input_tokens[request] + self.output_tokens[request]) + self.lookahead
        return self.recompute_tokens(request)

    def can_admit(self, request: int) -> bool:
        """Whether the free KV blocks cover :meth:`admission_tokens` of ``request`` now."""
        return self.kv.can_allocate(self.admission_tokens(request))

    def admit(self, request: int) -> int:
        """Move ``request`` (already popped from ``waiting``) to ``running`` with its KV blocks
        (:meth:`admission_tokens`); returns its prompt length in tokens."""
        prompt = self.recompute_tokens(request)
        self.kv.allocate(request, self.admission_tokens(request))
        self.prompt_tokens[request] = prompt
        self.prefilled[request] = 0
        self.alive[request] = True
        self.running = np.append(self.running, request)
        return prompt

    def preempt(self, request: int) -> None:
        """Evict ``request``: free its blocks and put it at the front of ``waiting``; it will
        recompute its prompt and the tokens it generated (vLLM recompute preemption)."""
        self.kv.free(request)
        self.prefilled[request] = 0
        self.alive[request] = False
        self.preemptions[request] += 1
        self.running = self.running[self.running != request]
        self.waiting.appendleft(request)

    def decoding(self) -> np.ndarray:
        """Running requests whose prompt is fully prefilled (admission order)."""
        run = self.running
        return run[self.prefilled[run] == self.prompt_tokens[run]]

    def prefilling(self) -> np.ndarray:
        """Running requests with prompt tokens left to prefill (admission order)."""
        run = self.running
        return run[self.prefilled[run] < self.prompt_tokens[run]]

    def reserve_decodes(self, decodes: np.ndarray) -> tuple[np.ndarray, int]:
        """Give each decoding request the block its next token needs, preempting the most
        recently admitted running requests while blocks run short.

        Returns the decodes that remain and the sum of their contexts (tokens in the KV cache
        before the step).
        """
        while decodes.size:
            tokens = self.input_tokens[decodes] + self.generated[decodes]
            if self.kv.grow(decodes, tokens + self.lookahead if self.lookahead else tokens):
                return decodes, int(tokens.sum()) - decodes.size
            victim = int(self.running[-1])
            self.preempt(victim)
            decodes = decodes[decodes != victim]
        return decodes, 0

    @property
    def preemption_count(self) -> int:
        """Preemptions so far, all requests."""
        return int(self.preemptions.sum())
