"""Iteration latency and energy from the step model, cached by batch composition.

One ``estimate`` call costs ~0.3 ms, a serving run has tens of thousands of iterations, so
iterations are grouped by a key and the step model runs once per key:

``(decode requests, prefill requests, prefill tokens, bucket(sum of decode contexts),
bucket(sum of prefill contexts))``

Buckets are geometric with a relative width ``bucket_width`` (default 1 %): a sum ``x`` falls in
bucket ``round(ln x / ln(1 + w))`` and the bucket stands for ``round((1 + w) ** index)`` tokens,
so the represented sum is within ``w / 2`` of the true one (a factor ``(1 + w) ** ±0.5``, plus
half a token of rounding). The representative batch gives the decodes equal contexts that add
up to the bucket's sum, and splits the prefill tokens and the prefill contexts evenly over the
prefill requests.

The model's context window (``ModelConfig.context_window``, ``W`` tokens) is respected: a bucket
may stand for a sum above the true one, so the represented sum is clamped to the most the real
requests of the key can hold -- ``decodes * (W - 1)`` for the decodes (each decode reaches
position context + 1 <= W) and ``prefills * W - prefill tokens`` for the prefill contexts (each
chunk reaches context + chunk <= W). The true sum is within those caps, so the clamp only moves
the represented sum toward it and the ``w / 2`` bound holds. The even splits pair the chunks'
extra tokens with the contexts' shorter shares, so every representative request's position is
``ceil(represented total / requests)`` at most, inside the window whenever the sums are. A cache
never turns a valid iteration into one ``estimate`` refuses.

The approximation: in the step model the matmuls depend only on token counts (kept exactly in
the key) and decode attention is linear in the summed context (so equal contexts with the same
sum cost the same, up to the bucket width). Causal attention inside a prefill chunk grows with
the square of the chunk, so several prefill chunks of unequal length are priced as equal chunks
of the same total (exact for one chunk per iteration, the common case).
"""

from __future__ import annotations

import math

from decodex.core.errors import ArgumentError
from decodex.hw_models.system import SystemSpec
from decodex.sim.estimate import estimate
from decodex.workloads.batch import Batch, Routing
from decodex.workloads.model_config import ModelConfig
from decodex.workloads.parallelism import Parallelism
from decodex.workloads.precision import Precision

StepKey = tuple[int, int, int, int, int]


def split_evenly(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` integers differing by at most one."""
    base, extra = divmod(total, parts)
    return [base + 1] * extra + [base] * (parts - extra)


class StepTimes:
    """Cached ``(step_time_s, energy_j)`` of an iteration, by batch composition (module doc).

    ``bucket_width``: relative width of the context-sum buckets (0 keys by exact sums).
    ``routing``: how MoE tokens pick experts in every iteration (default uniform, seed 0).
    ``hits``/``misses`` count lookups served from the cache and calls of ``estimate``.
    """

    def __init__(self, model: ModelConfig, system: SystemSpec, *, precision: Precision,
                 parallelism: Parallelism, bucket_width: float = 0.01, routing: Routing | None = None) -> None:
        if isinstance(bucket_width, bool) or not isinstance(bucket_width, int | float) or not (
                0.0 <= bucket_width <= 1.0):
            raise ArgumentError(f"bucket_width: {bucket_width!r} outside [0, 1]")
        self.model = model
        self.system = system
        self.precision = precision
        self.parallelism = parallelism
        self.bucket_width = float(bucket_width)
        self.routing = routing or Routing()
        self._log_step = math.log1p(bucket_width) if bucket_width > 0 else 0.0
        self._window = model.context_window
        self._cache: dict[StepKey, tuple[float, float]] = {}
        self.hits = 0
        self.misses = 0

    def bucket(self, tokens: int) -> int:
        """Bucket index of a context sum in tokens (the sum itself when buckets are off; -1 for 0)."""
        if tokens <= 0:
            return -1
        if self._log_step == 0.0:
            return tokens
        return round(math.log(tokens) / self._log_step)

    def bucket_tokens(self, index: int) -> int:
        """The context sum (tokens) that bucket ``index`` stands for."""
        if index < 0:
            return 0
        if self._log_step == 0.0:
            return index
        return max(1, round(math.exp(index * self._log_step)))

    def lookup(self, decodes: int, decode_context: int, prefills: int, prefill_tokens: int,
               prefill_context: int) -> tuple[float, float]:
        """``(step_time_s, energy_j)`` of an iteration with ``decodes`` decode requests whose
        contexts sum to ``decode_context`` tokens and ``prefills`` prefill chunks of
        ``prefill_tokens`` tokens in all, with ``prefill_context`` tokens already cached."""
        return self.cached((decodes, prefills, prefill_tokens, self.bucket(decode_context),
                            self.bucket(prefill_context)))

    def cached(self, key: tuple[int, ...]) -> tuple[float, float]:
        """``(step_time_s, energy_j)`` of ``key`` from the cache, priced on a miss."""
        hit = self._cache.get(key)  # type: ignore[call-overload]
        if hit is not None:
            self.hits += 1
            return hit
        return self.price_key(key)  # type: ignore[arg-type]

    def price_key(self, key: StepKey) -> tuple[float, float]:
        """``(step_time_s, energy_j)`` of ``key`` (a cache key as :meth:`lookup` forms it), priced
        now and cached: a miss of a loop that forms keys itself (the compiled serving loop)."""
        self.misses += 1
        value = self._price(key)
        self._cache[key] = value
        return value

    def represented(self, key: StepKey) -> tuple[int, int]:
        """``(decode context sum, prefill context sum)`` in tokens that a key's batch is priced with:
        the buckets' sums, clamped so no request passes the model's context window (module doc)."""
        decodes, prefills, prefill_tokens, decode_bucket, prefill_bucket = key[:5]
        decode_sum = self.bucket_tokens(decode_bucket) if decodes else 0
        prefill_sum = self.bucket_tokens(prefill_bucket) if prefills else 0
        if self._window is not None:
            decode_sum = min(decode_sum, decodes * (self._window - 1))
            prefill_sum = min(prefill_sum, max(0, prefills * self._window - prefill_tokens))
        return decode_sum, prefill_sum

    def batch_for(self, key: StepKey) -> Batch:
        """The representative Batch of a key (module doc)."""
        decodes, prefills, prefill_tokens = key[:3]
        decode_sum, prefill_sum = self.represented(key)
        decode_ctx = split_evenly(decode_sum, decodes) if decodes else []
        if prefills:
            chunks = split_evenly(prefill_tokens, prefills)
            prefill_ctx = split_evenly(prefill_sum, prefills)[::-1]  # longer contexts with shorter chunks
        else:
            chunks, prefill_ctx = [], []
        return Batch.mixed(decode_ctx, chunks, prefill_ctx, routing=self.routing)

    def _price(self, key: StepKey) -> tuple[float, float]:
        result = estimate(self.model, self.system, self.batch_for(key), precision=self.precision,
                          parallelism=self.parallelism)
        return result.step_time_s, result.energy_j

    @property
    def entries(self) -> int:
        """Distinct keys priced so far."""
        return len(self._cache)
