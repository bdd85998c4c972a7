"""How many drafted tokens a speculative step accepts: chain, tree and measured distributions.

A verify step over a :class:`~workloads.token_tree.TokenTree` accepts the drafted tokens on one
path from the root and emits one more token of its own (the correction, or the bonus token when
the whole path is accepted), so a step emits ``1 + accepted`` tokens per request.

- :class:`ChainAcceptance`: ``probs[j]``, the probability that the drafted token at position
  ``j + 1`` is accepted once the ones before it are (Leviathan et al. 2023 take one rate
  alpha for all positions; EAGLE and Medusa report one per position). E[accepted] for a chain of
  k is ``sum_{i<=k} prod_{j<=i} p_j``.
- :class:`TreeAcceptance`: ``probs[i]``, the probability that node ``i`` is the child the target
  accepts once its parent is; siblings exclude each other (their probabilities add to at most
  1). E[accepted] is the sum over nodes of the product of the probabilities on the node's path.
- :class:`EmpiricalAcceptance`: measured counts of steps that accepted 0, 1, ... K tokens of a
  chain of K; a shorter chain of k accepts ``min(j, k)`` (its first k positions are decided as
  in the longer one).

Draws (serving) come from the caller's seeded ``numpy.random.Generator``, vectorized over requests.
Typical rates by method and task are data, with their sources (``workloads/catalog/speculative``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from decodex.core.errors import ArgumentError
from decodex.workloads.batch import is_number, is_whole
from decodex.workloads.token_tree import MAX_TREE_NODES, TokenTree

PROB_TOLERANCE = 1e-9  # siblings' probabilities may add to 1 + this (rounding in a data file)


def _probabilities(values: object, name: str) -> tuple[float, ...]:
    """``values`` as a tuple of probabilities in [0, 1]; ArgumentError naming ``name`` otherwise."""
    if isinstance(values, str | bytes) or not isinstance(values, Sequence | np.ndarray):
        raise ArgumentError(f"{name}: must be a sequence of probabilities in [0, 1], got {values!r:.80}")
    if len(values) > MAX_TREE_NODES:
        raise ArgumentError(f"{name}: {len(values)} probabilities, more than {MAX_TREE_NODES}")
    out = []
    for index, value in enumerate(values):
        if not is_number(value) or not 0.0 <= float(value) <= 1.0:  # type: ignore[arg-type]
            raise ArgumentError(f"{name}[{index}]: {value!r} must be a probability in [0, 1]")
        out.append(float(value))  # type: ignore[arg-type]
    return tuple(out)


@dataclass(frozen=True)
class ChainAcceptance:
    """Per-position acceptance of a drafted chain (see module docstring); a chain longer than
    ``probs`` repeats its last probability (one rate alpha: ``probs=(alpha,)``)."""

    probs: tuple[float, ...]

    def __post_init__(self) -> None:
        probs = _probabilities(self.probs, "chain acceptance probs")
        if not probs:
            raise ArgumentError("chain acceptance probs: at least one probability is needed")
        object.__setattr__(self, "probs", probs)

    def position_probs(self, length: int) -> np.ndarray:
        """The acceptance probability of each of ``length`` positions."""
        if not is_whole(length) or not 0 <= length <= MAX_TREE_NODES:
            raise ArgumentError(f"draft length {length!r} must be an integer in [0, {MAX_TREE_NODES}]")
        probs = np.array(self.probs, dtype=float)
        return probs[np.minimum(np.arange(int(length)), probs.size - 1)]

    def expected_accepted(self, length: int) -> float:
        """E[drafted tokens accepted] of a chain of ``length``: the sum of the prefix products."""
        return float(np.cumprod(self.position_probs(length)).sum())

    def draw(self, length: int, rng: np.random.Generator, requests: int) -> np.ndarray:
        """Accepted drafted tokens of ``requests`` independent steps on a chain of ``length``
        (int64, each in [0, length]), from ``rng``."""
        probs = self.position_probs(length)
        accepted = rng.random((_count(requests), probs.size)) < probs
        return np.cumprod(accepted, axis=1).sum(axis=1).astype(np.int64)

    def for_tree(self, tree: TokenTree) -> TreeAcceptance:
        """This chain's acceptance on a chain-shaped ``tree`` (node at depth d: ``probs`` of
        position d); a tree with branches needs per-node probabilities (:class:`TreeAcceptance`)."""
        if not tree.is_chain:
            raise ArgumentError("chain acceptance: the tree branches; give a TreeAcceptance (one probability per node)")
        return TreeAcceptance(tree, tuple(float(p) for p in self.position_probs(tree.size)))

    def for_ranked_tree(self, tree: TokenTree) -> TreeAcceptance:
        """This chain's acceptance on any ``tree`` whose siblings are ranked candidates (listed
        best first, as Medusa's top-k): at depth ``d`` the top-1 candidate is right with the
        chain's ``p_d``, the rank-``r`` one with ``p_d (1 - p_d) ** r`` (each further guess right
        with ``p_d`` once those before it were wrong), an assumption that keeps siblings' sum
        below 1. A chain gets back the chain's probabilities."""
        rates = self.position_probs(max(tree.depth, 1))
        rank: dict[int, int] = {}
        probs = []
        for node, parent in enumerate(tree.parents):
            r = rank.get(parent, 0)
            rank[parent] = r + 1
            p = float(rates[tree.depths[node] - 1])
            probs.append(p * (1.0 - p) ** r)
        return TreeAcceptance(tree, tuple(probs))


@dataclass(frozen=True)
class TreeAcceptance:
    """Per-node acceptance of a drafted ``tree`` (see module docstring)."""

    tree: TokenTree
    probs: tuple[float, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.tree, TokenTree):
            raise ArgumentError(f"tree acceptance: tree must be a TokenTree, got {type(self.tree).__name__}")
        probs = _probabilities(self.probs, "tree acceptance probs")
        if len(probs) != self.tree.size:
            raise ArgumentError(f"tree acceptance probs: {len(probs)} probabilities for a tree of "
                                f"{self.tree.size} nodes")
        for node in (-1, *range(self.tree.size)):
            children = self.tree.children(node)
            total = sum(probs[c] for c in children)
            if total > 1.0 + PROB_TOLERANCE:
                where = "the root" if node < 0 else f"node {node}"
                raise ArgumentError(f"tree acceptance probs: the children of {where} ({', '.join(map(str, children))}) "
                                    f"add to {total:.6g} > 1 (they exclude each other)")
        object.__setattr__(self, "probs", probs)

    def path_probs(self) -> np.ndarray:
        """The probability that each node is accepted (the product of the probabilities on its path)."""
        out = np.empty(self.tree.size)
        for node, parent in enumerate(self.tree.parents):
            out[node] = self.probs[node] * (1.0 if parent < 0 else out[parent])
        return out

    def expected_accepted(self) -> float:
        """E[drafted tokens accepted per step]: the sum of the nodes' path probabilities."""
        return float(self.path_probs().sum())

    def draw(self, rng: np.random.Generator, requests: int) -> np.ndarray:
        """Accepted drafted tokens of ``requests`` independent steps (int64, each in [0, depth]):
        from the root, the accepted child (or none) is drawn among each accepted node's children."""
        count = _count(requests)
        accepted = np.zeros(count, dtype=np.int64)
        at = np.full(count, -1, dtype=np.int64)  # the deepest accepted node of each request (-1: the root)
        alive = np.ones(count, dtype=bool)
        children = {node: np.array(self.tree.children(node), dtype=np.int64) for node in (-1, *range(self.tree.size))}
        for _ in range(self.tree.depth):
            u, level = rng.random(count), at.copy()  # one step down per level, from where each request was
            for node, kids in children.items():
                here = alive & (level == node)
                if not here.any():
                    continue
                if kids.size == 0:
                    alive &= ~here
                    continue
                edges = np.cumsum([self.probs[k] for k in kids])
                pick = np.searchsorted(edges, u[here], side="right")  # kids.size: none accepted
                chosen = pick < kids.size
                rows = np.flatnonzero(here)
                at[rows[chosen]] = kids[pick[chosen]]
                accepted[rows[chosen]] += 1
                alive[rows[~chosen]] = False
            if not alive.any():
                break
        return accepted


@dataclass(frozen=True)
class EmpiricalAcceptance:
    """A measured distribution: ``counts[j]`` steps accepted ``j`` drafted tokens of a chain of
    ``len(counts) - 1`` (see module docstring); ``source`` says where it was measured."""

    counts: tuple[float, ...]
    source: str = ""

    def __post_init__(self) -> None:
        counts = self.counts
        if isinstance(counts, str | bytes) or not isinstance(counts, Sequence | np.ndarray) or len(counts) < 2:
            raise ArgumentError(f"empirical acceptance counts: need counts of 0, 1, ... K accepted tokens (K >= 1), "
                                f"got {counts!r:.80}")
        if len(counts) > MAX_TREE_NODES + 1:
            raise ArgumentError(f"empirical acceptance counts: {len(counts)} values, more than {MAX_TREE_NODES + 1}")
        for index, value in enumerate(counts):
            if not is_number(value) or float(value) < 0:  # type: ignore[arg-type]
                raise ArgumentError(f"empirical acceptance counts[{index}]: {value!r} must be a count >= 0")
        if sum(float(v) for v in counts) <= 0:  # type: ignore[arg-type]
            raise ArgumentError("empirical acceptance counts: all zero (no step measured)")
        object.__setattr__(self, "counts", tuple(float(v) for v in counts))  # type: ignore[arg-type]

    @property
    def measured_length(self) -> int:
        """The draft length K the counts were measured at."""
        return len(self.counts) - 1

    def distribution(self, length: int) -> np.ndarray:
        """P(accepted = j), j = 0 ... ``length``, for a chain of ``length`` <= K."""
        if not is_whole(length) or not 0 <= length <= self.measured_length:
            raise ArgumentError(f"empirical acceptance: draft length {length!r} must be an integer in "
                                f"[0, {self.measured_length}] (the length it was measured at)")
        probs = np.array(self.counts) / sum(self.counts)
        out = probs[: int(length) + 1].copy()
        out[-1] += probs[int(length) + 1:].sum()  # min(j, length)
        return out

    def expected_accepted(self, length: int) -> float:
        """E[drafted tokens accepted] of a chain of ``length`` <= K."""
        dist = self.distribution(length)
        return float(np.dot(np.arange(dist.size), dist))

    def draw(self, length: int, rng: np.random.Generator, requests: int) -> np.ndarray:
        """Accepted drafted tokens of ``requests`` steps on a chain of ``length`` (int64), from ``rng``."""
        dist = self.distribution(length)
        return rng.choice(dist.size, size=_count(requests), p=dist).astype(np.int64)


def rate_matching(tokens_per_step: float, tokens_at: Callable[[float], float]) -> float:
    """The one per-position acceptance rate in [0, 1] at which ``tokens_at(rate)`` (tokens per
    step, rising with the rate) equals ``tokens_per_step``: bisection to 1e-12."""
    low, high = 0.0, 1.0
    while high - low > 1e-12:
        rate = 0.5 * (low + high)
        if tokens_at(rate) < tokens_per_step:
            low = rate
        else:
            high = rate
    return 0.5 * (low + high)


def _count(requests: object) -> int:
    """``requests`` as a count of draws (a whole number in [0, 2**24])."""
    if not is_whole(requests) or not 0 <= requests <= 2**24:  # type: ignore[operator]
        raise ArgumentError(f"acceptance draws: requests {requests!r} must be an integer in [0, {2**24}]")
    return int(requests)  # type: ignore[call-overload]
