"""A batch of requests in one iteration, and how its tokens are routed to experts."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from decodex.core.errors import ArgumentError

if TYPE_CHECKING:
    from decodex.workloads.token_tree import TokenTree

ROUTING_KINDS = ("uniform", "zipf")
MAX_SKEW = 10.0  # Zipf exponent: at 10 one expert already takes all but ~1e-3 of the picks
MAX_SEED = 2**63 - 1  # seeds of numpy.random.default_rng: non-negative, int64 as the CLI's --seed


def is_number(value: object) -> bool:
    """Whether ``value`` is a finite real number (int or float, numpy's too; not a bool)."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.integer | np.floating):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond float range is finite but useless here
        return False


def is_whole(value: object) -> bool:
    """Whether ``value`` is an integer (Python or numpy; not a bool)."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


@dataclass(frozen=True)
class Routing:
    """How tokens choose experts in MoE layers.

    ``kind="uniform"``: each token picks ``top_k`` distinct experts uniformly at random.
    ``kind="zipf"``: expert ``i`` (in a random order fixed by the seed) has popularity
    proportional to ``(i + 1) ** -skew``; picks are drawn without replacement in proportion to it.
    All draws come from ``numpy.random.default_rng(seed)``.
    """

    kind: str = "uniform"
    skew: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or self.kind not in ROUTING_KINDS:
            raise ArgumentError(f"routing.kind: {self.kind!r} not one of {', '.join(ROUTING_KINDS)}")
        if not is_number(self.skew) or not 0.0 <= float(self.skew) <= MAX_SKEW:  # type: ignore[arg-type]
            raise ArgumentError(f"routing.skew: {self.skew!r} must be a number in [0, {MAX_SKEW:g}] (Zipf exponent)")
        if not is_whole(self.seed) or not 0 <= self.seed <= MAX_SEED:  # type: ignore[operator]
            raise ArgumentError(f"routing.seed: {self.seed!r} must be an integer in [0, {MAX_SEED}]")
        object.__setattr__(self, "skew", float(self.skew))
        object.__setattr__(self, "seed", int(self.seed))

    def tokens_per_expert(self, tokens: int, num_experts: int, top_k: int, draws: int = 1) -> np.ndarray:
        """Tokens routed to each expert, shape ``(draws, num_experts)``; each row sums to tokens × top_k.

        One draw per MoE layer (layers route independently); vectorized (see :meth:`_draw`).
        """
        if not 1 <= top_k <= num_experts:
            raise ArgumentError(f"routing: top_k={top_k} outside [1, num_experts={num_experts}]")
        return _routed_counts(self, int(tokens), int(num_experts), int(top_k), int(draws))

    def _draw(self, tokens: int, num_experts: int, top_k: int, draws: int) -> np.ndarray:
        """Counts by successive sampling without replacement: each token's j-th pick is drawn
        from the popularity and redrawn while it repeats an earlier pick of that token (the same
        distribution as Gumbel top-k, at O(tokens · top_k) instead of O(tokens · experts));
        Gumbel top-k when more than half of the experts are picked (redraws would pile up)."""
        rng = np.random.default_rng(self.seed)
        if self.kind == "uniform":
            log_p = np.zeros(num_experts)
        else:
            ranks = rng.permutation(num_experts)
            log_p = -self.skew * np.log1p(ranks.astype(float))
        counts = np.zeros((draws, num_experts), dtype=np.int64)
        if tokens == 0:
            return counts
        if 2 * top_k > num_experts:
            return self._gumbel_top_k(rng, log_p, tokens, top_k, draws, counts)
        prob = np.exp(log_p - log_p.max())
        prob /= prob.sum()
        uniform = self.kind == "uniform"

        def pick(size: int) -> np.ndarray:
            return rng.integers(num_experts, size=size) if uniform else rng.choice(num_experts, size=size, p=prob)

        # pick j of every token in row j, in the narrowest integer type that holds an expert index
        dtype = np.int16 if num_experts <= np.iinfo(np.int16).max else np.int64
        picks = np.empty((top_k, draws * tokens), dtype=dtype)

        def clashes(column: np.ndarray, j: int, index: np.ndarray | None = None) -> np.ndarray:
            """Whether each token's new pick repeats one of its first ``j`` picks (at ``index`` only)."""
            earlier = picks[:j] if index is None else picks[:j, index]
            out = np.zeros(column.size, dtype=bool)
            for row in earlier:
                out |= row == column
            return out

        for j in range(top_k):
            column = pick(draws * tokens).astype(dtype)
            clash = clashes(column, j)
            while clash.any():
                index = np.flatnonzero(clash)
                column[index] = pick(index.size)
                clash[index] = clashes(column[index], j, index)
            picks[j] = column
        for d in range(draws):  # draw d is tokens d*tokens .. (d+1)*tokens - 1
            counts[d] = np.bincount(picks[:, d * tokens:(d + 1) * tokens].ravel(), minlength=num_experts)
        return counts

    @staticmethod
    def _gumbel_top_k(rng: np.random.Generator, log_p: np.ndarray, tokens: int, top_k: int, draws: int,
                      counts: np.ndarray) -> np.ndarray:
        num_experts = log_p.size
        chunk = max(1, 2_000_000 // (num_experts * max(tokens, 1)))
        for start in range(0, draws, chunk):
            stop = min(draws, start + chunk)
            keys = log_p + rng.gumbel(size=(stop - start, tokens, num_experts))
            picks = np.argpartition(-keys, top_k - 1, axis=2)[:, :, :top_k]
            flat = picks.reshape(stop - start, -1) + num_experts * np.arange(stop - start)[:, None]
            counts[start:stop] = np.bincount(flat.ravel(), minlength=(stop - start) * num_experts).reshape(
                stop - start, num_experts)
        return counts


@lru_cache(maxsize=1024)
def _routed_counts(routing: Routing, tokens: int, num_experts: int, top_k: int, draws: int) -> np.ndarray:
    """:meth:`Routing.tokens_per_expert`, memoized (the draw is a pure function of its arguments:
    a serving run asks for the same token counts many times); read-only."""
    counts = routing._draw(tokens, num_experts, top_k, draws)
    counts.flags.writeable = False
    return counts


MAX_BATCH_REQUESTS = 2**20  # requests in one step: far above any batch a device holds (checked before allocating)
MAX_TOKENS_PER_REQUEST = 2**30  # context or query tokens of one request: above every model's window; sums fit int64
MIN_DECODE_CONTEXT = 1  # tokens cached before a decode step a user asks for: it follows a prompt of >= 1 token


def token_counts(values: object, name: str, lo: int, hi: int = MAX_TOKENS_PER_REQUEST) -> np.ndarray:
    """``values`` (a number or a sequence) as a flat int64 array of whole numbers in [lo, hi];
    ArgumentError naming ``name`` otherwise (a fraction such as 1.7 is refused, not truncated)."""
    if type(values) is int:  # the common scalar, without numpy's checks (a bool is not an int here)
        if not lo <= values <= hi:
            raise ArgumentError(f"batch: {name} {values} outside [{lo}, {hi}]")
        return np.array([values], dtype=np.int64)
    if isinstance(values, np.ndarray) and values.dtype == np.int64 and values.ndim == 1:
        if values.size and (values.min() < lo or values.max() > hi):
            value = values.min() if values.min() < lo else values.max()
            raise ArgumentError(f"batch: {name} {value} outside [{lo}, {hi}]")
        return values if not values.flags.writeable else values.copy()  # never freeze a caller's array
    array = np.asarray(values)
    if array.dtype == object:  # integers beyond int64, or mixed types
        try:
            array = array.astype(float)
        except (TypeError, ValueError):
            raise ArgumentError(f"batch: {name} must be whole numbers of tokens") from None
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ArgumentError(f"batch: {name} must be whole numbers of tokens, got {array.dtype} values")
    flat = array.reshape(-1)
    if np.issubdtype(flat.dtype, np.floating):
        bad = ~np.isfinite(flat) | (flat != np.round(flat))
        if bad.any():
            raise ArgumentError(f"batch: {name} must be whole numbers of tokens, got {float(flat[bad][0]):g}")
    if flat.size and (flat.min() < lo or flat.max() > hi):
        value = flat.min() if flat.min() < lo else flat.max()
        raise ArgumentError(f"batch: {name} {value:g} outside [{lo}, {hi}]" if isinstance(value, float)
                            else f"batch: {name} {value} outside [{lo}, {hi}]")
    return flat.astype(np.int64)


def token_flags(values: object, name: str) -> np.ndarray:
    """``values`` (a bool or a sequence of them; 0 and 1 also do) as a flat bool array;
    ArgumentError naming ``name`` otherwise."""
    array = np.asarray(values)
    if array.dtype != bool:
        numeric = np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
        if not numeric or not np.isin(array, (0, 1)).all():
            raise ArgumentError(f"batch: {name} must be true/false flags (or 0/1), got {array.dtype} values")
    return array.astype(bool).reshape(-1)


def batch_count(value: object) -> int:
    """A batch size: a whole number of requests in [1, MAX_BATCH_REQUESTS] (an integral float
    such as 8.0 is taken, 8.5 and bools are not); ArgumentError naming ``batch`` otherwise."""
    if isinstance(value, float | np.floating) and not isinstance(value, bool) and math.isfinite(value) \
            and float(value).is_integer():
        value = int(value)
    if not is_whole(value) or value < 1:  # type: ignore[operator]
        raise ArgumentError(f"batch: batch size must be a positive integer (whole number of requests in "
                            f"[1, {MAX_BATCH_REQUESTS}]), got {value!r}")
    if value > MAX_BATCH_REQUESTS:  # type: ignore[operator]  # before any array of that size is allocated
        raise ArgumentError(f"batch: batch size {value} is more than {MAX_BATCH_REQUESTS} requests")
    return int(value)  # type: ignore[call-overload]


@dataclass(frozen=True)
class Batch:
    """The requests of one iteration.

    ``context_lens[i]``: tokens of request ``i`` already in the KV cache before this step.
    ``query_lens[i]``: tokens request ``i`` processes in this step (1 for a decode; a prefill
    chunk's length otherwise). ``emits_token[i]``: whether request ``i`` produces an output token
    this step (decodes do; a prefill chunk does only if it ends the prompt). ``verifies[i]``:
    request ``i``'s query tokens are drafted tokens to verify (a speculative verify), so the LM
    head computes logits at every one of them (None: no request verifies).
    """

    context_lens: np.ndarray
    query_lens: np.ndarray
    emits_token: np.ndarray
    routing: Routing = field(default_factory=Routing)
    tree: TokenTree | None = None  # a speculative verify: requests with tree.query_tokens new tokens follow its mask
    verifies: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.tree is not None:
            from decodex.workloads.token_tree import TokenTree  # token_tree imports this module

            if not isinstance(self.tree, TokenTree):
                raise ArgumentError(f"batch.tree: must be a TokenTree or None, got {type(self.tree).__name__}")
        ctx = token_counts(self.context_lens, "context lengths", 0)
        query = token_counts(self.query_lens, "query lengths (tokens each request processes)", 1)
        emits = token_flags(self.emits_token, "emits_token")
        if not isinstance(self.routing, Routing):
            raise ArgumentError(f"batch.routing: must be a Routing, got {type(self.routing).__name__}")
        if ctx.size == 0:
            raise ArgumentError("batch: at least one request is needed")
        if ctx.size > MAX_BATCH_REQUESTS:
            raise ArgumentError(f"batch: {ctx.size} requests in one step, more than {MAX_BATCH_REQUESTS}")
        if not (ctx.shape == query.shape == emits.shape):
            raise ArgumentError("batch: context_lens, query_lens and emits_token must have equal lengths")
        fields = [("context_lens", ctx), ("query_lens", query), ("emits_token", emits)]
        if self.verifies is not None:
            verifies = token_flags(self.verifies, "verifies")
            if verifies.shape != ctx.shape:
                raise ArgumentError("batch: verifies must have one flag per request")
            fields.append(("verifies", verifies))
        for name, value in fields:
            value.setflags(write=False)
            object.__setattr__(self, name, value)

    def subset(self, index: np.ndarray) -> Batch:
        """The requests at ``index`` (an integer or boolean array), with this batch's routing and tree."""
        return Batch(self.context_lens[index], self.query_lens[index], self.emits_token[index], self.routing, self.tree,
                     None if self.verifies is None else self.verifies[index])

    @classmethod
    def decode(cls, batch_size: int, context_len: int | np.ndarray, routing: Routing | None = None) -> Batch:
        """A decode-only batch: ``batch_size`` requests (a whole number in [1, MAX_BATCH_REQUESTS]),
        each with ``context_len`` cached tokens (one whole number, or one per request, each in
        [0, MAX_TOKENS_PER_REQUEST])."""
        batch_size = batch_count(batch_size)  # checked before any array of that size is allocated
        ctx = token_counts(context_len, "context lengths", 0)
        if ctx.size not in (1, batch_size):
            raise ArgumentError(f"batch: {ctx.size} context lengths for a batch of {batch_size}")
        ctx = np.broadcast_to(ctx, (batch_size,)).copy()
        return cls(ctx, np.ones(batch_size, np.int64), np.ones(batch_size, bool),
                   Routing() if routing is None else routing)

    @classmethod
    def mixed(cls, decode_context_lens: np.ndarray | list[int], prefill_chunks: np.ndarray | list[int],
              prefill_context_lens: np.ndarray | list[int] | None = None,
              prefill_completes: np.ndarray | list[bool] | None = None,
              routing: Routing | None = None) -> Batch:
        """A mixed iteration: decodes plus prefill chunks (Sarathi-style chunked prefill).

        ``prefill_context_lens``: prompt tokens already prefilled before this chunk (default 0);
        ``prefill_completes``: whether each chunk ends its prompt (default True).
        """
        dec = token_counts(decode_context_lens, "decode context lengths", 0)
        chunks = token_counts(prefill_chunks, "prefill chunks", 1)
        pre_ctx = (np.zeros_like(chunks) if prefill_context_lens is None
                   else token_counts(prefill_context_lens, "prefill context lengths", 0))
        completes = (np.ones(chunks.size, bool) if prefill_completes is None
                     else token_flags(prefill_completes, "prefill_completes"))
        return cls(np.concatenate([dec, pre_ctx]), np.concatenate([np.ones(dec.size, np.int64), chunks]),
                   np.concatenate([np.ones(dec.size, bool), completes]),
                   Routing() if routing is None else routing)

    @property
    def num_requests(self) -> int:
        """Requests in the batch."""
        return int(self.context_lens.size)

    @property
    def num_tokens(self) -> int:
        """Tokens processed this step (sum of query lengths)."""
        return int(self.query_lens.sum())

    @property
    def num_output_tokens(self) -> int:
        """Output tokens this step produces."""
        return int(self.emits_token.sum())

    @property
    def num_logit_tokens(self) -> int:
        """Tokens whose logits the LM head computes: every query token of a verifying request,
        the emitting tokens of the others (logits only where a token is sampled)."""
        if self.verifies is None:
            return self.num_output_tokens
        return int(np.where(self.verifies, self.query_lens, self.emits_token).sum())

    @property
    def is_decode_only(self) -> bool:
        """True when every request processes exactly one token."""
        return bool((self.query_lens == 1).all())

    @property
    def max_position(self) -> int:
        """Largest position any request reaches in this step (context + query)."""
        return int((self.context_lens + self.query_lens).max())

    @property
    def kv_tokens(self) -> int:
        """KV-cache tokens held after the step, summed over requests."""
        return int((self.context_lens + self.query_lens).sum())
