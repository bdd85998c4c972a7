"""Attention-FFN disaggregation: roles, the ping-pong pipeline, the Step-3 cost model, MegaScale's condition."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest

from decodex.core.errors import InfeasibleError, SpecError
from decodex.hw_models.system import load_system
from decodex.sim.decode_cost import decode_cost, token_work
from decodex.sim.estimate import plan_step
from decodex.sim.simulate import simulate_plan
from decodex.validation.reproduce import reproduce
from decodex.validation.runners_afd import resized_system, stage_times

MODEL, SYSTEM = "step3", "step3-2a2f-h800"
MEGASCALE = {"ffn_layout": "ep", "ffn_devices": 8, "overlap_collectives": False}  # MegaScale-Infer's expert nodes


def test_roles_and_instances_load() -> None:
    spec = load_system(SYSTEM)
    attention, ffn = spec.group_for("attention"), spec.group_for("ffn")
    assert attention.count == ffn.count == 16 and attention.instances == ffn.instances == 2
    assert spec.device_index(ffn) == 16
    assert load_system("deepseek-ep32-h800").group_for("colocated").count == 32


def test_bad_instance_size_is_named(tmp_path) -> None:
    text = Path(load_system(SYSTEM).source).read_text()
    assert "instance_devices = 8" in text
    (tmp_path / "bad.toml").write_text(text.replace("instance_devices = 8", "instance_devices = 5", 1))
    with pytest.raises(SpecError, match=r"instance_devices.*does not divide"):
        load_system(tmp_path / "bad.toml")


def test_pipeline_never_beats_its_busiest_resource_and_folding_is_exact() -> None:
    for m in (1, 3, 6):
        plan = plan_step(MODEL, SYSTEM, 512 * m, context=4096, precision="fp8", microbatches=m)
        folded, full = simulate_plan(plan), simulate_plan(plan, fold=False)
        assert folded.step_time_s == pytest.approx(full.step_time_s, rel=1e-9)
        assert all(busy <= folded.step_time_s * (1 + 1e-9) for busy in folded.busy_s.values())
        stages = stage_times(plan)
        layers = 56  # Step-3's MoE layers; the FFN instance serves every micro-batch on each
        assert folded.step_time_s >= m * layers * stages["ffn"]


@pytest.mark.parametrize(("batch", "m"), [(1024, 3), (3072, 4), (6144, 2)])
def test_more_network_bandwidth_is_never_slower(batch: int, m: int) -> None:
    times = [simulate_plan(plan_step(MODEL, resized_system(SYSTEM, nic_scale=s), batch, context=4096, precision="fp8",
                                     microbatches=m)).step_time_s for s in (0.05, 0.2, 0.5, 1.0, 2.0, 4.0)]
    assert all(b <= a * (1 + 1e-9) for a, b in itertools.pairwise(times))
    assert times[0] > times[-1]


def test_tp_ep_layout_conserves_expert_work_and_sends_a_copy_per_node() -> None:
    """Step-3's hybrid FFN: every micro-batch on all 16 FFN GPUs (TP 8 in a node, experts split over
    the 2 nodes); the expert FLOPs over the FFN devices equal those of the micro-batch's tokens."""
    plan = plan_step(MODEL, SYSTEM, 2048 * 3, context=4096, precision="fp8", microbatches=3)
    assert plan.options["ffn_layout"] == "tp-ep" and plan.options["ffn_ep"] == 2
    block = next(b for b in plan.schedule.streams[0].blocks if b.name.startswith("moe_layer"))
    ops = {p.op.name: p.op for t in block.tasks for p in t.placements}
    assert {"ffn_all_gather", "ffn_reduce_scatter"} <= set(ops) and "moe_dispatch" not in ops
    assert ops["ffn_all_gather"].devices == 8 and ops["ffn_reduce_scatter"].collective == "reduce_scatter"
    model = plan.graph.model
    expert = 2 * 3 * model.hidden_size * model.moe.expert.intermediate_size  # FLOP per routed token copy
    routed = 2048 * model.moe.top_k * expert
    assert ops["experts"].rank_flops.sum(axis=1).mean() * 8 == pytest.approx(routed, rel=1e-9)
    # A->F: each attention device sends its 128 tokens once per FFN node, in FP8 with scales
    a2f = ops["a2f"].payload_bytes
    assert a2f == pytest.approx(2 * 128 * (model.hidden_size + model.hidden_size / 128 * 4))
    no_overlap = simulate_plan(plan_step(MODEL, SYSTEM, 2048 * 3, context=4096, precision="fp8", microbatches=3,
                                         overlap_collectives=False))
    assert simulate_plan(plan).step_time_s < no_overlap.step_time_s


def test_colocated_dispatch_is_fp8_and_overlaps() -> None:
    plan = plan_step("deepseek-v3", "deepseek-ep128-h800", 128 * 128, context=4096, precision="fp8")
    block = next(b for b in plan.schedule.streams[0].blocks if b.name.startswith("moe_layer"))
    ops = {p.op.name: p.op for t in block.tasks for p in t.placements}
    assert str(ops["moe_dispatch"].dtype) == "fp8" and str(ops["moe_combine"].dtype) == "bf16"
    assert ops["moe_dispatch"].payload_bytes == pytest.approx(ops["moe_combine"].payload_bytes / 2 * (1 + 4 / 128))
    assert all(task.overlap_links for task in block.tasks)


def test_reproduce_deepseek_v3_throughput_passes() -> None:
    (result,) = reproduce("step3-deepseek-v3-throughput")
    assert result.passed, result.simulated


@pytest.mark.parametrize("nic_scale", [1.0, 0.05])
def test_megascale_micro_batches_fill_the_pipeline(nic_scale: float) -> None:
    """MegaScale-Infer: the ping-pong pipeline is full once m >= 2 (1 + T_c / T_f); throughput
    rises with m up to there and stays flat beyond."""
    system = resized_system(SYSTEM, attention_devices=4, nic_scale=nic_scale, mapper_options=MEGASCALE)
    per_mb = 256
    rates = []
    for m in range(1, 7):
        plan = plan_step(MODEL, system, per_mb * m, context=4096, precision="fp8", microbatches=m)
        rates.append(per_mb * m / simulate_plan(plan).step_time_s)
        if m == 1:
            stages = stage_times(plan)
    t_f = max(stages["attention"], stages["ffn"])
    t_c = max(stages["net.a2f"], stages["net.f2a"])
    need = math.ceil(2 * (1 + t_c / t_f))
    top = max(rates)
    assert all(b >= a * 0.995 for a, b in itertools.pairwise(rates))  # more micro-batches never hurt
    assert rates[0] < 0.75 * top  # one micro-batch leaves the instances idle in turn
    assert all(r >= 0.98 * top for r in rates[need - 1:])  # full from the MegaScale bound on


def test_step3_cost_model_work_matches_the_paper_table() -> None:
    step3 = token_work("step3", 8192)
    assert step3.kv_bytes == pytest.approx(2.56e8, rel=0.01)
    assert step3.attention_flops == pytest.approx(3.27e10, rel=0.01)
    assert step3.linear_flops == pytest.approx(2.07e10, rel=0.01)
    assert step3.ffn_flops == pytest.approx(5.33e10, rel=0.01)
    assert step3.attention_intensity == pytest.approx(128, rel=0.01)  # MFA with 8-bit KV
    assert token_work("qwen3-235b-a22b", 8192).attention_intensity == pytest.approx(32, rel=0.01)  # GQA
    assert 450 < token_work("deepseek-v3", 8192).attention_intensity < 520  # MLA (~512)
    cost = decode_cost("step3", 8192, ("h800", "h20"))
    assert cost.attention_device == "h20" and cost.ffn_device == "h800"


def test_reproduce_step3_cost_targets_pass() -> None:
    for name in ("step3-cost-step3", "step3-cost-deepseek-v3", "step3-cost-qwen3"):
        (result,) = reproduce(name)
        assert result.passed, (name, result.simulated)


def test_reproduce_megascale_passes() -> None:
    (result,) = reproduce("megascale")
    assert result.passed and result.simulated <= 1.0


def test_ffn_device_memory_counts_the_weights_it_stores() -> None:
    """A dense FFN run data parallel (dp_tokens, the default) is stored whole on every FFN device:
    GPT-3 175B's FP8 FFN (~116 GB) does not fit one 80 GB H800 although 1/16 of it would; tensor
    parallel over the 16 FFN devices (dp_tokens off) it fits."""
    with pytest.raises(InfeasibleError, match=r"an FFN device needs 11[0-9]\.[0-9] GB"):
        plan_step("gpt3-175b", SYSTEM, 64, context=1024, precision="fp8")
    plan = plan_step("gpt3-175b", SYSTEM, 64, context=1024, precision="fp8", dp_tokens=False)
    assert plan.options["dp_tokens"] is False
