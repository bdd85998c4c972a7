"""The "Systems compared" and "Validation" pages (Streamlit AppTest: each page runs, a widget
changes what is shown) and the pure functions behind them (app/dashboard/compare.py)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from decodex.app.dashboard.compare import (
    band_frame,
    comparison_display,
    comparison_frame,
    filter_records,
    predicted_vs_measured_figure,
    reproduce_display,
    run_system,
    select_targets,
    summary_frame,
    target_groups,
    target_row,
    tp_candidates,
    with_relative_error,
)
from decodex.hw_models.system import load_system
from decodex.sim.estimate import estimate
from decodex.sim.pricing import replica_usd_per_hour, usd_per_million_tokens
from decodex.sim.simulate import simulate
from decodex.validation.bands import BandTable
from decodex.validation.records import error_summary, load_records
from decodex.validation.reproduce import load_targets, run_target
from decodex.workloads.parallelism import Parallelism

VIEWS = Path(__file__).resolve().parents[3] / "app/dashboard/views"
REPRODUCE_GROUP = "flightllm"  # the fastest group with several targets (about 0.1 s in all, passes and fails)
MODEL = "llama2-7b"


def _page(name: str) -> AppTest:
    return AppTest.from_file(str(VIEWS / name), default_timeout=120)


def _frame_with(at: AppTest, column: str) -> pd.DataFrame:
    """The first dataframe shown that has ``column``."""
    for element in at.dataframe:
        frame = element.value
        if column in frame.columns:
            return frame
    shown = [list(e.value.columns) for e in at.dataframe]
    raise AssertionError(f"no dataframe with a {column!r} column; shown: {shown}")


def _no_errors(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


# ----------------------------------------------------------------------------- Systems compared page


def test_systems_page_runs_with_defaults() -> None:
    at = _page("systems_compared.py").run()
    _no_errors(at)
    assert at.title[0].value == "Systems compared"
    table = _frame_with(at, "tokens/s per device")
    assert list(table["system"]) == at.multiselect(key="systems.systems").value
    assert {"h100-sxm", "neupims", "alveo-u280"} <= set(table["system"])
    assert (table["status"] != "cannot run").all(), table[["system", "reason"]]
    assert len(at.get("plotly_chart")) == 2


def test_systems_page_batch_changes_the_table() -> None:
    at = _page("systems_compared.py").run()
    before = _frame_with(at, "step time (ms)").set_index("system")
    at.number_input(key="systems.batch").set_value(96).run()
    _no_errors(at)
    after = _frame_with(at, "step time (ms)").set_index("system")
    assert after.loc["h100-sxm", "step time (ms)"] != before.loc["h100-sxm", "step time (ms)"]
    precision = at.selectbox(key="systems.precision").value
    context = at.number_input(key="systems.context").value
    expected = run_system(MODEL, "h100-sxm", 96, context, precision)
    assert after.loc["h100-sxm", "step time (ms)"] == pytest.approx(expected.step_time_s * 1e3)
    assert after.loc["h100-sxm", "parallelism"] == expected.parallelism


def test_systems_page_reports_a_system_that_cannot_run() -> None:
    at = _page("systems_compared.py").run()
    at.selectbox(key="systems.precision").set_value("bf16").run()
    _no_errors(at)  # shown in its row, not as an error
    table = _frame_with(at, "mapper (path)").set_index("system")
    assert table.loc["neupims", "status"] == "cannot run"
    assert any(w.value.startswith("**neupims** cannot run") and "bf16" in w.value for w in at.warning)  # the reason
    assert table.loc["h100-sxm", "status"] != "cannot run"


def test_reproduce_table_shows_pass_or_fail_per_target() -> None:
    at = _page("systems_compared.py").run()
    at.selectbox(key="systems.group").set_value(REPRODUCE_GROUP).run()
    at.button(key="systems.run_targets").click().run()
    _no_errors(at)
    table = _frame_with(at, "tolerance")
    expected = {t.name: run_target(t) for t in load_targets() if t.group == REPRODUCE_GROUP}
    assert sorted(table["target"]) == sorted(expected)
    for _, row in table.iterrows():
        assert row["result"] == expected[row["target"]].verdict
        assert row["source"] == expected[row["target"]].source


# ----------------------------------------------------------------------------- Validation page


def test_validation_page_runs_with_defaults() -> None:
    at = _page("validation_records.py").run()
    _no_errors(at)
    assert at.title[0].value == "Validation"
    summary = _frame_with(at, "MAPE (%)")
    records = load_records()
    assert summary["n"].sum() == len(records)
    assert len(at.get("plotly_chart")) == 3  # cases, error histogram, GPU decode steps
    assert at.get("download_button")
    e2e = _frame_with(at, "rest pred. (ms)")
    assert len(e2e) == 20 and e2e["error (%)"].abs().mean() <= 15.0


def test_validation_device_filter_changes_the_error_table() -> None:
    at = _page("validation_records.py").run()
    records = load_records()
    device = sorted(records["device"].unique())[-1]
    at.multiselect(key="validation.device").set_value([device]).run()
    _no_errors(at)
    summary = _frame_with(at, "MAPE (%)")
    assert set(summary["device"]) == {device}
    expected = error_summary(records[records["device"] == device])[device]
    assert sorted(summary["op kind"]) == sorted(expected)
    for _, row in summary.iterrows():
        assert row["MAPE (%)"] == pytest.approx(100 * expected[row["op kind"]]["mape"])
        assert row["n"] == expected[row["op kind"]]["n"]


# ----------------------------------------------------------------------------- compare.py: systems


def test_a_system_that_cannot_run_is_a_row_with_its_reason() -> None:
    row = run_system(MODEL, "neupims", 8, 512, "bf16")  # NeuPIMs' PIM has only an fp16 datapath
    assert row.status == "cannot run"
    assert "bf16" in row.reason
    assert math.isnan(row.step_time_s) and math.isnan(row.tokens_per_s)
    beyond = run_system(MODEL, "h100-sxm", 8, 10**6, "fp16")  # past the model's position window
    assert beyond.status == "cannot run" and "context" in beyond.reason
    frame = comparison_frame([row, run_system(MODEL, "h100-sxm", 8, 512, "fp16")])
    shown = comparison_display(frame)
    assert list(shown["status"]) == ["cannot run", "ok"]
    assert pd.isna(shown.loc[0, "devices"]) and shown.loc[1, "mapper (path)"] == "gpu (estimate)"
    # a device without a price says so (not "None"); memory reads "need of capacity"
    assert shown.loc[0, "$/hour"] == "no price" and shown.loc[1, "$/hour"] != "no price"
    assert shown.loc[1, "memory/device (GB)"].endswith(f"of {frame.loc[1, 'memory_capacity_bytes'] / 1e9:,.1f}")
    assert len(shown.columns) <= 12  # fits the page's width


def test_tokens_per_device_is_tokens_over_devices() -> None:
    row = run_system(MODEL, "step3-2a2f-h800", 32, 1024, "fp16")
    assert row.devices == load_system("step3-2a2f-h800").device_count
    assert row.tokens_per_s_per_device == pytest.approx(row.tokens_per_s / row.devices)
    assert row.parallelism.startswith("system roles")
    assert row.path == "simulate"  # the attention-FFN ping-pong runs through the engine


def test_auto_tp_is_the_smallest_degree_that_fits() -> None:
    batch, context = 256, 1024
    assert not estimate(MODEL, "h100-sxm", batch, context=context, precision="fp16").fits
    row = run_system(MODEL, "h100-sxm", batch, context, "fp16")
    assert row.status == "ok" and row.devices == 2 and row.parallelism == "tp2"
    expected = estimate(MODEL, "h100-sxm", batch, context=context, precision="fp16", parallelism=Parallelism(tp=2))
    assert row.path == "estimate"
    assert row.step_time_s == pytest.approx(expected.step_time_s)
    assert row.energy_per_token_j == pytest.approx(expected.energy_per_token_j)
    fixed = run_system(MODEL, "h100-sxm", batch, context, "fp16", tp=4)
    assert fixed.devices == 4


def test_fpga_runs_alone_and_a_point_that_does_not_fit_keeps_its_numbers() -> None:
    assert tp_candidates(load_system("alveo-u280")) == [1]  # no device-to-device link declared
    assert tp_candidates(load_system("4x-duplex")) == [1, 2, 4]
    row = run_system(MODEL, "alveo-u280", 32, 1024, "fp16")
    assert row.status == "does not fit"
    assert "GB" in row.reason and math.isfinite(row.step_time_s)


def test_neupims_interleaving_goes_through_the_engine() -> None:
    row = run_system(MODEL, "neupims", 256, 256, "fp16", tp=8)  # two sub-batches from batch 256
    expected = simulate(MODEL, "neupims", 256, context=256, precision="fp16", parallelism=Parallelism(tp=8))
    assert row.path == "simulate"
    assert row.step_time_s == pytest.approx(expected.step_time_s)


def test_prices() -> None:
    assert usd_per_million_tokens(3.6, 1000.0) == pytest.approx(1.0)  # 1e-3 USD/s over 1000 tokens/s
    assert math.isnan(usd_per_million_tokens(math.nan, 1000.0))
    assert math.isnan(usd_per_million_tokens(3.6, 0.0))
    h100 = load_system("h100-sxm")
    assert replica_usd_per_hour(h100, 2) == pytest.approx(2 * h100.primary_device.usd_per_hour)
    assert math.isnan(replica_usd_per_hour(load_system("neupims"), 1))  # a research design: no price
    step3 = load_system("step3-2a2f-h800")
    assert replica_usd_per_hour(step3, step3.device_count) == pytest.approx(
        sum(g.device.usd_per_hour * g.count for g in step3.groups))


# ----------------------------------------------------------------------------- compare.py: targets


def test_target_selection_and_rows() -> None:
    targets = load_targets()
    groups = target_groups(targets)
    assert groups[0] == "all" and set(groups[1:]) == {t.group for t in targets}
    assert select_targets(targets, "all") == targets
    chosen = select_targets(targets, REPRODUCE_GROUP)
    assert chosen and all(t.group == REPRODUCE_GROUP for t in chosen)
    assert select_targets(targets, chosen[0].name) == [chosen[0]]
    broken = target_row(chosen[0], None, "KeyError: 'x'")
    assert broken["result"] == "FAIL" and not broken["passed"] and broken["note"] == "KeyError: 'x'"
    shown = reproduce_display([broken])
    assert shown.loc[0, "simulated"] == "n/a" and shown.loc[0, "error"] == "n/a"


def test_a_reported_figure_is_a_grey_row_with_its_reason() -> None:
    from decodex.app.dashboard.compare import result_colour
    from decodex.validation.reproduce import TargetResult

    target = load_targets()[0]
    result = TargetResult(target.name, 3.0, 8.0, "x", 8.0 / 3.0 - 1.0, 0.2, False, "paper", reported=True,
                          reason="the artifact has no such baseline")
    row = target_row(target, result)
    assert row["result"] == "reported" and row["note"] == "the artifact has no such baseline"
    assert reproduce_display([row]).loc[0, "result"] == "reported"
    assert "#e9ecef" in result_colour("reported") and result_colour("pass") != result_colour("reported")


def test_reproduce_display_formats_relative_and_absolute_errors() -> None:
    target = load_targets()[0]
    base = target_row(target, None)
    rows = [{**base, "simulated": 1.1, "paper": 1.0, "unit": "x", "error": 0.1, "tolerance": 0.2, "absolute": False,
             "result": "pass"},
            {**base, "simulated": -25.0, "paper": -28.0, "unit": "%", "error": 3.0, "tolerance": 10.0,
             "absolute": True, "result": "pass"}]
    shown = reproduce_display(rows)
    assert list(shown["error"]) == ["+10.0 %", "+3 %"]
    assert list(shown["tolerance"]) == ["±20 %", "±10 %"]


# ----------------------------------------------------------------------------- compare.py: records


def _tiny_records() -> pd.DataFrame:
    return pd.DataFrame({
        "kernel": ["a", "b", "c", "d"], "op_kind": ["gemm", "gemm", "gemm", "elementwise"],
        "shape": ["", "", "", ""], "dtype": ["bf16"] * 4, "flops": [1e9, 2e9, 4e9, 0.0],
        "bytes": [1e6, 2e6, 4e6, 1e6], "measured_s": [1.0, 2.0, 4.0, 1.0], "predicted_s": [1.1, 1.8, 5.0, 0.5],
        "error": [0.0] * 4, "device": ["x", "x", "x", "y"], "device_kind": ["gpu"] * 4,
        "run_id": ["r1", "r1", "r2", "r3"],
    })


def test_summary_mape_is_the_hand_computation() -> None:
    summary = summary_frame(_tiny_records()).set_index(["device", "op_kind"])
    gemm = summary.loc[("x", "gemm")]
    # errors 1.1/1 - 1 = +0.1, 1.8/2 - 1 = -0.1, 5/4 - 1 = +0.25
    assert gemm["mape"] == pytest.approx((0.1 + 0.1 + 0.25) / 3)
    assert gemm["max_error"] == pytest.approx(0.25)
    assert gemm["bias"] == pytest.approx(0.1)
    assert gemm["n"] == 3
    assert summary.loc[("y", "elementwise"), "mape"] == pytest.approx(0.5)
    assert summary_frame(_tiny_records().iloc[:0]).empty


def test_filters_and_relative_errors() -> None:
    frame = _tiny_records()
    assert list(filter_records(frame, devices=["x"])["kernel"]) == ["a", "b", "c"]
    assert list(filter_records(frame, devices=["x"], runs=["r2"])["kernel"]) == ["c"]
    assert list(filter_records(frame, op_kinds=["elementwise"])["kernel"]) == ["d"]
    assert len(filter_records(frame)) == 4
    assert np.allclose(with_relative_error(frame)["rel_error"], [0.1, -0.1, 0.25, -0.5])


def test_band_factors_follow_the_error_quantiles() -> None:
    frame = _tiny_records()
    bands = band_frame(BandTable(frame)).set_index(["device", "op_kind"])
    matmul = bands.loc[("x", "matmul")]  # gemm records price the estimates' matmul ops
    errors = np.array([0.1, -0.1, 0.25])
    assert matmul["e_low"] == pytest.approx(np.quantile(errors, 0.05))
    assert matmul["e_high"] == pytest.approx(np.quantile(errors, 0.95))
    assert matmul["low_factor"] == pytest.approx(1 / (1 + matmul["e_high"]))
    assert matmul["high_factor"] == pytest.approx(1 / (1 + matmul["e_low"]))
    assert list(band_frame(BandTable(frame), devices=["y"])["device"]) == ["y"]


def test_scatter_is_log_log_with_one_identity_line_in_the_legend() -> None:
    figure = predicted_vs_measured_figure(_tiny_records(), facet_by_device=True)
    assert figure.layout.xaxis.type == "log" and figure.layout.yaxis.type == "log"
    lines = [t for t in figure.data if t.name == "y = x"]
    assert len(lines) == 2  # one per device panel
    assert sum(1 for t in lines if t.showlegend is not False) == 1
    assert lines[0].x[0] == lines[0].y[0] and lines[0].x[-1] == lines[0].y[-1]
