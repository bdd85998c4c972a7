"""Resuming a sweep directory: its identity (space, mode, version) is checked, constraints are re-applied
on read, ``fresh`` starts over, and an interrupted sweep computes only what is missing."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from decodex.app.cli import main
from decodex.core.errors import DecodexError
from decodex.examples import example_path
from decodex.explore.optimize import Constraint
from decodex.explore.points import evaluate_points
from decodex.explore.runner import run_sweep
from decodex.explore.sweep_identity import apply_constraints
from decodex.explore.sweep_space import load_space
from decodex.explore.sweep_store import MANIFEST, SweepDirError, SweepStore

TINY: dict[str, Any] = {
    "name": "tiny", "fixed": {"model": "llama3-8b", "system": "h100-sxm", "dataset": "fixed", "requests": 16,
                              "rate": 4.0},
    "axes": {"batch": [1, 16, 256, 4096], "max_batch": [8, 32], "context": [512, 8192]},
    "constraints": [{"metric": "tpot_s", "op": "<=", "bound": 0.05}]}
SERVE_METRICS = {"goodput_requests_per_s", "slo_attainment", "ttft_p99_s"}


def _tiny(**change: Any) -> dict[str, Any]:
    return {**TINY, **change}


def _part_bytes(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((directory / "parts").iterdir())}


def test_other_mode_is_refused_and_fresh_starts_over(tmp_path: Path) -> None:
    out = tmp_path / "run"
    estimated = run_sweep(TINY, out=out)
    assert "step_time_s" in estimated and not SERVE_METRICS & set(estimated.columns)
    before = _part_bytes(out)
    with pytest.raises(SweepDirError) as refused:
        run_sweep(TINY, mode="serve", out=out)
    message = str(refused.value)
    assert isinstance(refused.value, DecodexError) and "\n" not in message
    assert f"{out} holds a sweep of mode estimate; this run asks serve" in message
    assert "--out" in message and "--fresh" in message
    assert _part_bytes(out) == before  # a refused run changes nothing
    served = run_sweep(TINY, mode="serve", out=out, fresh=True)
    assert len(served) == 16 and set(served.columns) >= SERVE_METRICS and "step_time_s" not in served
    assert list(served["point_id"]) == list(estimated["point_id"])  # same inputs, other mode's rows
    assert json.loads((out / MANIFEST).read_text())["identity"]["mode"] == "serve"
    assert json.loads((out / "summary.json").read_text())["mode"] == "serve"
    reread = SweepStore(out).read()
    assert set(reread.columns) >= SERVE_METRICS and "step_time_s" not in reread  # no estimate row survived
    # now the directory is a serve sweep: resuming it in serve computes nothing, estimate is refused
    assert run_sweep(TINY, mode="serve", out=out)[sorted(SERVE_METRICS)].equals(served[sorted(SERVE_METRICS)])
    with pytest.raises(SweepDirError, match="holds a sweep of mode serve; this run asks estimate"):
        run_sweep(TINY, out=out)


@pytest.mark.parametrize(("change", "words"), [
    ({"axes": {**TINY["axes"], "batch": [1, 16]}}, "axes.batch = [1, 16, 256, 4096]; this run asks [1, 16]"),
    ({"fixed": {**TINY["fixed"], "system": "h200"}}, 'fixed.system = "h100-sxm"; this run asks "h200"'),
    ({"axes": {**TINY["axes"], "spec.hbm.bandwidth@scale": [2.0]}}, "axes.spec.hbm.bandwidth@scale = absent"),
    ({"sampling": "random", "samples": 4, "axes": {"batch": [1, 16], "max_batch": [8]}}, "sampling"),
])
def test_another_space_is_refused_naming_the_difference(tmp_path: Path, change: dict[str, Any], words: str) -> None:
    run_sweep(TINY, out=tmp_path)
    with pytest.raises(SweepDirError, match="holds a sweep with") as refused:
        run_sweep(_tiny(**change), out=tmp_path)
    assert words in str(refused.value) and "\n" not in str(refused.value)


def test_seed_counts_for_sampled_spaces_only(tmp_path: Path, chunk_sizes: list[int]) -> None:
    lhs = _tiny(sampling="lhs", samples=6, seed=1, axes={"batch": {"low": 1, "high": 64, "integer": True}})
    run_sweep(lhs, out=tmp_path / "lhs")
    with pytest.raises(SweepDirError, match="holds a sweep with seed 1; this run asks 2"):
        run_sweep({**lhs, "seed": 2}, out=tmp_path / "lhs")
    run_sweep(TINY, out=tmp_path / "grid")
    sizes = chunk_sizes
    sizes.clear()
    again = run_sweep(_tiny(seed=7, samples=3, name="renamed", description="a grid ignores seed and samples"),
                      out=tmp_path / "grid")
    assert len(again) == 16 and sizes == []  # same grid points: everything reused


def test_another_decodex_version_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_sweep(TINY, out=tmp_path)
    monkeypatch.setattr("decodex.explore.sweep_identity.__version__", "99.0.0")
    with pytest.raises(SweepDirError, match=r"was written by Decodex \S+; this is Decodex 99.0.0"):
        run_sweep(TINY, out=tmp_path)


def test_tightened_constraints_on_resume_give_the_new_feasible_count(tmp_path: Path, chunk_sizes: list[int]) -> None:
    example = load_space(example_path("h100-batch-context"))
    loose = run_sweep(example, out=tmp_path)
    tight = dataclasses.replace(example, constraints=(Constraint("tpot_s", "<=", 0.02),
                                                      Constraint("tokens_per_s", ">=", 2000.0)))
    expected = run_sweep(tight)  # in memory, from scratch
    sizes = chunk_sizes
    sizes.clear()
    resumed = run_sweep(tight, out=tmp_path)
    assert sizes == []  # nothing recomputed
    pd.testing.assert_frame_equal(resumed, expected)
    assert 0 < resumed["feasible"].sum() < loose["feasible"].sum()
    assert resumed.loc[~resumed["feasible"], "reason"].str.len().gt(0).all()
    assert resumed["reason"].str.startswith("constraint tokens_per_s >= 2000 broken").any()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["feasible"] == resumed["feasible"].sum() and summary["complete"]
    # readers of the directory (decodex pareto, the dashboard) see the current constraints too
    pd.testing.assert_frame_equal(SweepStore(tmp_path).read([*resumed["point_id"]]), expected)
    # loosening them again restores the first run's rows, still without recomputing
    pd.testing.assert_frame_equal(run_sweep(example, out=tmp_path), loose)
    assert sizes == []
    # rows that could not run keep their own reason whatever the constraints
    unconstrained = run_sweep(dataclasses.replace(example, constraints=()), out=tmp_path)
    assert not unconstrained["reason"].str.startswith("constraint").any()
    assert (unconstrained["reason"] != "").sum() == loose["reason"].str.contains("GB|max_position").sum()


def test_constraints_applied_to_rows_equal_constraints_applied_per_point() -> None:
    space = load_space(_tiny(constraints=[{"metric": "tpot_s", "op": "<=", "bound": 0.01},
                                          {"metric": "usd_per_mtok", "op": "<=", "bound": 0.5}]))
    # a space file may not name a missing column (it is refused when read); a frame from elsewhere may
    space = dataclasses.replace(space, constraints=(*space.constraints, Constraint("no_such_metric", ">=", 0.0)))
    per_point = pd.DataFrame(evaluate_points(space.points(), "estimate", space.constraints))
    raw = pd.DataFrame(evaluate_points(space.points(), "estimate"))
    applied = apply_constraints(raw, space.constraints)
    assert list(applied["reason"]) == list(per_point["reason"])
    assert list(applied["feasible"]) == list(per_point["feasible"])
    assert applied["reason"].str.endswith("no_such_metric >= 0: no value").any()


def test_directory_without_parts_is_simply_restarted(tmp_path: Path) -> None:
    store = SweepStore(tmp_path)  # e.g. a run stopped before its first part
    store.write_json(MANIFEST, {"format": 1, "identity": {"mode": "serve"}, "constraints": []})
    frame = run_sweep(TINY, out=tmp_path)
    assert len(frame) == 16 and store.manifest()["identity"]["mode"] == "estimate"


def test_older_decodex_directory_is_refused_until_fresh(tmp_path: Path) -> None:
    run_sweep(TINY, out=tmp_path)
    (tmp_path / MANIFEST).unlink()  # what a Decodex before the manifest left
    legacy = SweepStore(tmp_path).read()
    assert len(legacy) == 16  # still readable, as written
    with pytest.raises(SweepDirError, match=r"older Decodex \(no sweep.json\).*--fresh") as refused:
        run_sweep(TINY, out=tmp_path)
    assert "\n" not in str(refused.value)
    (tmp_path / MANIFEST).write_text("{not json")
    with pytest.raises(SweepDirError, match=r"sweep\.json is not a manifest this Decodex reads"):
        run_sweep(TINY, out=tmp_path)
    assert len(run_sweep(TINY, out=tmp_path, fresh=True)) == 16


def test_fresh_removes_only_the_sweeps_own_files(tmp_path: Path) -> None:
    run_sweep(TINY, out=tmp_path, chunk_size=5)
    keep = [tmp_path / "front.html", tmp_path / "notes.txt", tmp_path / "parts" / "README", tmp_path / "x.parquet"]
    for path in keep:
        path.write_text("mine")
    (tmp_path / "parts" / "part-000009-deadbeef.tmp").write_text("left by a killed run")
    removed = SweepStore(tmp_path).clear()
    assert {p.name for p in removed} >= {MANIFEST, "space.json", "summary.json", "part-000009-deadbeef.tmp"}
    assert all(path.read_text() == "mine" for path in keep)
    assert not list((tmp_path / "parts").glob("part-*")) and not (tmp_path / MANIFEST).exists()


def _write_space(path: Path) -> Path:
    lines = ["[sweep]", 'name = "tiny"', 'mode = "estimate"', "[sweep.fixed]",
             *(f"{k} = {json.dumps(v)}" for k, v in TINY["fixed"].items()), "[sweep.axes]",
             *(f"{k} = {json.dumps(v)}" for k, v in TINY["axes"].items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_cli_refuses_another_mode_in_one_line_and_fresh_starts_over(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    space, out = str(_write_space(tmp_path / "tiny.toml")), str(tmp_path / "out")
    assert main(["sweep", space, "--out", out, "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["sweep", space, "--out", out, "--mode", "serve", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"decodex: error: {out} holds a sweep of mode estimate; this run asks serve")
    assert main(["sweep", space, "--out", out, "--mode", "serve", "--no-progress", "--fresh"]) == 0
    assert "16 points" in capsys.readouterr().out
    assert set(SweepStore(out).read().columns) >= SERVE_METRICS


def test_unreadable_manifest_is_one_decodex_error_on_read(tmp_path: Path) -> None:
    run_sweep(TINY, out=tmp_path)
    (tmp_path / MANIFEST).write_text(json.dumps({"format": 1, "identity": {}, "constraints": [{"op": "<="}]}))
    with pytest.raises(SweepDirError, match=r"sweep\.json is unreadable.*--fresh") as refused:
        SweepStore(tmp_path).read()
    assert isinstance(refused.value, DecodexError) and isinstance(refused.value, ValueError)
