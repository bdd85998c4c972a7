"""The Timeline and Serving pages of the dashboard (Streamlit AppTest) and their pure chart and data
functions (app/dashboard/timeline_charts.py, app/dashboard/serving_charts.py)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from decodex.app.dashboard.serving_charts import (
    ServingPoint,
    ecdf,
    latency_figure,
    latency_metrics,
    sweep_figure,
    sweep_frame,
    sweep_rates,
)
from decodex.app.dashboard.timeline_charts import (
    busy_figure,
    busy_share,
    busy_table,
    cap_tasks,
    gantt_figure,
    layer_of,
    layer_range,
    layer_window_s,
    step_times,
    task_frame,
    tasks_in_window,
    timeline_span_s,
    trace_json,
    track_order,
)
from decodex.core.errors import DecodexError
from decodex.sim.simulate import SimResult, simulate
from decodex.workloads.catalog import CATALOG_DIR
from decodex.workloads.parallelism import Parallelism

VIEWS = Path(__file__).resolve().parents[3] / "app/dashboard/views"


def _page(name: str) -> AppTest:
    return AppTest.from_file(str(VIEWS / name), default_timeout=120)


def _metric(at: AppTest, label: str) -> str:
    values = [m.value for m in at.metric if m.label == label]
    assert values, f"no metric {label!r}: {[m.label for m in at.metric]}"
    return values[0]


# --- Timeline page ---------------------------------------------------------------------------

def test_timeline_page_runs_with_defaults() -> None:
    at = _page("timeline.py").run()
    assert not at.exception
    assert not at.error
    assert _metric(at, "Simulated step time").endswith(" ms")
    assert _metric(at, "Analytical step time").endswith(" ms")
    assert int(_metric(at, "Tasks simulated").replace(",", "")) > 0
    assert at.get("download_button"), "no trace download"
    assert any("ui.perfetto.dev" in c.value for c in at.caption)
    # a layer window and the other row layout draw without error
    at.radio(key="timeline.window_by").set_value("time").run()
    at.selectbox(key="timeline.rows").set_value("track and stream").run()
    at.selectbox(key="timeline.color_by").set_value("stream").run()
    assert not at.exception


def test_timeline_batch_changes_the_step_time() -> None:
    at = _page("timeline.py").run()
    before = _metric(at, "Simulated step time")
    at.number_input(key="timeline.batch").set_value(64).run()
    assert not at.exception
    assert _metric(at, "Simulated step time") != before


def test_timeline_folded_run_shows_fewer_tasks() -> None:
    at = _page("timeline.py").run()
    full = int(_metric(at, "Tasks simulated").replace(",", ""))
    at.checkbox(key="timeline.unfold").set_value(False).run()
    assert not at.exception
    assert int(_metric(at, "Tasks simulated").replace(",", "")) < full


def test_timeline_bad_input_is_an_error_message() -> None:
    at = _page("timeline.py").run()
    at.selectbox(key="timeline.precision").set_value("bf16").run()  # the NeuPIMs PIM has no bf16 datapath
    assert not at.exception
    assert at.error and "bf16" in at.error[0].value
    assert not at.metric


# --- Serving page ----------------------------------------------------------------------------

def test_serving_page_runs_with_defaults() -> None:
    at = _page("serving.py").run()
    assert not at.exception
    assert not at.error
    for label in ("Throughput (tokens/s)", "Goodput (req/s)", "TTFT mean", "TTFT p50", "TTFT p99", "TPOT mean",
                  "TPOT p50", "TPOT p99"):
        value = _metric(at, label)
        assert value != "n/a" and len(value) <= 9  # a tile never cuts its number (units in the label, SI prefixes)


def test_serving_rate_changes_the_throughput_and_the_sweep_plots() -> None:
    at = _page("serving.py")
    at.run()
    at.number_input(key="serving.requests").set_value(30).run()
    before = _metric(at, "Throughput (tokens/s)")
    at.number_input(key="serving.rate").set_value(20.0).run()
    assert not at.exception
    assert _metric(at, "Throughput (tokens/s)") != before
    at.button(key="serving.sweep").click().run()
    assert not at.exception
    assert not at.error
    assert any(c.value.startswith("Peak goodput") for c in at.caption)
    at.radio(key="serving.dist").set_value("histogram").run()  # the sweep stays for the same settings
    assert any(c.value.startswith("Peak goodput") for c in at.caption)
    at.number_input(key="serving.seed").set_value(1).run()
    assert any("run it again" in c.value for c in at.caption)


def test_serving_bad_input_is_an_error_message() -> None:
    at = _page("serving.py")
    at.run()
    assert any(c.value.startswith("Layout tp2:") for c in at.sidebar.caption)  # auto: llama3-70b on two H100s
    at.checkbox(key="serving.auto").uncheck().run()
    at.number_input(key="serving.tp").set_value(1).run()  # llama3-70b does not fit one H100
    assert not at.exception
    assert at.error
    assert not at.metric


# --- timeline_charts -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def neupims_run() -> SimResult:
    """NeuPIMs, two sub-batches overlapping on the NPU and the PIM, every layer simulated."""
    return simulate("gpt3-7b", "neupims", 256, context=512, precision="fp16", parallelism=Parallelism(tp=4),
                    fold=False)


def test_task_frame_holds_every_event_in_start_order(neupims_run: SimResult) -> None:
    frame = task_frame(neupims_run)
    assert len(frame) == len(neupims_run.timeline)
    assert frame["start_s"].is_monotonic_increasing
    assert np.allclose(frame["duration_s"], frame["end_s"] - frame["start_s"])
    assert set(track_order(frame)) == {e.track for e in neupims_run.timeline}
    assert layer_range(frame) == (0, 31)  # gpt3-7b: 32 layers


def test_tasks_in_window_are_the_overlapping_events(neupims_run: SimResult) -> None:
    frame = task_frame(neupims_run)
    start, end = 0.3 * neupims_run.step_time_s, 0.35 * neupims_run.step_time_s
    expected = sorted((e.track, e.label, e.stream, e.repeat, e.start_s) for e in neupims_run.timeline
                      if e.end_s >= start and e.start_s <= end)
    window = tasks_in_window(frame, start, end)
    got = sorted(zip(window["track"], window["label"], window["stream"], window["repeat"], window["start_s"],
                     strict=True))
    assert got == expected
    assert 0 < len(window) < len(frame)
    with pytest.raises(ValueError):
        tasks_in_window(frame, end, start)


def test_gantt_draws_one_bar_per_task_on_its_track(neupims_run: SimResult) -> None:
    frame = task_frame(neupims_run)
    window = tasks_in_window(frame, 0.0, 0.2 * neupims_run.step_time_s)
    figure = gantt_figure(window, color_by="label", window_s=(0.0, 0.2 * neupims_run.step_time_s))
    bars = [(y, round(b, 9), round(x, 9)) for trace in figure.data
            for y, b, x in zip(trace.y, trace.base, trace.x, strict=True)]
    expected = [(t, round(s * 1e3, 9), round(d * 1e3, 9))
                for t, s, d in zip(window["track"], window["start_s"], window["duration_s"], strict=True)]
    assert sorted(bars) == sorted(expected)
    assert {trace.name for trace in figure.data} == set(window["label"])
    by_stream = gantt_figure(window, color_by="block", rows="track and stream")
    assert {y.split(" · ")[1] for trace in by_stream.data for y in trace.y} == set(window["stream"])
    with pytest.raises(ValueError):
        gantt_figure(window, color_by="colour")


def test_cap_tasks_keeps_the_earliest(neupims_run: SimResult) -> None:
    frame = task_frame(neupims_run)
    kept, dropped = cap_tasks(frame, 100)
    assert len(kept) == 100 and dropped == len(frame) - 100
    assert kept["start_s"].max() <= frame.drop(kept.index)["start_s"].min()
    assert cap_tasks(frame, len(frame))[1] == 0


def test_busy_share_is_a_fraction_and_matches_the_engine(neupims_run: SimResult) -> None:
    frame = task_frame(neupims_run)
    start, end = timeline_span_s(frame)
    assert start == 0.0 and end == pytest.approx(neupims_run.step_time_s)
    whole = busy_share(frame, 0.0, neupims_run.step_time_s)
    for track, share in whole.items():
        assert 0.0 <= share <= 1.0
        assert share == pytest.approx(neupims_run.utilization[track], rel=1e-9)
    part = busy_share(frame, 0.1 * end, 0.2 * end)
    assert ((part >= 0) & (part <= 1)).all()
    # the PIM and the systolic array are busy at once somewhere: that is the NeuPIMs overlap
    assert whole["d0.pim"] + whole["d0.systolic"] > 1.0
    table = busy_table(neupims_run, whole, order=track_order(frame))
    assert list(table["track"]) == track_order(frame)
    assert np.allclose(table["step_share"], table["window_share"])
    assert len(busy_figure(table).data) == 2


def test_busy_share_of_hand_made_intervals() -> None:
    frame = pd.DataFrame({"track": ["a", "a", "a", "b"], "start_s": [0.0, 0.5, 3.0, 0.0],
                          "end_s": [1.0, 2.0, 4.0, 10.0]})
    share = busy_share(frame, 0.0, 4.0)
    assert share["a"] == pytest.approx(3.0 / 4.0)  # [0, 2] and [3, 4]; the overlap counts once
    assert share["b"] == pytest.approx(1.0)


def test_layers_and_windows(neupims_run: SimResult) -> None:
    assert layer_of("dense_layer@0", 5) == 5
    assert layer_of("moe_layer@3", 2) == 5
    assert layer_of("send@16", 0) is None
    assert layer_of("embedding", 0) is None and layer_of("round", 3) is None
    frame = task_frame(neupims_run)
    start, end = layer_window_s(frame, 3, 4)
    in_layers = frame[frame["layer"].isin([3, 4])]
    assert start == in_layers["start_s"].min() and end == in_layers["end_s"].max()
    assert set(in_layers.index) <= set(tasks_in_window(frame, start, end).index)
    with pytest.raises(ValueError):
        layer_window_s(frame, 40, 41)


def test_step_times_and_trace(neupims_run: SimResult) -> None:
    times = step_times(neupims_run)
    assert times["simulated_s"] == neupims_run.step_time_s
    assert times["analytical_s"] == neupims_run.analytical_step_time_s
    assert times["change"] == pytest.approx(neupims_run.step_time_s / neupims_run.analytical_step_time_s - 1)
    assert times["change"] < 0  # sub-batch interleaving hides work that the closed form adds up
    trace = json.loads(trace_json(neupims_run))
    spans = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert len(spans) == len(neupims_run.timeline)


# --- serving_charts --------------------------------------------------------------------------

SMALL = ServingPoint(model="llama3-8b", system="h100-sxm", tp=1, requests=40, rate=10.0)


@pytest.fixture(scope="module")
def sweep() -> pd.DataFrame:
    return sweep_frame([(rate, SMALL.at_rate(rate).run()) for rate in sweep_rates(SMALL.rate)])


def test_sweep_rates() -> None:
    assert sweep_rates(4.0) == [1.0, 2.0, 4.0, 6.0, 8.0]
    assert sweep_rates(3.0, (1.0, 1.0, 2.0)) == [3.0, 6.0]
    with pytest.raises(ValueError):
        sweep_rates(0.0)


def test_sweep_throughput_is_bounded_by_the_offered_load(sweep: pd.DataFrame) -> None:
    assert list(sweep["rate_per_s"]) == sweep_rates(SMALL.rate)
    assert (sweep["throughput_tokens_per_s"] <= sweep["offered_tokens_per_s"] * (1 + 1e-12)).all()
    assert (sweep["goodput_requests_per_s"] <= sweep["request_throughput_per_s"] * (1 + 1e-12)).all()
    assert ((sweep["slo_attainment"] >= 0) & (sweep["slo_attainment"] <= 1)).all()
    # the same requests, compressed in time: more offered load, more throughput (continuous batching)
    assert sweep["nominal_tokens_per_s"].is_monotonic_increasing
    assert sweep["offered_tokens_per_s"].is_monotonic_increasing
    assert sweep["throughput_tokens_per_s"].is_monotonic_increasing
    figure = sweep_figure(sweep)
    assert [list(t.x) for t in figure.data] == [list(sweep["rate_per_s"])] * 5
    assert list(figure.data[0].y) == list(sweep["throughput_tokens_per_s"])


def test_goodput_falls_as_the_slo_tightens() -> None:
    loose = SMALL.run()
    tight = ServingPoint(**{**SMALL.__dict__, "slo_tpot_s": 1e-4}).run()
    assert tight.goodput_requests_per_s <= loose.goodput_requests_per_s
    assert tight.goodput_requests_per_s == 0.0  # no decode step of llama3-8b takes 0.1 ms
    assert loose.throughput_tokens_per_s == tight.throughput_tokens_per_s  # SLOs change no schedule


def test_latency_metrics_and_figures() -> None:
    result = SMALL.run()
    lat = latency_metrics(result)
    ttft, tpot = result.ttft_s, result.tpot_s[np.isfinite(result.tpot_s)]
    assert lat["ttft_mean"] == pytest.approx(ttft.mean())
    assert lat["ttft_p50"] == pytest.approx(np.median(ttft))
    assert lat["tpot_p99"] == pytest.approx(np.percentile(tpot, 99))
    assert lat["ttft_p50"] <= lat["ttft_p99"] and lat["tpot_p50"] <= lat["tpot_p99"]
    x, y = ecdf(np.array([3.0, np.nan, 1.0, 2.0]))
    assert list(x) == [1.0, 2.0, 3.0] and list(y) == pytest.approx([1 / 3, 2 / 3, 1.0])
    curve = latency_figure(result.ttft_s, result.slo_ttft_s, "TTFT")
    assert np.allclose(np.sort(curve.data[0].x), np.sort(ttft) * 1e3)
    assert curve.data[0].y[-1] == 1.0
    histogram = latency_figure(result.tpot_s, result.slo_tpot_s, "TPOT", kind="histogram")
    assert len(histogram.data[0].x) == tpot.size
    with pytest.raises(ValueError):
        latency_figure(result.ttft_s, 1.0, "TTFT", kind="violin")


def test_serving_point_reports_bad_input() -> None:
    with pytest.raises(DecodexError):
        ServingPoint(dataset="nope").run()
    with pytest.raises(DecodexError):
        ServingPoint(requests=10**6).run()
    assert SMALL.at_rate(7.0).rate == 7.0 and SMALL.at_rate(7.0).requests == SMALL.requests


def test_serving_point_runs_uploaded_specs_as_the_catalog_ones() -> None:
    """An uploaded config.json and a device file extending a catalog device serve exactly as the
    catalog model and device; a bad upload is a DecodexError naming the file."""
    base = dataclasses.replace(SMALL, model="llama2-7b", system="h100-sxm", tp=1)
    uploaded = dataclasses.replace(base, model="llama2-7b.json",
                                   model_text=(CATALOG_DIR / "llama2-7b.json").read_text(),
                                   system="h100-copy.toml",
                                   system_text='[device]\nname = "h100-copy"\nextends = "h100-sxm"\n')
    a, b = base.run(), uploaded.run()
    assert b.throughput_tokens_per_s == pytest.approx(a.throughput_tokens_per_s, rel=1e-12)
    np.testing.assert_allclose(b.ttft_s, a.ttft_s, rtol=1e-12)
    with pytest.raises(DecodexError, match=r"bad\.json"):
        dataclasses.replace(base, model="bad.json", model_text="{not json").run()
