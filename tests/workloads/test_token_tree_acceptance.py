"""Drafted token trees and acceptance models: hand-computed trees, expectations and seeded draws."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from decodex.core.dtypes import DType
from decodex.core.errors import ArgumentError
from decodex.workloads.acceptance import ChainAcceptance, EmpiricalAcceptance, TreeAcceptance
from decodex.workloads.ops import AttentionOp
from decodex.workloads.token_tree import MAX_TREE_NODES, TokenTree


def test_a_chain_by_hand_and_its_keys_are_a_causal_chunks() -> None:
    chain = TokenTree.chain(4)
    assert chain.parents == (-1, 0, 1, 2) and chain.depths == (1, 2, 3, 4) and chain.depth == 4
    assert chain.is_chain and chain.query_tokens == 5
    for k in range(0, 9):
        tree = TokenTree.chain(k)
        assert tree.attended_new_keys == (k + 1) * (k + 2) // 2
        op = AttentionOp(name="a", dtype=DType.BF16, context_lens=np.array([0]), query_lens=np.array([k + 1]),
                         q_heads=1, kv_heads=1, qk_dim=1, v_dim=1, kv_elements_per_token=2, kv_dtype=DType.BF16)
        assert op.attended_pairs == tree.attended_new_keys  # a chain verifies as a causal chunk of k + 1
    assert TokenTree.chain(0).size == 0 and TokenTree.chain(0).attended_new_keys == 1  # plain decode


def test_a_branching_tree_by_hand() -> None:
    tree = TokenTree.branching((2, 2, 1))  # 2 children of the root, 2 under each, 1 under each of those
    assert tree.size == 10 and tree.depth == 3 and not tree.is_chain
    assert tree.parents == (-1, -1, 0, 0, 1, 1, 2, 3, 4, 5)
    assert tree.depths == (1, 1, 2, 2, 2, 2, 3, 3, 3, 3)
    assert tree.children(-1) == (0, 1) and tree.children(0) == (2, 3) and tree.children(6) == ()
    # the root attends itself; depth-d nodes attend d ancestors-or-self among the drafted plus the root
    assert tree.attended_new_keys == 1 + 2 * 2 + 4 * 3 + 4 * 4


@pytest.mark.parametrize(("parents", "match"), [
    ((0,), r"parents\[0\]"), ((-1, 1), r"parents\[1\]"), ((-2,), r"parents\[0\]"), ((-1, 0.5), r"parents\[1\]"),
    ((-1, True), r"parents\[1\]"), ("abc", "sequence"), (tuple(range(-1, MAX_TREE_NODES)), "more than"),
])
def test_bad_trees_are_refused(parents: object, match: str) -> None:
    with pytest.raises(ArgumentError, match=match):
        TokenTree(parents)  # type: ignore[arg-type]


def test_bad_widths_and_lengths_are_refused() -> None:
    for call in (lambda: TokenTree.chain(-1), lambda: TokenTree.chain(2.0), lambda: TokenTree.branching((2, 0)),
                 lambda: TokenTree.branching((64, 64)), lambda: TokenTree.branching("22")):
        with pytest.raises(ArgumentError, match="token tree"):
            call()


def test_chain_acceptance_by_hand() -> None:
    model = ChainAcceptance((0.8, 0.6))
    assert model.expected_accepted(0) == 0.0
    assert model.expected_accepted(1) == pytest.approx(0.8)
    assert model.expected_accepted(3) == pytest.approx(0.8 + 0.8 * 0.6 + 0.8 * 0.6 * 0.6)  # the last rate repeats
    alpha = 0.7
    for k in range(8):  # one rate: Leviathan et al.'s (1 - alpha^(k+1)) / (1 - alpha) tokens per step
        tokens = 1 + ChainAcceptance((alpha,)).expected_accepted(k)
        assert tokens == pytest.approx((1 - alpha ** (k + 1)) / (1 - alpha))
    assert ChainAcceptance((1.0,)).expected_accepted(5) == 5.0 and ChainAcceptance((0.0,)).expected_accepted(5) == 0


def test_more_acceptance_or_a_longer_chain_never_accepts_fewer() -> None:
    rates = np.linspace(0, 1, 21)
    for k in (1, 3, 8):
        values = [ChainAcceptance((float(a),)).expected_accepted(k) for a in rates]
        assert all(b >= a for a, b in itertools.pairwise(values))
    values = [ChainAcceptance((0.9, 0.5)).expected_accepted(k) for k in range(10)]
    assert all(b >= a for a, b in itertools.pairwise(values))


def test_chain_draws_are_seeded_and_average_to_the_expectation() -> None:
    model = ChainAcceptance((0.9, 0.7, 0.5))
    first = model.draw(4, np.random.default_rng(3), 200_000)
    assert np.array_equal(first, model.draw(4, np.random.default_rng(3), 200_000))
    assert first.dtype == np.int64 and first.min() >= 0 and first.max() <= 4
    assert abs(first.mean() - model.expected_accepted(4)) < 4 * first.std() / math.sqrt(first.size)
    assert model.draw(0, np.random.default_rng(1), 5).tolist() == [0] * 5


def test_tree_acceptance_by_hand() -> None:
    tree = TokenTree((-1, -1, 0))  # a (0.6) and b (0.3) continue the root; c (0.5) continues a
    model = TreeAcceptance(tree, (0.6, 0.3, 0.5))
    assert model.path_probs().tolist() == pytest.approx([0.6, 0.3, 0.3])
    assert model.expected_accepted() == pytest.approx(1.2)
    draws = model.draw(np.random.default_rng(7), 200_000)
    assert np.array_equal(draws, model.draw(np.random.default_rng(7), 200_000))
    shares = np.bincount(draws, minlength=3) / draws.size  # 0: 0.1; 1: a then not c (0.3) or b (0.3); 2: a, c
    assert shares == pytest.approx([0.1, 0.6, 0.3], abs=0.005)
    chain = ChainAcceptance((0.8, 0.5))
    assert chain.for_tree(TokenTree.chain(4)).expected_accepted() == pytest.approx(chain.expected_accepted(4))
    with pytest.raises(ArgumentError, match="branches"):
        chain.for_tree(tree)


def test_bad_acceptance_is_refused_naming_the_field() -> None:
    tree = TokenTree((-1, -1, 0))
    with pytest.raises(ArgumentError, match=r"add to 1\.1"):
        TreeAcceptance(tree, (0.6, 0.5, 0.5))  # siblings exclude each other
    with pytest.raises(ArgumentError, match="2 probabilities for a tree of 3"):
        TreeAcceptance(tree, (0.6, 0.3))
    with pytest.raises(ArgumentError, match=r"probs\[1\]"):
        ChainAcceptance((0.5, 1.5))
    with pytest.raises(ArgumentError, match="at least one"):
        ChainAcceptance(())
    with pytest.raises(ArgumentError, match="requests"):
        ChainAcceptance((0.5,)).draw(2, np.random.default_rng(0), -1)


def test_empirical_acceptance_by_hand() -> None:
    model = EmpiricalAcceptance((10, 20, 30, 40), source="test counts")
    assert model.measured_length == 3
    assert model.expected_accepted(3) == pytest.approx((20 + 2 * 30 + 3 * 40) / 100)
    assert model.expected_accepted(1) == pytest.approx(0.9)  # a shorter chain: min(j, 1)
    assert model.distribution(2).tolist() == pytest.approx([0.1, 0.2, 0.7])
    draws = model.draw(3, np.random.default_rng(5), 100_000)
    assert abs(draws.mean() - 2.0) < 0.02 and np.array_equal(draws, model.draw(3, np.random.default_rng(5), 100_000))
    with pytest.raises(ArgumentError, match=r"\[0, 3\]"):
        model.expected_accepted(4)
    for counts in ((1,), (0, 0), (1, -1), "12"):
        with pytest.raises(ArgumentError, match="empirical acceptance"):
            EmpiricalAcceptance(counts)  # type: ignore[arg-type]


def test_a_spine_and_its_ranked_acceptance() -> None:
    tree = TokenTree.spine(3, 2)
    assert tree.parents == (-1, -1, 0, 0, 2, 2) and tree.depth == 3 and tree.expanding_per_level() == (1, 1, 1)
    assert TokenTree.spine(4, 1) == TokenTree.chain(4)
    ranked = ChainAcceptance((0.6,)).for_ranked_tree(tree)
    assert ranked.probs == pytest.approx((0.6, 0.24) * 3)
    # each level accepts one of its two candidates with 1 - 0.4^2, reached while the top-1 chain holds
    assert ranked.expected_accepted() == pytest.approx(0.84 * (1 + 0.6 + 0.36))
    chain = ChainAcceptance((0.9, 0.5))
    assert chain.for_ranked_tree(TokenTree.chain(3)).probs == chain.for_tree(TokenTree.chain(3)).probs
    wide = ChainAcceptance((0.6,)).for_ranked_tree(TokenTree.spine(3, 4))
    assert wide.expected_accepted() > ranked.expected_accepted()
    with pytest.raises(ArgumentError, match="spine width 0"):
        TokenTree.spine(3, 0)
