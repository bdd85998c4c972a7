"""The analytical estimate: hand-computed steps, physics bounds, memory fit and roofline data."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from decodex.core.errors import ArgumentError, InfeasibleError
from decodex.sim.estimate import estimate
from decodex.sim.roofline import roofline_figure, roofline_points
from decodex.workloads.batch import Batch
from decodex.workloads.builder import build_step_graph
from decodex.workloads.catalog import load_model
from decodex.workloads.parallelism import Parallelism
from decodex.workloads.precision import Precision
from tests.conftest import ideal_system

SUMMARY = {"step_time_s", "tokens_per_s", "energy_per_token_j", "weight_bytes", "kv_bytes",
           "memory_required_bytes", "fits", "reason"}


def test_step_time_is_the_sum_of_per_op_rooflines_by_hand(ideal) -> None:  # type: ignore[no-untyped-def]
    model = load_model("llama2-7b")
    batch = Batch.decode(4, 511)
    result = estimate(model, ideal, batch)
    graph = build_step_graph(model, batch)
    expected = 0.0
    for template, op in graph.ops():
        peak = 100e12 if op.kind in ("matmul", "attention") else 20e12
        expected += max(op.flops / peak, op.bytes / 1e12) * template.repeat
    assert result.step_time_s == pytest.approx(expected, rel=1e-12)
    assert result.tokens_per_s == pytest.approx(4 / expected)
    assert set(result.summary()) >= SUMMARY


def test_decode_is_bounded_by_reading_the_weights(ideal) -> None:  # type: ignore[no-untyped-def]
    model = load_model("llama3-8b")
    result = estimate(model, ideal, 1, context=1)
    weights = 2 * model.parameter_count()
    embedding = 2 * model.vocab_size * model.hidden_size  # only one row of it is read per token
    assert result.step_time_s >= (weights - embedding) / 1e12
    assert result.weight_bytes == pytest.approx(weights)


def test_energy_is_dynamic_plus_idle() -> None:
    system = ideal_system(**{"device.power.idle_w": 50.0})
    result = estimate("llama2-7b", system, 2, context=100)
    dynamic = sum(r.energy_j * r.repeat for r in result.records)
    assert result.energy_j == pytest.approx(dynamic + 50.0 * result.step_time_s)
    assert result.energy_per_token_j == pytest.approx(result.energy_j / 2)


@settings(max_examples=15, deadline=None)
@given(factor=st.floats(1.0, 8.0), batch=st.integers(1, 256), context=st.integers(1, 4000),
       which=st.sampled_from(["memories.hbm.bandwidth_bytes_per_s", "units.tensor.peak_flops.bf16",
                              "links.nvlink.bandwidth_bytes_per_s"]))
def test_more_bandwidth_or_compute_never_slows_a_step(factor: float, batch: int, context: int, which: str) -> None:
    base_value = {"memories.hbm.bandwidth_bytes_per_s": 1e12, "units.tensor.peak_flops.bf16": 100e12,
                  "links.nvlink.bandwidth_bytes_per_s": 100e9}[which]
    par = Parallelism(tp=4)
    base = estimate("llama3-8b", ideal_system(), batch, context=context, parallelism=par)
    faster = estimate("llama3-8b", ideal_system(**{which: base_value * factor}), batch, context=context,
                      parallelism=par)
    assert faster.step_time_s <= base.step_time_s * (1 + 1e-12)


def test_longer_context_and_bigger_batch_cost_more(ideal) -> None:  # type: ignore[no-untyped-def]
    short = estimate("llama3-8b", ideal, 8, context=512)
    long = estimate("llama3-8b", ideal, 8, context=8000)
    assert long.step_time_s > short.step_time_s and long.kv_bytes > short.kv_bytes
    big = estimate("llama3-8b", ideal, 64, context=512)
    assert big.step_time_s >= short.step_time_s and big.tokens_per_s > short.tokens_per_s


def test_tensor_parallel_splits_memory_and_adds_communication() -> None:
    one = estimate("llama3-70b", "h100-sxm", 64, context=2048)
    eight = estimate("llama3-70b", "h100-sxm", 64, context=2048, parallelism=Parallelism(tp=8))
    assert not one.fits and "needs" in one.reason and "h100-sxm has 84.6 GB for them" in one.reason
    assert eight.fits and eight.reason == ""
    assert eight.weight_bytes == pytest.approx(one.weight_bytes / 8, rel=0.01)
    assert eight.step_time_s < one.step_time_s
    assert (eight.ops["kind"] == "collective").any()


def test_pipeline_stages_hold_a_share_of_the_layers() -> None:
    one = estimate("llama2-13b", "a100-80g", 8, context=512)
    four = estimate("llama2-13b", "a100-80g", 8, context=512, parallelism=Parallelism(pp=4))
    assert four.weight_bytes < one.weight_bytes / 3
    assert four.step_time_s > one.step_time_s  # no micro-batches: stages run one after another plus sends


def test_fp8_runs_faster_than_bf16_on_hopper() -> None:
    bf16 = estimate("llama3-70b", "h100-sxm", 32, context=1024, parallelism=Parallelism(tp=4))
    fp8 = estimate("llama3-70b", "h100-sxm", 32, context=1024, parallelism=Parallelism(tp=4), precision="fp8")
    assert fp8.step_time_s < bf16.step_time_s and fp8.weight_bytes == pytest.approx(bf16.weight_bytes / 2, rel=1e-3)


def test_moe_and_mla_models_estimate() -> None:
    result = estimate("deepseek-v3", "h200", 64, context=4096, precision="fp8",
                      parallelism=Parallelism(tp=8, ep=8))
    assert result.fits and math.isfinite(result.step_time_s)
    assert set(result.ops["block"]) >= {"attention", "moe", "ffn", "head"}


def test_errors_for_bad_inputs(ideal) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ArgumentError):
        estimate("llama2-7b", ideal, 0)
    with pytest.raises(ArgumentError, match="max_position"):
        estimate("llama2-7b", ideal, 1, context=10_000)
    with pytest.raises(InfeasibleError):
        estimate("llama2-7b", "h100-sxm", 1, parallelism=Parallelism(tp=3))
    with pytest.raises(ArgumentError, match="unknown mapper"):
        estimate("llama2-7b", ideal, 1, mapper="warp")


def test_roofline_points_lie_under_their_ceilings() -> None:
    result = estimate("llama3-8b", "h100-sxm", 16, context=1024)
    points = roofline_points(result)
    assert not points.empty
    roof = (points["arithmetic_intensity"] * points["peak_bandwidth_bytes_per_s"]).combine(points["peak_flops"], min)
    assert (points["attained_flops"] <= roof * (1 + 1e-9)).all()
    fig = roofline_figure(result)
    assert fig.layout.xaxis.type == "log" and len(fig.data) >= 2


def test_ops_frame_has_unit_suffixed_columns() -> None:
    frame = estimate("llama3-8b", "h100-sxm", 4, context=100).ops
    assert {"name", "kind", "unit", "flops", "bytes", "arithmetic_intensity", "time_s", "bound",
            "energy_j"} <= set(frame.columns)
    assert frame["time_s"].gt(0).all()


def test_precision_argument_accepts_objects(ideal) -> None:  # type: ignore[no-untyped-def]
    a = estimate("llama2-7b", ideal, 1, context=10, precision=Precision.parse("w4a16"))
    b = estimate("llama2-7b", ideal, 1, context=10, precision="w4a16")
    assert a.step_time_s == b.step_time_s and a.precision == "w4a16"


@settings(max_examples=20, deadline=None)
@given(model=st.sampled_from(["llama3-8b", "mixtral-8x7b", "deepseek-v3", "opt-6.7b"]),
       system=st.sampled_from(["h100-sxm", "a100-80g", "h20", "cpu-host"]), batch=st.integers(1, 128),
       context=st.integers(1, 2000), tp=st.sampled_from([1, 2, 8]))
def test_every_op_respects_its_roofline(model: str, system: str, batch: int, context: int, tp: int) -> None:
    cfg = load_model(model)
    ep = tp if cfg.moe is not None else 1
    assume(system != "cpu-host" or tp == 1)  # a single host has no link to a second one
    result = estimate(cfg, system, batch, context=context, parallelism=Parallelism(tp=tp, ep=ep))
    for r in result.records:
        if r.kind == "collective":
            assert r.time_s > 0 and r.bound == "network"
            continue
        floor = max(r.flops / r.peak_flops if r.flops else 0.0, r.bytes / r.peak_bandwidth_bytes_per_s)
        assert r.time_s >= floor * (1 - 1e-12)
