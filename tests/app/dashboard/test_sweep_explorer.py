"""Sweep explorer page (Streamlit AppTest) and its pure helpers (app/dashboard/sweep_view.py)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from decodex.app.dashboard.sweep_view import (
    MAX_POINTS,
    check_point_count,
    count_points,
    default_direction,
    frame_to_csv_bytes,
    frame_to_parquet_bytes,
    parse_space_bytes,
    plot_rows,
    progress_chunk_size,
    read_sweep_dir,
)
from decodex.core.errors import DecodexError
from decodex.examples import list_examples
from decodex.explore.pareto import pareto_front
from decodex.explore.runner import run_sweep
from decodex.explore.sweep_space import load_space

PAGE = str(Path(__file__).resolve().parents[3] / "app/dashboard/views/sweep_explorer.py")
EXAMPLE = "h100-batch-context"  # the smallest estimate example (64 points, well under a second)
TINY: dict[str, Any] = {"sweep": {
    "name": "tiny", "mode": "estimate", "sampling": "grid",
    "fixed": {"model": "llama3-8b", "system": "h100-sxm", "precision": "bf16"},
    "axes": {"batch": [1, 16, 64, 256], "context": [512, 4096, 131072]},  # 131072 is beyond the model's window
}}


def _page() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.run()
    assert not at.exception
    return at


def _run_example(at: AppTest) -> AppTest:
    at.selectbox(key="sweep.example").set_value(EXAMPLE).run()
    at.button(key="sweep.run").click().run()
    assert not at.exception
    assert not at.error, [e.value for e in at.error]
    return at


def _front_table(at: AppTest) -> pd.DataFrame:
    """The Pareto-optimal rows as shown (the first table of the page)."""
    return at.dataframe[0].value


def _objectives(at: AppTest) -> dict[str, str]:
    x, y = at.selectbox(key="sweep.x").value, at.selectbox(key="sweep.y").value
    return {x: at.radio(key=f"sweep.objective.{x}").value, y: at.radio(key=f"sweep.objective.{y}").value}


def _brute_front_ids(frame: pd.DataFrame, objectives: dict[str, str]) -> set[str]:
    """point_id of the feasible rows that no feasible row dominates, by comparing every pair."""
    rows = frame[frame["feasible"]]
    values = rows[list(objectives)].to_numpy(dtype=float)
    cost = np.where([d == "max" for d in objectives.values()], -values, values)
    ids = set()
    for i in range(len(cost)):
        if np.isnan(cost[i]).any():
            continue
        no_worse = (cost <= cost[i]).all(axis=1)
        better = (cost < cost[i]).any(axis=1)
        if not (no_worse & better).any():
            ids.add(rows["point_id"].iloc[i])
    return ids


def _check_front(at: AppTest, frame: pd.DataFrame) -> set[str]:
    """The shown front is exactly the non-dominated feasible rows of ``frame``; returns its ids."""
    shown = _front_table(at)
    ids = set(shown["point_id"])
    assert len(ids) == len(shown) > 0
    assert ids == _brute_front_ids(frame, _objectives(at))
    return ids


def test_page_runs_with_defaults() -> None:
    at = _page()
    assert not at.error
    assert at.title[0].value == "Sweep explorer"
    assert at.radio(key="sweep.source").value == "Run a small sweep"
    assert at.selectbox(key="sweep.example").value in list_examples()
    assert any("Press the button" in i.value for i in at.info)


def test_run_smallest_example_shows_rows_and_a_true_front() -> None:
    at = _run_example(_page())
    frame = at.session_state["sweep.result"].frame
    assert len(frame) == count_points(load_space(list_examples()[EXAMPLE]))
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Points"] == f"{len(frame):,}"
    assert metrics["Infeasible"] == f"{int((~frame['feasible']).sum()):,}"
    ids = _check_front(at, frame)
    assert metrics["Pareto-optimal"] == f"{len(ids):,}"
    # the chart: the front highlighted, and hover naming the design point's inputs
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    traces = {t["name"]: t for t in spec["data"]}
    assert len(traces["Pareto front"]["customdata"]) == len(ids)
    inputs = load_space(list_examples()[EXAMPLE]).parameters
    for trace in traces.values():
        assert all(name in trace["hovertemplate"] for name in inputs)
    # the infeasible rows are listed with their reason
    infeasible = next(d.value for d in at.dataframe
                      if {"model", "reason"} <= set(d.value.columns) and "feasible" not in d.value.columns)
    assert len(infeasible) == int((~frame["feasible"]).sum()) > 0
    assert infeasible["reason"].str.len().gt(0).all()


def test_changing_objective_or_y_axis_changes_the_front() -> None:
    at = _run_example(_page())
    frame = at.session_state["sweep.result"].frame
    first = _check_front(at, frame)
    y = at.selectbox(key="sweep.y").value
    flipped = "max" if at.radio(key=f"sweep.objective.{y}").value == "min" else "min"
    at.radio(key=f"sweep.objective.{y}").set_value(flipped).run()
    assert not at.exception
    second = _check_front(at, frame)
    assert second != first
    at.radio(key=f"sweep.objective.{y}").set_value("min" if flipped == "max" else "max").run()
    at.selectbox(key="sweep.y").set_value("energy_per_token_j").run()
    assert not at.exception
    third = _check_front(at, frame)
    assert third != first


def test_open_sweep_directory_shows_the_same_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DECODEX_SWEEPS_ROOT", str(tmp_path))
    out = tmp_path / "tiny"
    written = run_sweep(TINY, out=out, chunk_size=4)
    assert len(list((out / "parts").glob("*.parquet"))) > 1
    at = _page()
    at.radio(key="sweep.source").set_value("Open a sweep directory").run()
    at.text_input(key="sweep.dir").input(str(out)).run()
    assert not at.exception
    assert not at.error, [e.value for e in at.error]
    shown = next(d.value for d in at.dataframe if len(d.value) == len(written) and "point_id" in d.value.columns)
    shown = shown[list(written.columns)].sort_values("point_id").reset_index(drop=True)
    expected = written.sort_values("point_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(shown, expected, check_dtype=False)
    assert {m.label: m.value for m in at.metric}["Infeasible"] == f"{int((~written['feasible']).sum()):,}"
    _check_front(at, written)


@pytest.mark.parametrize("path_kind", ["missing", "empty", "file"])
def test_bad_sweep_directory_is_a_message(tmp_path: Path, path_kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DECODEX_SWEEPS_ROOT", str(tmp_path))
    target = tmp_path / "nothing-here"
    if path_kind == "empty":
        target.mkdir()
    elif path_kind == "file":
        target.write_text("not a sweep")
    at = _page()
    at.radio(key="sweep.source").set_value("Open a sweep directory").run()
    at.text_input(key="sweep.dir").input(str(target)).run()
    assert not at.exception
    assert len(at.error) == 1
    assert "decodex sweep" in at.error[0].value or "no such directory" in at.error[0].value
    assert not (target / "parts").exists()  # opening a directory writes nothing
    if path_kind == "missing":
        assert not target.exists()


@pytest.mark.parametrize(("text", "message"), [
    ("[sweep\nname = ", "not valid TOML"),
    ('[sweep]\nmode = "fast"\n[sweep.fixed]\nmodel = "llama3-8b"\nsystem = "h100-sxm"\n', "sweep.mode"),
    ('[sweep]\n[sweep.fixed]\nmodel = "/etc/passwd"\nsystem = "h100-sxm"\n', "sweep.fixed.model"),
])
def test_bad_space_toml_is_a_message(text: str, message: str) -> None:
    at = _page()
    at.radio(key="sweep.space_kind").set_value("Paste or upload a space TOML").run()
    at.text_area(key="sweep.toml_text").input(text).run()
    assert not at.exception
    assert len(at.error) == 1
    assert message in at.error[0].value
    assert not any(b.key == "sweep.run" for b in at.button)


def test_too_large_space_is_refused() -> None:
    samples = MAX_POINTS["estimate"] + 1
    text = (f'[sweep]\nname = "big"\nsampling = "lhs"\nsamples = {samples}\n[sweep.fixed]\nmodel = "llama3-8b"\n'
            'system = "h100-sxm"\n[sweep.axes]\nbatch = {low = 1, high = 512, integer = true}\n')
    at = _page()
    at.radio(key="sweep.space_kind").set_value("Paste or upload a space TOML").run()
    at.text_area(key="sweep.toml_text").input(text).run()
    assert not at.exception
    assert len(at.error) == 1
    assert f"{samples:,} points" in at.error[0].value and "decodex sweep" in at.error[0].value
    assert not any(b.key == "sweep.run" for b in at.button)


def test_pasted_space_runs() -> None:
    at = _page()
    at.radio(key="sweep.space_kind").set_value("Paste or upload a space TOML").run()
    text = ('[sweep]\nname = "pasted"\n[sweep.fixed]\nmodel = "llama3-8b"\nsystem = "h100-sxm"\n'
            "[sweep.axes]\nbatch = [1, 8, 64]\n")
    at.text_area(key="sweep.toml_text").input(text).run()
    at.button(key="sweep.run").click().run()
    assert not at.exception and not at.error
    assert len(at.session_state["sweep.result"].frame) == 3
    at.radio(key="sweep.space_kind").set_value("Example space").run()  # the last run stays, marked as such
    assert not at.exception
    assert any("Showing the last run (pasted)" in i.value for i in at.info)
    assert {m.label: m.value for m in at.metric}["Points"] == "3"


def test_download_bytes_round_trip() -> None:
    at = _run_example(_page())
    assert {b.key for b in at.get("download_button")} >= {"sweep.download_csv", "sweep.download_parquet"}
    frame = at.session_state["sweep.result"].frame
    back = pd.read_parquet(io.BytesIO(frame_to_parquet_bytes(frame)))
    pd.testing.assert_frame_equal(back, frame)
    csv = pd.read_csv(io.BytesIO(frame_to_csv_bytes(frame)), keep_default_na=False)
    assert list(csv.columns) == list(frame.columns) and len(csv) == len(frame)
    np.testing.assert_allclose(csv["tpot_s"].to_numpy(dtype=float), frame["tpot_s"].to_numpy(dtype=float))


def test_helpers() -> None:
    space = load_space(TINY)
    assert count_points(space) == 12 == check_point_count(space)
    assert progress_chunk_size(12, "estimate") == 1 and progress_chunk_size(2000, "estimate") == 100
    assert default_direction("tpot_s") == "min" and default_direction("tokens_per_s_per_device") == "max"
    assert default_direction("energy_per_token_j") == "min" and default_direction("usd_per_mtok") == "min"
    with pytest.raises(DecodexError, match="larger than"):
        parse_space_bytes(b"#" * (300 * 1024))
    with pytest.raises(DecodexError, match="UTF-8"):
        parse_space_bytes(b"\xff\xfe[sweep]")
    with pytest.raises(DecodexError, match="no such directory"):
        read_sweep_dir("/nonexistent/sweep/dir")
    # drawing a sample of the rows keeps the whole front
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.random(500), "b": rng.random(500), "feasible": True})
    objectives = {"a": "max", "b": "min"}
    front = pareto_front(frame, objectives)
    shown = plot_rows(frame, front, limit=50)
    assert len(shown) == 50
    assert set(pareto_front(shown, objectives).index) == set(front.index)
