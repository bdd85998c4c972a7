"""Serving results written as Parquet tables and a JSON summary."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from decodex.core.errors import ArgumentError
from decodex.sim.serving import Workload, serve
from decodex.sim.serving.tables_out import write_tables


def test_a_run_round_trips_through_parquet(tmp_path: Path) -> None:
    result = serve("llama3-8b", "h100-sxm", Workload.preset("sharegpt", rate=5.0), requests=40, seed=1)
    paths = write_tables(tmp_path / "run", {"requests": result.requests, "iterations": result.iterations},
                         result.summary())
    assert [p.name for p in paths] == ["requests.parquet", "iterations.parquet", "summary.json"]
    back = pd.read_parquet(tmp_path / "run" / "requests.parquet")
    pd.testing.assert_frame_equal(back, result.requests.reset_index(drop=True))
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["output_tokens"] == result.summary()["output_tokens"]
    assert not list((tmp_path / "run").glob(".*.part"))  # no temporary file left behind


def test_out_must_be_a_folder(tmp_path: Path) -> None:
    file = tmp_path / "x"
    file.write_text("")
    with pytest.raises(ArgumentError, match="--out"):
        write_tables(file, {}, {})
