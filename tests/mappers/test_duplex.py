"""Duplex mapper: Op/B of the decode ops, the processor selector, co-processing, engine agreement."""

from __future__ import annotations

import numpy as np
import pytest

from decodex.core.errors import ArgumentError
from decodex.mappers.duplex import DuplexMapper, find_units, op_cost_on
from decodex.sim.estimate import estimate, evaluate, plan_step
from decodex.sim.results import StepResult
from decodex.sim.simulate import simulate, simulate_plan
from decodex.workloads.batch import Batch
from decodex.workloads.builder import build_step_graph
from decodex.workloads.catalog import load_model
from decodex.workloads.ops import AttentionOp, MoEExpertsOp, OpKind
from decodex.workloads.parallelism import Parallelism
from decodex.workloads.precision import Precision

FP16 = Precision.parse("fp16")


def _op(model: str, batch: Batch, kind: type, par: Parallelism | None = None):
    graph = build_step_graph(load_model(model), batch, FP16, par or Parallelism())
    return next(op for _, op in graph.ops() if isinstance(op, kind))


def test_opb_of_decode_moe_experts_is_tokens_per_expert() -> None:
    # Mixtral, 64 decodes, top-2 of 8 experts: 16 tokens per expert on average
    op = _op("mixtral-8x7b", Batch.decode(64, 512), MoEExpertsOp)
    tokens = op.expert_tokens.sum(axis=2).mean() / (op.expert_tokens > 0).sum(axis=2).mean()
    assert tokens == pytest.approx(64 * 2 / 8, rel=0.05)
    assert op.arithmetic_intensity == pytest.approx(tokens, rel=0.05)  # 2 FLOP per 2-byte weight per token


@pytest.mark.parametrize(("model", "group"), [("llama3-70b", 8), ("mixtral-8x7b", 4), ("opt-66b", 1)])
def test_opb_of_decode_attention_is_query_heads_per_kv_head(model: str, group: int) -> None:
    op = _op(model, Batch.decode(32, 2000), AttentionOp)
    assert op.q_heads // op.kv_heads == group
    assert op.arithmetic_intensity == pytest.approx(group, rel=0.02)


def test_selector_picks_the_faster_processor_in_every_case() -> None:
    for model in ("llama3-70b", "mixtral-8x7b", "opt-66b"):
        for batch in (Batch.decode(8, 1000), Batch.decode(128, 1000), Batch.mixed([800] * 16, [2048])):
            plan = plan_step(model, "duplex", batch, precision="fp16", parallelism=Parallelism(tp=4),
                             expert_coprocessing=False, attention_coprocessing=False)
            device = plan.system.primary_device
            units = find_units(device)
            for placement in plan.placements:
                op = placement.op
                if op.kind not in (OpKind.MATMUL, OpKind.ATTENTION, OpKind.MOE_EXPERTS):
                    continue
                xpu = op_cost_on(device, units.host, op).time_s
                pim = op_cost_on(device, units.pim, op).time_s
                assert placement.unit == (units.pim if pim < xpu else units.host), (model, op.name)


def test_decode_gqa_attention_and_small_moe_go_to_the_logic_pim_prefill_to_the_xpu() -> None:
    plan = plan_step("mixtral-8x7b", "duplex", Batch.decode(32, 2000), precision="fp16",
                     parallelism=Parallelism(tp=4), expert_coprocessing=False)
    where = {p.op.name: p.unit for p in plan.placements}
    assert where["attention"] == "pim" and where["experts"] == "pim"
    prefill = plan_step("mixtral-8x7b", "duplex", Batch.mixed([], [4096] * 4), precision="fp16",
                        parallelism=Parallelism(tp=4))
    assert {p.op.name: p.unit for p in prefill.placements}["qkv_proj"] == "tensor"


@pytest.mark.parametrize("model", ["mixtral-8x7b", "glam-143b"])
@pytest.mark.parametrize("batch", [8, 64, 256])
def test_expert_coprocessing_never_makes_a_step_slower(model: str, batch: int) -> None:
    par = Parallelism(tp=4)
    kwargs = dict(context=1500, precision="fp16", parallelism=par)
    off = estimate(model, "duplex", batch, expert_coprocessing=False, **kwargs).step_time_s
    on = estimate(model, "duplex", batch, **kwargs).step_time_s
    assert on <= off * (1 + 1e-12)
    assert simulate(model, "duplex", batch, **kwargs).step_time_s <= off * (1 + 1e-9)


def test_expert_coprocessing_splits_experts_and_conserves_tokens() -> None:
    plan = plan_step("mixtral-8x7b", "duplex", 64, context=1500, precision="fp16", parallelism=Parallelism(tp=4))
    parts = [p for p in plan.placements if isinstance(p.op, MoEExpertsOp)]
    assert [p.unit for p in parts] == ["tensor", "pim"] and parts[1].concurrent
    whole = _op("mixtral-8x7b", Batch.decode(64, 1500), MoEExpertsOp, Parallelism(tp=4))
    total = parts[0].op.expert_tokens + parts[1].op.expert_tokens
    assert np.array_equal(total, whole.expert_tokens)
    # the PIM side takes the experts with the fewest tokens
    xpu, pim = parts[0].op.expert_tokens, parts[1].op.expert_tokens
    for d in range(xpu.shape[0]):
        if (pim[d] > 0).any() and (xpu[d] > 0).any():
            assert pim[d][pim[d] > 0].max() <= xpu[d][xpu[d] > 0].min()


def test_attention_coprocessing_runs_prefill_on_xpu_and_decode_on_pim_at_once() -> None:
    batch = Batch.mixed([3000] * 64, [2048, 2048])
    par = Parallelism(tp=4)
    plan = plan_step("llama3-70b", "duplex", batch, precision="fp16", parallelism=par)
    parts = [p for p in plan.placements if isinstance(p.op, AttentionOp)]
    assert [(p.op.name, p.unit, p.concurrent) for p in parts] == [
        ("attention.prefill", "tensor", False), ("attention.decode", "pim", True)]
    serial = plan_step("llama3-70b", "duplex", batch, precision="fp16", parallelism=par, attention_coprocessing=False)
    assert evaluate(plan).step_time_s <= evaluate(serial).step_time_s
    assert simulate_plan(plan).step_time_s <= simulate_plan(serial).step_time_s * (1 + 1e-9)


@pytest.mark.parametrize(("model", "batch"), [("mixtral-8x7b", Batch.decode(64, 1500)),
                                              ("llama3-70b", Batch.mixed([3000] * 64, [2048, 2048]))])
def test_engine_and_analytical_path_agree_on_duplex(model: str, batch: Batch) -> None:
    plan = plan_step(model, "duplex", batch, precision="fp16", parallelism=Parallelism(tp=4))
    engine = simulate_plan(plan)
    analytical = evaluate(plan)
    # the analytical group bound (slowest member, shared bytes / shared bandwidth) is a lower bound
    assert engine.step_time_s >= analytical.step_time_s * (1 - 1e-9)
    assert engine.step_time_s <= analytical.step_time_s * 1.05
    tracks = {e.track for e in engine.timeline}
    assert "d0.pim" in tracks and "d0.tensor" in tracks


def test_xpu_selection_is_the_same_device_without_pim() -> None:
    kwargs = dict(context=1500, precision="fp16", parallelism=Parallelism(tp=4))
    xpu_only = estimate("mixtral-8x7b", "duplex", 64, selection="xpu", **kwargs)
    gpu = estimate("mixtral-8x7b", "h100-sxm", 64, **kwargs)
    assert xpu_only.step_time_s == pytest.approx(gpu.step_time_s, rel=1e-9)
    assert all(r.unit != "pim" for r in xpu_only.records)
    with pytest.raises(ArgumentError, match="selection"):
        DuplexMapper(selection="bogus").map(
            build_step_graph(load_model("llama3-8b"), Batch.decode(1, 10), FP16, Parallelism()),
            plan_step("llama3-8b", "duplex", 1).system)


def test_bank_pim_loses_on_gqa_and_moe_and_gains_with_batch_on_mha() -> None:
    """Duplex §7.3: Bank-PIM (all-bank commands, one GEMV pass per query or token) pays off only
    where the ops' Op/B is ~1: OPT's plain multi-head attention, not GQA (Llama3: each KV head is
    read once per query head of its group) or MoE (Mixtral: one pass over an expert per token)."""
    def run(model: str, system: str, batch: int) -> StepResult:
        return estimate(model, system, batch, context=1536, precision="fp16", parallelism=Parallelism(tp=4))

    for batch in (64, 128):
        for model in ("mixtral-8x7b", "llama3-70b"):
            assert run(model, "duplex", batch).step_time_s < run(model, "duplex-bank-pim", batch).step_time_s
        llama = run("llama3-70b", "duplex-bank-pim", batch)
        assert all(r.unit != "pim" for r in llama.records if r.name == "attention")  # GQA 8: the xPU is faster
    # OPT: each request's attention runs in its own (pseudo-channel, rank) (round-robin; 320 of them), so
    # up to 320 requests the bank PIM's attention time does not grow with the batch; the Logic-PIM's does
    attention = {}
    for batch in (64, 128):
        for system in ("duplex", "duplex-bank-pim"):
            result = run("opt-66b", system, batch)
            attention[system, batch] = next(r.time_s for r in result.records if r.name == "attention")
            assert next(r.unit for r in result.records if r.name == "attention") == "pim"
            attention[system, batch, "step"] = result.step_time_s
    assert attention["duplex-bank-pim", 128] == pytest.approx(attention["duplex-bank-pim", 64])
    assert attention["duplex", 128] == pytest.approx(2 * attention["duplex", 64], rel=0.05)
    assert attention["duplex-bank-pim", 128, "step"] < attention["duplex", 128, "step"]  # Bank-PIM wins at 128


def test_bank_pim_device_is_a_duplex_pim_and_co_processes_experts_by_tokens() -> None:
    from decodex.core.errors import InfeasibleError
    from decodex.hw_models.bank_pim import BankPimUnit
    from decodex.hw_models.bank_pim_gemv import expert_shapes, token_seconds
    from decodex.hw_models.system import load_system
    from decodex.mappers.duplex import masked_experts, split_experts

    device = load_system("duplex-bank-pim").primary_device
    units = find_units(device)
    pim = device.units[units.pim]
    assert isinstance(pim, BankPimUnit) and (units.host, units.vector) == ("tensor", "simt")
    with pytest.raises(InfeasibleError, match="LogicPimUnit or BankPimUnit"):
        find_units(load_system("h100-sxm").primary_device)
    # Mixtral, 64 decodes: experts move to the bank PIM fewest tokens first; its half costs its tokens
    # x one token's GEMVs (no weights move); the pair is faster than either processor alone
    op = _op("mixtral-8x7b", Batch.decode(64, 1536), MoEExpertsOp, Parallelism(tp=4))
    mask = split_experts(device, units, op)
    assert mask is not None and mask.any() and not mask[op.expert_tokens > 0].all()
    moved, kept = np.where(mask, op.expert_tokens, 0), np.where(mask, 0, op.expert_tokens)
    assert (moved.max(axis=2) <= np.where(kept > 0, kept, np.inf).min(axis=2)).all()
    on_pim = pim.op_cost(masked_experts(op, mask, "pim"), device.memories).time_s
    assert on_pim == pytest.approx(float(moved.sum(axis=2).max(axis=1).mean()) * token_seconds(pim, expert_shapes(op)))
    on_xpu = op_cost_on(device, units.host, masked_experts(op, ~mask, "xpu")).time_s
    assert max(on_pim, on_xpu) < min(op_cost_on(device, u, op).time_s for u in (units.host, units.pim))


def test_roofline_view_shows_each_ops_opb_against_its_processors_ceiling() -> None:
    from decodex.sim.roofline import roofline_points

    r = estimate("mixtral-8x7b", "duplex", 32, context=2048, precision="fp16", parallelism=Parallelism(tp=4))
    points = roofline_points(r)
    pim = points[points["unit"] == "pim"]
    tensor = points[points["unit"] == "tensor"]
    assert not pim.empty and {"attention", "experts.pim"} & set(pim["name"])
    hbm = 3.35e12
    assert (pim["peak_bandwidth_bytes_per_s"] == 4 * hbm).all()  # the TSV path, not the external one
    assert (pim["ridge"] < 10).all() and (tensor["ridge"] > 200).all()
    assert (pim["arithmetic_intensity"] < 40).all()  # what the selector sent to the PIM has a low Op/B


def test_skewed_routing_reaches_the_step_and_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from decodex.app.cli import main
    from decodex.workloads.batch import Routing

    kwargs = dict(context=1024, precision="fp16", parallelism=Parallelism(tp=4))
    uniform = estimate("mixtral-8x7b", "h100-sxm", 32, **kwargs)
    skewed = estimate("mixtral-8x7b", "h100-sxm", 32, routing=Routing("zipf", skew=2.0), **kwargs)
    assert skewed.step_time_s != uniform.step_time_s
    assert main(["estimate", "--model", "mixtral-8x7b", "--system", "duplex", "--tp", "4", "--batch", "32",
                 "--precision", "fp16", "--routing", "zipf", "--skew", "2.0", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["step_time_s"] > 0


@pytest.mark.parametrize(("system", "devices", "mapper"), [("4x-duplex", 4, "duplex"), ("8x-duplex", 8, "duplex"),
                                                           ("2x8-duplex", 16, "duplex"), ("4x-h100-sxm", 4, "gpu"),
                                                           ("2x8-h100-sxm", 16, "gpu")])
def test_paper_deployments_load(system: str, devices: int, mapper: str) -> None:
    from decodex.hw_models.system import load_system

    spec = load_system(system)
    assert spec.device_count == devices and spec.default_mapper == mapper
    if devices > 8:
        assert spec.link_for_group(devices).name == "nic"  # crosses the 400 Gb/s links
