"""The speculative decoding study on a small grid: rows for every point, the best length, the
crossover by hand, and the CLI's files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from decodex.explore.studies.specdec import (
    _first_crossing,
    advantage_crossover,
    best_lengths,
    deployments,
    speedup_study,
)


@pytest.fixture(scope="module")
def small() -> pd.DataFrame:
    return speedup_study(models=("llama3-8b",), batches=(1, 8), contexts=(1024,), lengths=(0, 1, 3),
                         acceptances=(0.5, 0.9))


def test_every_point_has_a_row_and_k0_is_plain_decode(small: pd.DataFrame) -> None:
    assert len(small) == len(deployments("llama3-8b")) * 2 * 1 * 3 * 2
    ok = small[small["fits"].astype(bool)]
    assert set(ok["deployment"]) == {"h100", "duplex", "neupims", "u280"}
    assert (ok[ok["draft_length"] == 0]["speedup"] == 1.0).all()
    # the verify step's Op/B grows with the draft length (weights read once for k + 1 tokens)
    for _, group in ok[ok["acceptance"] == 0.9].groupby(["deployment", "batch"]):
        opb = group.sort_values("draft_length")["verify_op_per_byte"].to_numpy()
        assert np.all(np.diff(opb) > 0)
    # more acceptance never slows a speculative step down
    pivot = ok.pivot_table(index=["deployment", "batch", "draft_length"], columns="acceptance", values="speedup")
    assert (pivot[0.9] >= pivot[0.5]).all()


def test_best_lengths_take_the_most_tokens_per_second(small: pd.DataFrame) -> None:
    best = best_lengths(small)
    assert len(best) == 4 * 2 * 2
    for _, row in best.iterrows():
        same = small[(small["deployment"] == row["deployment"]) & (small["batch"] == row["batch"])
                     & (small["acceptance"] == row["acceptance"]) & small["fits"].astype(bool)]
        assert row["tokens_per_s"] == same["tokens_per_s"].max()


def test_the_crossover_by_hand() -> None:
    assert math.isnan(_first_crossing(np.array([1.0, 2.0]), np.array([0.8, 0.5])))  # no advantage to lose
    assert math.isnan(_first_crossing(np.array([1.0, 2.0]), np.array([2.0, 1.5])))  # never lost
    # log-linear: ratio 2 at Op/B 10, 0.5 at 40 -> 1 at Op/B 20
    assert _first_crossing(np.array([10.0, 40.0]), np.array([2.0, 0.5])) == pytest.approx(20.0)
    frame = pd.DataFrame([
        {"model": "m", "batch": 1, "context": 1, "acceptance": 0.5, "deployment": d, "draft_length": k,
         "tokens_per_s": t, "verify_op_per_byte": o, "fits": True}
        for d, k, t, o in (("h100", 0, 100.0, 10.0), ("h100", 1, 200.0, 40.0),
                           ("pim", 0, 200.0, 10.0), ("pim", 1, 100.0, 40.0))])
    row = advantage_crossover(frame).iloc[0]
    assert row["deployment"] == "pim" and row["advantage_plain"] == 2.0
    assert row["vanishes_at_op_per_byte"] == pytest.approx(20.0) and row["advantage_at_gpu_best"] == 1.0


def test_a_model_too_large_for_a_deployment_is_a_row_with_its_reason() -> None:
    frame = speedup_study(models=("llama3-70b",), batches=(1,), contexts=(512,), lengths=(0, 2), acceptances=(0.7,))
    u280 = frame[frame["deployment"] == "u280"]
    assert not u280["fits"].astype(bool).any() and u280["reason"].str.len().min() > 0
    assert frame[frame["deployment"] == "h100"]["fits"].astype(bool).all()


def test_the_cli_writes_the_tables_and_figures(tmp_path: Path) -> None:
    from decodex.app.cli import main

    out = tmp_path / "spec"
    assert main(["study", "specdec", "--models", "llama3-8b", "--batches", "8", "--contexts", "512",
                 "--lengths", "0,2", "--acceptances", "0.8", "--out", str(out), "-q"]) == 0
    for name in ("specdec_speedup.csv", "specdec_speedup.html", "specdec_crossover.csv", "specdec_best.csv"):
        assert (out / name).is_file()
    assert len(pd.read_csv(out / "specdec_speedup.csv")) == 4 * 2


def test_speculative_sweep_points() -> None:
    """draft_length, acceptance and draft as sweep parameters (estimate mode): the row is the
    speculative step's, k = 0 is plain decode's, and another mode is a row with its reason."""
    from decodex.explore.points import evaluate_point, evaluate_points
    from decodex.explore.sweep_space import METRICS
    from decodex.sim.speculative import Draft, estimate_speculative
    from decodex.workloads.acceptance import ChainAcceptance

    point = {"model": "llama3-8b", "system": "duplex", "batch": 8, "context": 2048, "draft_length": 3,
             "acceptance": 0.8, "draft": "self:4"}
    row = evaluate_point(point)
    step = estimate_speculative("llama3-8b", "duplex", 8, context=2048, draft=Draft("self", layers=4), draft_length=3,
                                acceptance=ChainAcceptance((0.8,)))
    assert row["feasible"] and row["tpot_s"] == step.time_per_token_s and row["speedup"] == step.speedup
    assert row["energy_per_token_j"] == pytest.approx(step.energy_per_token_j)
    assert set(row) - set(point) - {"point_id", "feasible", "reason"} <= set(METRICS["estimate"])
    plain = evaluate_point({"model": "llama3-8b", "system": "duplex", "batch": 8, "context": 2048})
    zero = evaluate_point({**point, "draft_length": 0})
    assert zero["tpot_s"] == pytest.approx(plain["tpot_s"]) and zero["speedup"] == 1.0
    rows = evaluate_points([{**point, "batch": b} for b in (1, 2, 4)])  # never the vectorized plain path
    assert all(r["speedup"] > 1 for r in rows)
    refused = evaluate_point(point, mode="simulate")
    assert not refused["feasible"] and "estimate mode" in refused["reason"]
    bad = evaluate_point({**point, "draft": "heads:0"})
    assert not bad["feasible"] and "draft" in bad["reason"]


def test_tree_width_is_a_sweep_axis() -> None:
    from decodex.explore.points import evaluate_point

    point = {"model": "llama3-8b", "system": "h100-sxm", "batch": 8, "context": 2048, "draft_length": 3,
             "acceptance": 0.6}
    rows = [evaluate_point({**point, "tree_width": w}) for w in (1, 2, 4)]
    assert all(r["feasible"] for r in rows)
    assert rows[0]["tokens_per_step"] == pytest.approx(evaluate_point(point)["tokens_per_step"])
    assert rows[0]["tokens_per_step"] < rows[1]["tokens_per_step"] < rows[2]["tokens_per_step"]
    assert rows[0]["verify_op_per_byte"] < rows[1]["verify_op_per_byte"] < rows[2]["verify_op_per_byte"]
    bad = evaluate_point({**point, "tree_width": 0})
    assert not bad["feasible"] and "width" in bad["reason"]



def test_the_study_takes_any_draft(tmp_path: Path) -> None:
    from decodex.app.cli import main
    from decodex.sim.speculative import Draft, estimate_speculative
    from decodex.workloads.acceptance import ChainAcceptance

    out = tmp_path / "study"
    assert main(["study", "specdec", "--models", "llama3-8b", "--batches", "8", "--contexts", "2048", "--lengths",
                 "0,3", "--acceptances", "0.7", "--draft", "heads:3", "--out", str(out)]) == 0
    frame = pd.read_csv(out / "specdec_speedup.csv")
    h100 = frame[(frame.deployment == "h100") & (frame.draft_length == 3)].iloc[0]
    step = estimate_speculative("llama3-8b", "h100-sxm", 8, context=2048, draft=Draft("heads", heads=3),
                                draft_length=3, acceptance=ChainAcceptance((0.7,)))
    assert h100["speedup"] == pytest.approx(step.speedup)
