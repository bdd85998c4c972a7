"""Batches, routing and precisions."""

from __future__ import annotations

import numpy as np
import pytest

from decodex.core.dtypes import DType
from decodex.core.errors import ArgumentError
from decodex.workloads.batch import Batch, Routing
from decodex.workloads.precision import Precision, Sparsity


def test_routing_rows_sum_to_tokens_times_top_k() -> None:
    counts = Routing(seed=3).tokens_per_expert(100, 8, 2, draws=5)
    assert counts.shape == (5, 8)
    assert (counts.sum(axis=1) == 200).all()
    assert counts.max() <= 100  # an expert is picked at most once per token


def test_routing_is_deterministic_for_a_seed() -> None:
    a = Routing(seed=7).tokens_per_expert(64, 16, 4, draws=3)
    b = Routing(seed=7).tokens_per_expert(64, 16, 4, draws=3)
    c = Routing(seed=8).tokens_per_expert(64, 16, 4, draws=3)
    assert (a == b).all() and not (a == c).all()


def test_zipf_routing_is_more_skewed_than_uniform() -> None:
    uniform = Routing("uniform", seed=1).tokens_per_expert(2000, 64, 2, draws=4)
    skewed = Routing("zipf", skew=1.2, seed=1).tokens_per_expert(2000, 64, 2, draws=4)
    assert skewed.max(axis=1).mean() > 2 * uniform.max(axis=1).mean()


def test_batch_validation() -> None:
    with pytest.raises(ArgumentError):
        Batch.decode(0, 10)
    with pytest.raises(ArgumentError):
        Batch.decode(2, -1)
    with pytest.raises(ArgumentError):
        Batch(np.array([1]), np.array([0]), np.array([True]))
    b = Batch.mixed([3, 4], [16, 8], [0, 100], [True, False])
    assert b.num_requests == 4 and b.num_tokens == 26 and b.num_output_tokens == 3
    assert not b.is_decode_only and b.max_position == 108


def test_batch_arrays_are_read_only() -> None:
    b = Batch.decode(2, 10)
    with pytest.raises(ValueError):
        b.context_lens[0] = 5


def test_precision_presets_and_custom() -> None:
    assert Precision.parse("bf16").weights is DType.BF16
    w4 = Precision.parse("w4a16")
    assert w4.weights is DType.INT4 and w4.compute is DType.BF16 and w4.weight_bytes_per_param() == 0.5
    custom = Precision.parse("w=fp8,a=bf16,kv=fp8,sparsity=2:4")
    assert custom.kv_cache is DType.FP8 and custom.sparsity == Sparsity(2, 4)
    assert Precision.parse("fp8").vector is DType.BF16
    with pytest.raises(ArgumentError, match="unknown preset"):
        Precision.parse("fp7")
    with pytest.raises(ArgumentError, match="unknown dtype"):
        Precision.parse("w=fp7")


def test_sparsity_storage() -> None:
    s = Sparsity(2, 4)
    assert s.density == 0.5 and s.metadata_bits_per_nonzero == 2
    assert s.stored_bytes_per_weight(DType.BF16) == 0.5 * (2 + 0.25)
    with pytest.raises(ArgumentError):
        Sparsity(5, 4)


def test_successive_sampling_matches_gumbel_top_k() -> None:
    """The fast router (redraw repeats) and Gumbel top-k give the same per-expert shares."""
    routing = Routing("zipf", skew=1.2, seed=5)
    fast = routing.tokens_per_expert(100_000, 8, 3)[0]
    rng = np.random.default_rng(5)
    log_p = -1.2 * np.log1p(rng.permutation(8).astype(float))
    gumbel = Routing._gumbel_top_k(rng, log_p, 100_000, 3, 1, np.zeros((1, 8), dtype=np.int64))[0]
    assert fast.sum() == gumbel.sum() == 300_000
    assert np.abs(fast / fast.sum() - gumbel / gumbel.sum()).max() < 0.005
