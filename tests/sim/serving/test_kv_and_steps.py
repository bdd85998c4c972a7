"""KV block manager, KV capacity from the step model, and the cached step times."""

from __future__ import annotations

import numpy as np
import pytest

from decodex.core.errors import ArgumentError
from decodex.hw_models.system import load_system
from decodex.sim.estimate import estimate
from decodex.sim.serving import BlockManager, StepTimes, kv_capacity
from decodex.workloads.batch import Batch
from decodex.workloads.catalog import load_model
from decodex.workloads.parallelism import Parallelism
from decodex.workloads.precision import Precision


def test_block_manager_allocates_grows_and_frees() -> None:
    kv = BlockManager(total_blocks=10, block_size=16, num_requests=3)
    assert kv.can_allocate(160) and not kv.can_allocate(161)
    kv.allocate(0, 17)  # 2 blocks
    kv.allocate(1, 16)  # 1 block
    assert kv.used_blocks == 3 and kv.free_blocks == 7
    ids = np.array([0, 1])
    assert kv.grow(ids, np.array([32, 17]))  # request 1 crosses a block boundary
    np.testing.assert_array_equal(kv.held[:2], [2, 2])
    assert kv.free_blocks == 6
    assert not kv.grow(ids, np.array([32 + 16 * 6 + 1, 17]))  # 7 more blocks, 6 free: nothing changes
    assert kv.free_blocks == 6
    assert kv.grow(ids, np.array([32 + 16 * 5, 17]))  # 5 more
    assert kv.free_blocks == 1
    assert not kv.grow(ids, np.array([32 + 16 * 6, 33]))  # 1 + 1 more, 1 free: all or nothing
    np.testing.assert_array_equal(kv.held[:2], [7, 2])
    kv.free(ids)
    assert kv.free_blocks == 10 and kv.used_blocks == 0


def test_kv_capacity_matches_the_model() -> None:
    model, system = load_model("llama3-70b"), load_system("h100-sxm")
    cap = kv_capacity(model, system, precision=Precision.parse("bf16"), parallelism=Parallelism(tp=8))
    # 8 KV heads split over 8 devices: exactly 1/8 of the model's KV bytes per token
    assert cap.kv_bytes_per_token == pytest.approx(model.kv_cache_bytes_per_token() / 8)
    free = cap.capacity_bytes * 0.9 - cap.weight_bytes - cap.workspace_bytes
    assert cap.free_bytes == pytest.approx(free)
    assert cap.total_blocks == int(free // (16 * cap.kv_bytes_per_token))
    assert 0 < cap.workspace_bytes < 0.05 * cap.capacity_bytes
    fp8 = kv_capacity(model, system, precision=Precision.parse("fp8"), parallelism=Parallelism(tp=8))
    assert fp8.kv_bytes_per_token == pytest.approx(cap.kv_bytes_per_token / 2)
    with pytest.raises(ArgumentError, match="memory_utilization"):
        kv_capacity(model, system, precision=Precision.parse("bf16"), parallelism=Parallelism(tp=8),
                    memory_utilization=0.2)
    with pytest.raises(ArgumentError, match="memory_utilization"):
        kv_capacity(model, system, precision=Precision.parse("bf16"), parallelism=Parallelism(tp=8),
                    memory_utilization=1.5)


def test_kv_heads_replicated_under_wide_tensor_parallelism() -> None:
    model, system = load_model("llama3-8b"), load_system("h100-sxm")
    cap = kv_capacity(model, system, precision=Precision.parse("bf16"), parallelism=Parallelism(tp=16))
    # 8 KV heads on 16 devices: each device keeps one head, i.e. 1/8 of the bytes, not 1/16
    assert cap.kv_bytes_per_token == pytest.approx(model.kv_cache_bytes_per_token() / 8)


def test_step_times_cache_and_buckets() -> None:
    model, system = load_model("llama3-8b"), load_system("h100-sxm")
    steps = StepTimes(model, system, precision=Precision.parse("bf16"), parallelism=Parallelism())
    for tokens in (1, 7, 100, 12_345, 1_000_000):
        assert abs(steps.bucket_tokens(steps.bucket(tokens)) - tokens) <= max(0.5, 0.005 * tokens + 0.5)
    t1, e1 = steps.lookup(32, 32 * 1000, 0, 0, 0)
    t2, _ = steps.lookup(32, 32 * 1000 + 10, 0, 0, 0)  # same bucket
    assert (steps.hits, steps.misses) == (1, 1) and t1 == t2
    direct = estimate(model, system, Batch.decode(32, 1000))
    # the bucket stands for a context sum within 0.5 %: the step time moves far less
    assert t1 == pytest.approx(direct.step_time_s, rel=2e-3) and e1 == pytest.approx(direct.energy_j, rel=2e-3)
    t3, _ = steps.lookup(4, 4 * 900, 1, 512, 0)
    mixed = estimate(model, system, Batch.mixed([900] * 4, [512], [0]))
    assert t3 == pytest.approx(mixed.step_time_s, rel=2e-3)
    rep = steps.batch_for((3, 2, 101, steps.bucket(3000), steps.bucket(50)))
    assert rep.num_requests == 5 and rep.num_tokens == 3 + 101
    assert int(rep.context_lens[:3].sum()) == steps.bucket_tokens(steps.bucket(3000))
    exact = StepTimes(model, system, precision=Precision.parse("bf16"), parallelism=Parallelism(), bucket_width=0)
    assert exact.bucket_tokens(exact.bucket(12_345)) == 12_345
    with pytest.raises(ArgumentError, match="bucket_width"):
        StepTimes(model, system, precision=Precision.parse("bf16"), parallelism=Parallelism(), bucket_width=-0.1)
