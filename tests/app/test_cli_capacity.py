"""``decodex capacity``: JSON and text reports, the files of --out, bad SLOs."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from decodex.app.cli import main

BASE = ("capacity", "--model", "llama3-8b", "--system", "h100-sxm", "--preset", "alpaca", "--requests", "200",
        "--max-batch", "32", "--slo", "ttft_p99=0.5,tpot_p99=0.05", "--rate-lo", "20", "--rate-hi", "70",
        "--max-runs", "3")


def test_json_and_files(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main([*BASE, "--json", "--out", str(tmp_path / "out")]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["slo_s"] == {"ttft_p99": 0.5, "tpot_p99": 0.05}
    assert 20 <= data["capacity_per_s"] < 70 and data["runs"] == 3 == len(data["curve"])
    assert {"rate_per_s", "ttft_p99_s", "sched_delay_p99_s", "steady", "steady_reason"} <= set(data["curve"][0])
    out = tmp_path / "out"
    curve = pd.read_csv(out / "curve.csv")
    assert len(curve) == 3 and (out / "capacity.html").is_file()
    assert len(pd.read_parquet(out / "curve.parquet")) == 3  # pyarrow is a dependency


def test_text_report(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*BASE, "--quiet", "--max-runs", "2"]) == 0
    out = capsys.readouterr().out
    assert "capacity: 20 requests/s" in out and "binding:" in out and "TTFT p99" in out


@pytest.mark.parametrize(("slo", "message"), [("ttft_p95=1", "ttft_p95"), ("ttft_p99", "KEY=SECONDS"),
                                              ("tpot_p99=-1", "tpot_p99")])
def test_bad_slo_exits_2(capsys: pytest.CaptureFixture[str], slo: str, message: str) -> None:
    with pytest.raises(SystemExit) as info:
        main(["capacity", "--model", "llama3-8b", "--system", "h100-sxm", "--slo", slo])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "--slo" in err


def test_deployments_from_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*BASE, "--json", "--max-runs", "2", "--decode-systems", "h20", "--router", "least-outstanding"]) == 0
    split = json.loads(capsys.readouterr().out)
    assert split["system"] == "h100-sxm prefill, h20 decode" and split["devices"] == 2
    assert split["capacity_per_usd_hour"] == pytest.approx(split["capacity_per_s"] / split["usd_per_hour"])
    assert main([*BASE, "--quiet", "--max-runs", "2", "--replicas", "2", "--router", "least-kv"]) == 0
    out = capsys.readouterr().out
    assert "on 2 x h100-sxm" in out and "per device:" in out and "(2 devices)" in out and "per price:" in out
    assert main([*BASE, "--router", "least-kv"]) != 0
    assert "--router: only with --replicas" in capsys.readouterr().err
