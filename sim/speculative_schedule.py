"""A draft length that changes from step to step: Hugging Face's heuristic schedule.

Hugging Face transformers' assisted generation (``num_assistant_tokens_schedule = "heuristic"``,
the default since transformers 4.35; ``generation/candidate_generator.py``,
``AssistedCandidateGenerator.update_candidate_strategy``) drafts ``k`` tokens (5 at the start),
then raises ``k`` by 2 when every drafted token was accepted and lowers it by 1 (to at least 1)
otherwise. The draft length is thus a Markov chain: from ``k`` it moves to ``k + 2`` with the
probability that a chain of ``k`` is accepted whole (the product of the per-position acceptance
probabilities) and to ``max(1, k - 1)`` otherwise. Over a long generation the step sees ``k``
with the chain's stationary probability (:func:`heuristic_lengths`); the mean tokens per step and
the mean draft and verify cost are averages over it.
"""

from __future__ import annotations

import numpy as np

from decodex.core.errors import ArgumentError
from decodex.workloads.acceptance import ChainAcceptance, rate_matching
from decodex.workloads.batch import is_whole

HEURISTIC_START = 5  # transformers' GenerationConfig.num_assistant_tokens default
HEURISTIC_UP = 2  # added when every drafted token was accepted
HEURISTIC_DOWN = 1  # removed otherwise (never below 1)


def heuristic_lengths(acceptance: ChainAcceptance, most: int = 64) -> np.ndarray:
    """The stationary probability of each draft length ``k`` = 0 ... ``most`` under the heuristic
    schedule (module doc; index 0 is always 0); ``most`` caps the length (a chain accepted whole
    at ``most`` stays there)."""
    if not isinstance(acceptance, ChainAcceptance):
        raise ArgumentError(f"acceptance: a ChainAcceptance, got {type(acceptance).__name__}")
    if not is_whole(most) or not HEURISTIC_START <= most <= 1024:
        raise ArgumentError(f"most: {most!r} must be an integer in [{HEURISTIC_START}, 1024]")
    most = int(most)
    whole = np.concatenate([[1.0], np.cumprod(acceptance.position_probs(most))])  # P(chain of k accepted whole)
    moves = np.zeros((most + 1, most + 1))
    for k in range(1, most + 1):
        moves[k, min(k + HEURISTIC_UP, most)] += whole[k]
        moves[k, max(1, k - HEURISTIC_DOWN)] += 1.0 - whole[k]
    # the stationary distribution: the left eigenvector of eigenvalue 1, over k >= 1
    sub = moves[1:, 1:]
    system = np.vstack([sub.T - np.eye(most), np.ones(most)])
    rhs = np.zeros(most + 1)
    rhs[-1] = 1.0
    share, *_ = np.linalg.lstsq(system, rhs, rcond=None)
    share = np.clip(share, 0.0, None)
    return np.concatenate([[0.0], share / share.sum()])


def heuristic_tokens_per_step(acceptance: ChainAcceptance, most: int = 64) -> float:
    """Mean tokens a step emits (1 + accepted) under the heuristic schedule."""
    share = heuristic_lengths(acceptance, most)
    return 1.0 + float(sum(share[k] * acceptance.expected_accepted(k) for k in range(1, share.size)))


def heuristic_rate_for(tokens_per_step: float, most: int = 64) -> float:
    """The one per-position acceptance rate under which the heuristic schedule emits
    ``tokens_per_step`` tokens per step on average (bisection; tokens in (1, most + 1))."""
    if not 1.0 < tokens_per_step < most + 1:
        raise ArgumentError(f"tokens_per_step: {tokens_per_step!r} must be in (1, {most + 1})")
    return rate_matching(tokens_per_step, lambda rate: heuristic_tokens_per_step(ChainAcceptance((rate,)), most))
