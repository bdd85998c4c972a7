"""The serving capacity study: one row per deployment, normalized per device and per dollar,
a deployment that cannot run kept as a row with its reason; the CLI writes its table and figure."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from decodex.app.cli import main
from decodex.explore.studies import serving as study
from decodex.explore.studies.serving import COLUMNS, Deployment, capacity_figure, capacity_study
from decodex.hw_models.system import load_system
from decodex.workloads.parallelism import Parallelism

DEPLOYMENTS = (Deployment("H100", "h100-sxm"), Deployment("H100 + H20", "h100-sxm", decode_system="h20"),
               Deployment("missing", "no-such-system"))


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return capacity_study("llama3-8b", "azure-conv-2023", slo={"ttft_p99": 1.0, "tpot_p99": 0.05}, requests=200,
                          deployments=DEPLOYMENTS, parallelism=Parallelism(), rel_tol=0.2, max_runs=4,
                          bucket_width=0.1)


def test_one_row_per_deployment_normalized_per_device_and_dollar(table: pd.DataFrame) -> None:
    assert list(table.columns) == list(COLUMNS) and table["deployment"].tolist() == ["H100", "H100 + H20", "missing"]
    ran = table.iloc[:2]
    assert (ran["capacity_per_s"] > 0).all() and (ran["reason"] == "").all()
    assert ran["devices"].tolist() == [1, 2]
    h100, h20 = (load_system(name).primary_device.usd_per_hour for name in ("h100-sxm", "h20"))
    assert ran["usd_per_hour"].tolist() == pytest.approx([h100, h100 + h20])
    assert (ran["capacity_per_device"] == ran["capacity_per_s"] / ran["devices"]).all()
    assert (ran["capacity_per_usd_hour"] == ran["capacity_per_s"] / ran["usd_per_hour"]).all()
    assert (ran["ttft_p99_s"] <= 1.0).all() and (ran["tpot_p99_s"] <= 0.05).all()  # the run at capacity met them


def test_a_deployment_that_cannot_run_is_a_row_with_its_reason(table: pd.DataFrame) -> None:
    missing = table.iloc[2]
    assert missing["capacity_per_s"] == 0 and "no-such-system" in missing["reason"]
    figure = capacity_figure(table)
    assert [list(trace.x) for trace in figure.data] == [["H100", "H100 + H20"]] * 2


def test_cli_writes_the_table_and_figure(table: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    asked: dict[str, object] = {}

    def stub(model: str, trace: str, **kwargs: object) -> pd.DataFrame:
        asked.update(model=model, trace=trace, **kwargs)
        return table

    monkeypatch.setattr(study, "capacity_study", stub)
    out = tmp_path / "out"
    assert main(["study", "serving", "--model", "llama3-8b", "--requests", "300", "--slo", "ttft_p99=1.5",
                 "--out", str(out), "-q"]) == 0
    assert asked["model"] == "llama3-8b" and asked["requests"] == 300 and asked["slo"] == {"ttft_p99": 1.5}
    assert asked["trace"] == "azure-conv-2023"
    assert pd.read_csv(out / "serving_capacity.csv")["deployment"].tolist() == table["deployment"].tolist()
    assert (out / "serving_capacity.html").is_file()
    assert "H100 + H20" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["study", "serving", "--slo", "nope", "--out", str(out)])
