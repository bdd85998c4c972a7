"""FlightLLM mapper: placement, ablation switches, block-sparse attention, hand-computed batch-1 steps."""

from __future__ import annotations

import itertools

import pytest

from decodex.core.errors import ArgumentError, InfeasibleError
from decodex.hw_models.system import load_system
from decodex.sim.estimate import estimate, plan_step
from decodex.sim.simulate import simulate
from decodex.workloads.batch import Batch

MIXED = "w=int4,a=int8,kv=int8,wbits=4.1"


def test_default_mapper_and_placement() -> None:
    assert load_system("alveo-u280").default_mapper == "flightllm"
    plan = plan_step("llama2-7b", "alveo-u280", 1, context=512, precision=MIXED)
    units = {p.op.name: p.unit for p in plan.placements}
    assert units["qkv_proj"] == units["attention"] == units["down_proj"] == "mpe"
    assert units["attn_norm"] == units["act"] == "sfu"
    assert plan.options == {"on_chip_decode": True, "sparse_chain": True, "attention_density": 1.0}


def test_batch1_decode_step_by_hand() -> None:
    """Weights stream at 0.7 x 460 GB/s over 24 of 32 channels; the MV chain (3 x 1024 MAC/cycle
    at 225 MHz) keeps up, so a matmul takes its weight bytes over that bandwidth."""
    r = estimate("llama2-7b", "alveo-u280", 1, context=512, precision=MIXED)
    bandwidth = 460e9 * 0.7 * 24 / 32
    ops = r.ops.set_index("name")
    q = ops.loc["qkv_proj"]
    assert q["time_s"] == pytest.approx(q["weight_bytes"] / bandwidth)
    assert q["compute_s"] == pytest.approx(3 * 4096 * 4096 / (1024 * 3 * 225e6))
    weights = (r.ops["weight_bytes"] * r.ops["repeat"])[r.ops["unit"] == "mpe"].sum()
    assert r.step_time_s > weights / bandwidth  # plus attention and special-function work
    assert r.step_time_s < weights / bandwidth * 1.15


def test_decode_step_grows_with_context_by_the_attention_mechanisms() -> None:
    """Keys 257 .. 512 (one MV tile of scores; scores stream-bound, values MAC-bound): each cached
    token adds, per layer, its second read by the append step and its K read (8192 + 4096 B at
    241.5 GB/s) and 32 heads x 512 padded value columns of INT8 MACs (3 x 1024 MAC/cycle, 225 MHz)."""
    short = estimate("llama2-7b", "alveo-u280", 1, context=256, precision=MIXED).step_time_s
    long = estimate("llama2-7b", "alveo-u280", 1, context=511, precision=MIXED).step_time_s
    per_token = (8192 + 4096) / (460e9 * 0.7 * 24 / 32) + 32 * 512 / (1024 * 3 * 225e6)
    assert long - short == pytest.approx(32 * 255 * per_token)
    times = [estimate("llama2-7b", "alveo-u280", 1, context=c, precision=MIXED).step_time_s
             for c in (128, 512, 1024, 2047)]
    assert all(b > a for a, b in itertools.pairwise(times))


def test_on_chip_decode_and_sparse_chain_switches() -> None:
    kwargs = dict(context=512, precision=MIXED)
    on = estimate("llama2-7b", "alveo-u280", 1, **kwargs).step_time_s
    off = estimate("llama2-7b", "alveo-u280", 1, on_chip_decode=False, **kwargs).step_time_s
    assert off > 1.8 * on  # cross-channel streams at 0.35 instead of 0.7, activations through HBM
    sparse = "w=int8,a=int8,kv=int8,sparsity=8:16"
    chunk = Batch.mixed([], [512])
    with_chain = estimate("llama2-7b", "alveo-u280", chunk, precision=sparse).step_time_s
    without = estimate("llama2-7b", "alveo-u280", chunk, precision=sparse, sparse_chain=False).step_time_s
    dense = estimate("llama2-7b", "alveo-u280", chunk, precision="int8").step_time_s
    assert with_chain < without <= dense * (1 + 1e-9)  # prefill is compute-bound: the chain halves the MACs


def test_sparsity_never_slows_a_step() -> None:
    for batch in (1, 16):
        times = [estimate("llama2-7b", "alveo-u280", batch, context=256,
                          precision=f"w=int8,a=int8,kv=int8{s}").step_time_s
                 for s in ("", ",sparsity=8:16", ",sparsity=4:16", ",sparsity=2:16")]
        assert all(b <= a * (1 + 1e-12) for a, b in itertools.pairwise(times))


def test_block_sparse_attention_reads_less_kv() -> None:
    kwargs = dict(context=1536, precision=MIXED)
    full = estimate("llama2-7b", "alveo-u280", 1, **kwargs)
    half = estimate("llama2-7b", "alveo-u280", 1, attention_density=0.5, **kwargs)
    a_full = full.ops.set_index("name").loc["attention"]
    a_half = half.ops.set_index("name").loc["attention.block_sparse"]
    assert a_half["kv_bytes"] == pytest.approx(a_full["kv_bytes"] / 2, rel=0.01)
    assert half.step_time_s < full.step_time_s
    assert half.kv_bytes == full.kv_bytes  # the cache is stored whole
    with pytest.raises(ArgumentError, match="attention_density"):
        estimate("llama2-7b", "alveo-u280", 1, attention_density=0.0, **kwargs)


def test_engine_equals_estimate_and_gpu_devices_are_refused() -> None:
    kwargs = dict(context=512, precision=MIXED)
    assert simulate("llama2-7b", "alveo-u280", 1, **kwargs).step_time_s == pytest.approx(
        estimate("llama2-7b", "alveo-u280", 1, **kwargs).step_time_s, rel=1e-9)
    with pytest.raises(InfeasibleError, match="fpga_dsp"):
        estimate("llama2-7b", "h100-sxm", 1, mapper="flightllm")


def test_opt_and_small_batches_run_on_the_fpga() -> None:
    for model in ("opt-6.7b", "llama2-7b"):
        one = estimate(model, "alveo-u280", 1, context=512, precision=MIXED)
        eight = estimate(model, "alveo-u280", 8, context=512, precision=MIXED)
        prefill = estimate(model, "alveo-u280", Batch.mixed([], [128]), precision=MIXED)
        assert 8 / eight.step_time_s > 2 / one.step_time_s  # weights are read once for the whole batch
        assert prefill.step_time_s > 10 * one.step_time_s  # 128 tokens of compute-bound MM work
