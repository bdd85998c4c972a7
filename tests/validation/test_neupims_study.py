"""NeuPIMs studies (explore/studies/neupims.py), the sampled-lengths runner and ``decodex study``."""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from decodex.app.cli_study import add_study_parsers
from decodex.core.errors import ArgumentError
from decodex.explore.studies.neupims import (
    interleaving_figure,
    interleaving_gain,
    neupims_sweep,
    neupims_system,
    row_buffer_figure,
    row_buffer_gain,
    sweep_figure,
)
from decodex.sim.serving.workload import Workload
from decodex.validation.runners_neupims import MIN_POOL, POOL_PER_REQUEST, neupims_ratio, points, sampled_contexts
from decodex.workloads.catalog import load_model
from decodex.workloads.parallelism import Parallelism

MODEL = "gpt3-7b"


def test_sampled_contexts_vary_and_are_seeded() -> None:
    a = sampled_contexts(MODEL, "sharegpt", 256, 0)
    assert np.array_equal(a, sampled_contexts(MODEL, "sharegpt", 256, 0))
    assert not np.array_equal(a, sampled_contexts(MODEL, "sharegpt", 256, 1))
    assert a.min() >= 1 and a.max() <= 2048  # gpt3's context window caps the draws
    assert a.std() > 0.5 * a.mean()  # lognormal lengths: widely varied requests
    alpaca = sampled_contexts(MODEL, "alpaca", 256, 0)
    assert alpaca.mean() < a.mean()


def test_steady_state_snapshot_is_length_biased() -> None:
    """A continuously batched server holds each request for its output length, so a snapshot's
    mean context is E[o (i + (o - 1) / 2)] / E[o] over the drawn pool (renewal theory), above the
    unbiased i + (o - 1) / 2 of a batch that started together."""
    batch = 4096
    window = load_model(MODEL).max_position_embeddings
    pool = Workload.preset("sharegpt", 1.0).generate(max(MIN_POOL, POOL_PER_REQUEST * batch), seed=3,
                                                      max_total_tokens=window)
    i, o = pool.input_tokens.astype(float), pool.output_tokens.astype(float)
    biased = float(np.sum(o * (i + (o - 1) / 2)) / np.sum(o))
    unbiased = float(np.mean(i + (o - 1) / 2))
    steady = sampled_contexts(MODEL, "sharegpt", batch, 3)
    assert abs(steady.mean() / biased - 1) < 0.05
    assert biased > 1.3 * unbiased
    uniform = sampled_contexts(MODEL, "sharegpt", batch, 3, occupancy="uniform")
    assert uniform.mean() < steady.mean()
    with pytest.raises(ArgumentError, match="occupancy"):
        sampled_contexts(MODEL, "sharegpt", 8, 0, occupancy="bogus")


def test_sampled_runner_points_and_ratio() -> None:
    config = {"system": "neupims", "baseline": "npu-only", "models": [MODEL], "lengths": "sampled",
              "datasets": ["sharegpt"], "seeds": 2, "batches": [64], "parallelism": {MODEL: [4, 1]}}
    pts = list(points(config))
    assert [p.seed for p in pts] == [0, 1]
    assert all(len(p.context) == 64 for p in pts)
    assert neupims_ratio(config) > 1.0


def test_interleaving_loses_at_small_batch_and_wins_at_large_batch() -> None:
    frame = interleaving_gain(MODEL, [32, 512])
    dual = frame[frame.row_buffers == "dual"].set_index("batch")["gain"]
    assert dual[32] < 1.0  # a second weight read per step outweighs the hidden attention
    assert dual[512] > 1.0
    single = frame[frame.row_buffers == "single"].set_index("batch")["gain"]
    assert (single <= dual + 1e-12).all()  # a single row buffer serialises PIM and NPU traffic
    assert isinstance(interleaving_figure(frame), go.Figure)


def test_dual_row_buffers_never_slower_with_interleaving() -> None:
    frame = row_buffer_gain(MODEL, [32, 128, 512], sub_batches=(1, 2))
    two = frame[frame.sub_batches == 2].set_index("batch")["gain"]
    assert (two >= 1.0 - 1e-12).all()
    assert two[512] > 1.0
    one = frame[frame.sub_batches == 1]["gain"]
    assert one.to_numpy() == pytest.approx(1.0)  # one stream: nothing runs beside the PIM
    assert len(row_buffer_figure(frame).data) == 2


def test_system_variant_changes_only_what_is_asked() -> None:
    base = neupims_system()
    wide = neupims_system(channels=64, multipliers=8, array_size=256, row_buffers="single")
    pim, pim2 = base.primary_device.units["pim"], wide.primary_device.units["pim"]
    assert (pim2.channels, pim2.multipliers_per_bank) == (64, 8)
    assert pim2.banks_per_channel == pim.banks_per_channel
    hbm, hbm2 = base.primary_device.main_memory, wide.primary_device.main_memory
    assert hbm2.bandwidth_bytes_per_s == pytest.approx(2 * hbm.bandwidth_bytes_per_s)
    assert (hbm.access, hbm2.access) == ("concurrent", "exclusive")
    assert wide.primary_device.units["systolic"].rows == 256
    assert wide.mapper_options["channel_policy"] == "greedy"
    assert base.primary_device.units["systolic"].dataflow == "input-stationary"  # the artifact's mapping
    flow = neupims_system(dataflow="weight-stationary")
    assert flow.primary_device.units["systolic"].dataflow == "weight-stationary"
    assert flow.primary_device.units["systolic"].rows == base.primary_device.units["systolic"].rows
    with pytest.raises(ValueError, match="dataflow"):
        neupims_system(dataflow="diagonal")


def test_more_multipliers_never_lower_neupims_throughput() -> None:
    grid = {"multipliers": (1, 2, 4, 8, 16, 32), "channels": (16, 32), "array_sizes": (64, 128),
            "parallelism": Parallelism(tp=4)}
    one = neupims_sweep(MODEL, sub_batches=1, **grid)
    for _, part in one.groupby(["channels", "array_size"]):
        tps = part.sort_values("multipliers")["neupims_tokens_per_s"].to_numpy()
        assert (np.diff(tps) >= -1e-9 * tps[:-1]).all()
        assert tps[-1] == pytest.approx(tps[-2])  # P_comp = min(multipliers, 32 B burst / 2 B) = 16
    energy = one.sort_values("multipliers").groupby(["channels", "array_size"])["neupims_j_per_token"]
    assert energy.apply(lambda s: bool((np.diff(s.to_numpy()) <= 1e-15).all())).all()  # fewer COMPs
    # With sub-batch interleaving (batch 256, the mapper's default) the model shows a small
    # scheduling anomaly: a faster PIM can shift the greedy channel split and the two streams'
    # priority overlap so that throughput drops slightly (measured: at most 3.5%, 16 channels,
    # 2 -> 4 multipliers). Asserted as it is, not forced.
    two = neupims_sweep(MODEL, **grid)
    for _, part in two.groupby(["channels", "array_size"]):
        tps = part.sort_values("multipliers")["neupims_tokens_per_s"].to_numpy()
        assert (np.diff(tps) >= -0.05 * tps[:-1]).all()
        assert tps[-1] > tps[0]
    assert isinstance(sweep_figure(two), go.Figure)


def test_cli_study_writes_figures_and_tables(tmp_path) -> None:
    parser = argparse.ArgumentParser(prog="decodex")
    add_study_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["study", "neupims", "--out", str(tmp_path / "out")])
    assert args.func(args) == 0
    for name in ("neupims_interleaving", "neupims_row_buffers", "neupims_sweep"):
        assert (tmp_path / "out" / f"{name}.html").stat().st_size > 0
        assert not pd.read_csv(tmp_path / "out" / f"{name}.csv").empty


def test_cli_study_says_what_it_runs_on_a_terminal(tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    import sys

    parser = argparse.ArgumentParser(prog="decodex")
    add_study_parsers(parser.add_subparsers(dest="command", required=True))
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    for quiet, shown in (([], True), (["--quiet"], False)):
        args = parser.parse_args(["study", "duplex", "--out", str(tmp_path / "out"), *quiet])
        assert args.func(args) == 0
        assert ("study duplex:" in capsys.readouterr().err) is shown
