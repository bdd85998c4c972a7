"""Sweeps: declared spaces, spec what-ifs, infeasible rows, resumable output, local and Dask runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from decodex.app.cli import main
from decodex.core.errors import SpecError
from decodex.examples import SWEEPS_DIR
from decodex.explore.runner import run_sweep
from decodex.explore.spec_overrides import system_with
from decodex.explore.sweep_space import load_space, point_id
from decodex.explore.sweep_store import SweepStore
from decodex.sim import sweep
from decodex.sim.estimate import estimate
from decodex.workloads.parallelism import Parallelism

EXAMPLES = SWEEPS_DIR
SPACE = {"name": "t", "fixed": {"model": "llama3-8b", "system": "h100-sxm"},
         "axes": {"batch": [1, 16, 256, 4096], "context": [128, 8192],
                  "spec.hbm.bandwidth@scale": [0.5, 2.0]},
         "constraints": [{"metric": "tpot_s", "op": "<=", "bound": 0.05}]}
METRICS = ["tpot_s", "tokens_per_s", "energy_per_token_j", "usd_per_mtok", "memory_required_bytes"]


def test_grid_and_sampled_spaces_are_deterministic() -> None:
    grid = load_space(SPACE)
    assert len(grid.points()) == 16 and grid.points() == load_space(SPACE).points()
    lhs = load_space({"name": "l", "sampling": "lhs", "samples": 50, "seed": 3,
                      "fixed": {"model": "llama3-8b", "system": "h100-sxm"},
                      "axes": {"batch": {"low": 1, "high": 512, "integer": True},
                               "spec.hbm.bandwidth@scale": {"low": 0.25, "high": 4.0, "log": True},
                               "precision": ["bf16", "fp8"]}})
    points = lhs.points()
    assert points == lhs.points() and len(points) == 50
    batches = np.array([p["batch"] for p in points])
    assert batches.dtype.kind == "i" and batches.min() >= 1 and batches.max() <= 512
    scales = np.array([p["spec.hbm.bandwidth@scale"] for p in points])
    assert scales.min() >= 0.25 and scales.max() <= 4.0
    # a Latin hypercube puts exactly one point in each of the 50 equal-probability strata
    strata = np.floor(np.log(scales / 0.25) / np.log(16) * 50).astype(int)
    assert sorted(strata) == list(range(50))
    assert {p["precision"] for p in points} == {"bf16", "fp8"}


@pytest.mark.parametrize(("change", "match"), [
    ({"axes": {"batchsize": [1]}}, r"sweep.axes.batchsize.*unknown parameter"),
    ({"axes": {"batch": {"low": 1, "high": 8}}}, r"sweep.axes.batch.*a grid needs a list"),
    ({"constraints": [{"metric": "tpot_s", "op": "<", "bound": 1}]}, r"constraints\[0\].op"),
    ({"mode": "fast"}, r"sweep.mode"),
])
def test_bad_space_names_the_field(change: dict, match: str) -> None:
    with pytest.raises(SpecError, match=match):
        load_space({**SPACE, **change})


def test_spec_overrides_change_the_spec_and_are_validated() -> None:
    fast = system_with("h100-sxm", {"hbm.bandwidth_bytes_per_s@scale": 2.0})
    assert fast.primary_device.memories["hbm"].bandwidth_bytes_per_s == pytest.approx(2 * 3.35e12)
    times = [estimate("llama3-70b", system_with("h100-sxm", {"hbm.bandwidth@scale": s}), 32, context=2048,
                      parallelism=Parallelism(tp=8)).step_time_s for s in (0.5, 1.0, 2.0, 4.0)]
    assert times == sorted(times, reverse=True)  # more bandwidth is never slower
    with pytest.raises(SpecError, match=r"h100-sxm.toml.*'bandwith' is not a field.*bandwidth_bytes_per_s"):
        system_with("h100-sxm", {"hbm.bandwith": 1.0})
    with pytest.raises(SpecError, match=r"memories.hbm.bandwidth_bytes_per_s: -1 outside the allowed range"):
        system_with("h100-sxm", {"hbm.bandwidth_bytes_per_s": -1})
    split = system_with("step3-2a2f-h800", {"ffn:hbm.bandwidth_bytes_per_s@scale": 2, "system.devices[0].count": 8})
    attention, ffn = split.groups
    assert attention.count == 8 and ffn.device.memories["hbm"].bandwidth_bytes_per_s == pytest.approx(
        2 * attention.device.memories["hbm"].bandwidth_bytes_per_s)
    with pytest.raises(SpecError, match=r"selector matches no device group"):
        system_with("step3-2a2f-h800", {"gpu:hbm.bandwidth_bytes_per_s": 1e12})


def test_rows_have_metrics_and_infeasible_points_their_reason() -> None:
    frame = sweep(SPACE)
    assert len(frame) == 16 and frame["point_id"].is_unique
    window = frame[frame["context"] == 8192]
    assert (~window["feasible"]).all() and window["reason"].str.contains("max_position_embeddings").all()
    big = frame[(frame["batch"] == 4096) & (frame["context"] == 128)]
    assert (~big["feasible"]).all() and big["reason"].str.contains("h100-sxm has 84.6 GB for them").all()
    ok = frame[frame["feasible"]]
    assert len(ok) > 0 and (ok["tpot_s"] <= 0.05).all() and (ok["util.tensor"] > 0).all()
    assert (ok["usd_per_mtok"] > 0).all() and (ok["tokens_per_s_per_device"] == ok["tokens_per_s"]).all()
    slow = frame[frame["reason"].str.startswith("constraint")]
    assert (slow["tpot_s"] > 0.05).all()


def test_vectorized_rows_equal_point_by_point_rows() -> None:
    space = {**SPACE, "axes": {"batch": [1, 3, 64, 200], "context": [0, 511, 4000], "system": ["h100-sxm", "h200"]},
             "fixed": {"model": "llama3-70b", "tp": 8}}
    fast, slow = run_sweep(space), run_sweep(space, vectorize=False)
    assert list(fast["point_id"]) == list(slow["point_id"])
    np.testing.assert_allclose(fast[METRICS].to_numpy(float), slow[METRICS].to_numpy(float), rtol=1e-9)
    assert (fast["reason"] == slow["reason"]).all() and set(fast.columns) == set(slow.columns)


def test_interrupted_sweep_resumes_without_loss_or_duplicates(tmp_path: Path, chunk_sizes: list[int]) -> None:
    whole = run_sweep(SPACE, out=tmp_path / "whole", chunk_size=3, vectorize=False)

    def stop_after_two(parts: int) -> None:
        if parts == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(SPACE, out=tmp_path / "cut", chunk_size=3, vectorize=False, on_part=stop_after_two)
    store = SweepStore(tmp_path / "cut")
    assert len(store.finished_ids()) == 6
    assert not json.loads((tmp_path / "cut" / "summary.json").read_text())["complete"]
    chunk_sizes.clear()
    resumed = run_sweep(SPACE, out=tmp_path / "cut", chunk_size=3, vectorize=False)
    assert sum(chunk_sizes) == 16 - 6  # only the missing points ran
    assert len(resumed) == 16 and resumed["point_id"].is_unique
    pd.testing.assert_frame_equal(resumed[["point_id", *METRICS, "reason"]], whole[["point_id", *METRICS, "reason"]])
    summary = json.loads((tmp_path / "cut" / "summary.json").read_text())
    assert summary["complete"] and summary["finished"] == 16 and summary["infeasible"] == 16 - summary["feasible"]
    assert len(store.read()) == 16  # no duplicate rows in the parts


def test_local_processes_and_a_dask_cluster_give_the_local_result(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    local = run_sweep(SPACE)
    processes = run_sweep(SPACE, workers=2, chunk_size=4)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        on_dask = run_sweep(SPACE, out=tmp_path / "dask", scheduler=cluster.scheduler_address, chunk_size=4)
    for other in (processes, on_dask):
        assert list(other["point_id"]) == list(local["point_id"])
        np.testing.assert_allclose(other[METRICS].to_numpy(float), local[METRICS].to_numpy(float), rtol=1e-12)
        assert (other["reason"] == local["reason"]).all()


def test_point_id_ignores_key_order() -> None:
    assert point_id({"a": 1, "b": "x"}) == point_id({"b": "x", "a": 1}) != point_id({"a": 2, "b": "x"})


def test_cli_sweep_and_pareto(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "h100"
    assert main(["sweep", str(EXAMPLES / "h100-batch-context.toml"), "--out", str(out), "--no-progress"]) == 0
    assert "64 points" in capsys.readouterr().out
    html = tmp_path / "front.html"
    assert main(["pareto", str(out), "--objective", "tokens_per_s_per_device:max", "--objective", "tpot_s:min",
                 "--html", str(html)]) == 0
    text = capsys.readouterr().out
    # plotly.js is written once beside the figure, not embedded in it (4.8 MB per file before)
    assert "on the front" in text and html.stat().st_size < 100_000
    assert (tmp_path / "plotly.min.js").stat().st_size > 1e6


def test_every_example_space_loads() -> None:
    files = sorted(EXAMPLES.glob("*.toml"))
    assert len(files) >= 4
    for path in files:
        assert load_space(path).points()


def test_cli_sensitivity_and_optimize(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    space = EXAMPLES / "hbm-what-if.toml"
    assert main(["sensitivity", str(space), "--metric", "tokens_per_s", "--samples", "16", "--steps", "3",
                 "--out", str(tmp_path / "sens")]) == 0
    sobol = pd.read_csv(tmp_path / "sens" / "sobol.csv")
    assert set(sobol["variable"]) == {"batch", "spec.hbm.bandwidth_bytes_per_s@scale",
                                      "spec.tensor.peak_flops.bf16@scale"}
    oat = pd.read_csv(tmp_path / "sens" / "one_at_a_time.csv")
    assert (oat["swing"] > 0).all()  # batch, bandwidth and FLOP/s each move the throughput
    capsys.readouterr()
    code = main(["optimize", str(space), "--objective", "spec.hbm.bandwidth_bytes_per_s@scale", "--maxiter", "3",
                 "--popsize", "3", "--out", str(tmp_path / "opt")])
    history = pd.read_csv(tmp_path / "opt" / "history.csv")
    assert code == 0 and "feasible:" in capsys.readouterr().out
    best = history[history["feasible"]]["spec.hbm.bandwidth_bytes_per_s@scale"].min()
    assert (history[history["feasible"]]["tpot_s"] <= 0.02).all() and 0.25 <= best <= 4.0


@pytest.mark.parametrize(("argv", "line"), [
    (["sensitivity", "--metric", "tokens_per_s", "--samples", "8", "--steps", "2"], "sensitivity: 47/47 points"),
    (["optimize", "--objective", "tpot_s", "--maxiter", "2", "--popsize", "3"], "optimize: 27/27 designs (at most)"),
])
def test_sensitivity_and_optimize_show_progress_unless_quiet(argv: list[str], line: str,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """On a terminal a run says how far it is (samples x (variables + 2) + the one-at-a-time
    points; generations x population for the optimizer, an upper bound); --quiet silences it."""
    import sys

    space = str(EXAMPLES / "hbm-what-if.toml")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    monkeypatch.setattr("decodex.core.run_limits.RunWatch.clock", iter(range(0, 10_000)).__next__)
    main([argv[0], space, *argv[1:]])
    assert line in capsys.readouterr().err
    main([argv[0], space, *argv[1:], "--quiet"])
    assert argv[0] + ":" not in capsys.readouterr().err
