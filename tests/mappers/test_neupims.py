"""The neupims mapper: placement, channel policies, sub-batch interleaving on the engine."""

from __future__ import annotations

import numpy as np
import pytest

from decodex.hw_models.bank_pim import ChannelAssignedAttentionOp
from decodex.mappers.neupims import split_channels
from decodex.sim.estimate import estimate, plan_step
from decodex.sim.simulate import simulate, simulate_plan
from decodex.workloads.batch import Batch
from decodex.workloads.ops import ElementwiseOp, MatmulOp
from decodex.workloads.parallelism import Parallelism

FP16 = "fp16"


def _intervals(result, track):
    return [(e.start_s, e.end_s) for e in result.timeline if e.track == track]


def _overlap(a, b) -> float:
    return sum(max(0.0, min(e1, e2) - max(s1, s2)) for s1, e1 in a for s2, e2 in b)


def test_every_op_on_expected_unit() -> None:
    plan = plan_step("gpt3-7b", "neupims", 8, context=100, precision=FP16)
    units = {p.op.name: p.unit for p in plan.placements if p.unit is not None}
    for name in ("qkv_proj", "o_proj", "up_proj", "down_proj", "lm_head"):
        assert units[name] == "systolic"
    for name in ("attn_norm", "ffn_norm", "act", "final_norm", "attn_softmax"):
        assert units[name] == "vector"
    assert units["attention"] == "pim"
    attention = next(p.op for p in plan.placements if p.op.name == "attention")
    assert isinstance(attention, ChannelAssignedAttentionOp)
    for p in plan.placements:
        if isinstance(p.op, MatmulOp):
            assert p.unit == "systolic"
        if isinstance(p.op, ElementwiseOp):
            assert p.unit == "vector"


def test_npu_only_baseline_runs_fp16_attention_on_systolic() -> None:
    result = estimate("gpt3-7b", "npu-only", 16, context=200, precision=FP16)
    ops = result.ops.set_index("name")
    assert ops.loc["attention", "unit"] == "systolic"
    assert result.step_time_s > 0


def test_one_sub_batch_simulate_equals_estimate() -> None:
    for system in ("neupims", "npu-pim-naive"):
        for par in (Parallelism(), Parallelism(tp=4, pp=2)):
            est = estimate("gpt3-7b", system, 64, context=228, precision=FP16, parallelism=par, sub_batches=1)
            sim = simulate("gpt3-7b", system, 64, context=228, precision=FP16, parallelism=par, sub_batches=1)
            assert sim.step_time_s == pytest.approx(est.step_time_s, rel=1e-9)


def test_dual_row_buffers_overlap_npu_and_pim() -> None:
    result = simulate("gpt3-7b", "neupims", 512, context=228, precision=FP16, sub_batches=2)
    assert _overlap(_intervals(result, "d0.systolic"), _intervals(result, "d0.pim")) > 0
    assert result.step_time_s < result.analytical_step_time_s


def test_single_row_buffer_memory_phases_exclusive() -> None:
    """With one row buffer the PIM holds the memory for its whole time, so the step is at least
    the PIM time plus every NPU op's memory time (they cannot overlap); dual buffers beat that."""
    def bounds(system: str) -> tuple[float, float, float]:
        plan = plan_step("gpt3-7b", system, 512, context=228, precision=FP16, sub_batches=2)
        result = simulate_plan(plan)
        records = estimate("gpt3-7b", system, 512, context=228, precision=FP16, sub_batches=2).ops
        npu = records[records["unit"] != "pim"]
        pim = float((records.loc[records["unit"] == "pim", "compute_s"]
                     * records.loc[records["unit"] == "pim", "repeat"]).sum())
        memory_bound = float((npu["memory_s"] * npu["repeat"]).sum()) + pim
        serial = float((npu["time_s"] * npu["repeat"]).sum()) + pim
        return result.step_time_s, memory_bound, serial

    single, single_bound, _ = bounds("npu-pim-naive")
    assert single >= single_bound * (1 - 1e-9)
    dual, _, dual_serial = bounds("neupims")
    assert dual < dual_serial  # PIM overlaps NPU work
    result = simulate("gpt3-7b", "npu-pim-naive", 512, context=228, precision=FP16, sub_batches=2)
    pim = _intervals(result, "d0.pim")
    assert pim  # the PIM ran; NPU memory phases wait for it (bound above)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_greedy_never_slower_than_round_robin(seed: int) -> None:
    rng = np.random.default_rng(seed)
    batch = Batch.decode(96, rng.integers(10, 2000, size=96))
    greedy = estimate("gpt3-7b", "neupims", batch, precision=FP16, channel_policy="greedy", sub_batches=1)
    rr = estimate("gpt3-7b", "neupims", batch, precision=FP16, channel_policy="round_robin", sub_batches=1)
    pim = lambda r: float(r.ops.set_index("name").loc["attention", "time_s"])  # noqa: E731
    assert pim(greedy) <= pim(rr) * (1 + 1e-12)
    assert greedy.step_time_s <= rr.step_time_s * (1 + 1e-12)


def test_interleaving_gain_small_and_large_batch() -> None:
    def gain(batch: int) -> float:
        one = simulate("gpt3-7b", "neupims", batch, context=228, precision=FP16, sub_batches=1).step_time_s
        two = simulate("gpt3-7b", "neupims", batch, context=228, precision=FP16, sub_batches=2).step_time_s
        return one / two

    assert gain(32) < 1.0
    assert gain(512) > 1.0


def test_sub_batches_auto_and_split_keeps_channels() -> None:
    assert plan_step("gpt3-7b", "neupims", 64, context=50, precision=FP16).options["sub_batches"] == 1
    assert plan_step("gpt3-7b", "neupims", 256, context=50, precision=FP16).options["sub_batches"] == 2
    channel = np.repeat(np.arange(4), 4)
    parts = split_channels(channel, np.arange(16, dtype=float), 4, 2)
    assert sorted(np.concatenate(parts).tolist()) == list(range(16))
    for part in parts:
        assert np.bincount(channel[part], minlength=4).tolist() == [2, 2, 2, 2]


def test_reproduce_runner_subset() -> None:
    from decodex.validation.reproduce import load_targets
    from decodex.validation.runners_neupims import neupims_ratio

    targets = {t.name: t for t in load_targets() if t.group == "neupims" and t.runner == "neupims_ratio"}
    assert set(targets) == {"neupims-vs-gpu", "neupims-vs-npu", "neupims-vs-naive"}
    config = {**targets["neupims-vs-npu"].config, "models": ["gpt3-7b"], "batches": [64, 512],
              "lengths": [[80, 296]]}
    assert neupims_ratio(config) > 1.0  # PIM attention beats systolic GEMV attention


def test_given_channels_place_each_request_where_its_kv_cache_is() -> None:
    from decodex.core.errors import ArgumentError

    contexts = np.array([100, 900, 300, 50])
    given = (3, 3, 0, 7)
    plan = plan_step("gpt3-7b", "neupims", 4, context=contexts, precision=FP16, channels=given)
    attention = next(p.op for p in plan.placements if p.op.name == "attention")
    assert attention.channel_of_request.tolist() == list(given)
    assert plan.options["channel_policy"] == "given"
    # two long requests on one channel take longer than the greedy spread
    spread = plan_step("gpt3-7b", "neupims", 4, context=contexts, precision=FP16)
    assert estimate_plan_time(plan) > estimate_plan_time(spread)
    with pytest.raises(ArgumentError, match="channels"):
        plan_step("gpt3-7b", "neupims", 4, context=contexts, precision=FP16, channels=(0, 1))
    with pytest.raises(ArgumentError, match="channels"):
        plan_step("gpt3-7b", "neupims", 4, context=contexts, precision=FP16, channels=(0, 1, 2, 32))


def estimate_plan_time(plan) -> float:
    from decodex.sim.estimate import evaluate

    return evaluate(plan).step_time_s


def test_interleaved_gemms_slow_down_beside_the_pims_commands() -> None:
    import dataclasses

    from decodex.hw_models.system import load_system

    system = load_system("neupims")
    device = system.primary_device
    pim = dataclasses.replace(device.units["pim"], command_bus_shared=False)
    quiet = dataclasses.replace(device, units={**device.units, "pim": pim})
    groups = tuple(dataclasses.replace(g, device=quiet) for g in system.groups)
    quiet_system = dataclasses.replace(system, groups=groups)
    kwargs = {"context": 400, "precision": FP16, "sub_batches": 2, "parallelism": Parallelism(tp=4)}
    shared = simulate_plan(plan_step("gpt3-7b", system, 64, **kwargs))
    alone = simulate_plan(plan_step("gpt3-7b", quiet_system, 64, **kwargs))

    def gemm_time(result) -> float:
        return sum(e.end_s - e.start_s for e in result.timeline if e.track == "d0.systolic")

    # the NPU's weight streams share the bus with the other sub-batch's PIM commands: never faster
    assert gemm_time(shared) > gemm_time(alone)
    assert shared.step_time_s >= alone.step_time_s
