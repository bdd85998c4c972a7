"""benchmarks/peers.py on 2 points: Decodex timed, one peer missing and one mocked (GenZ and
llm-analysis need not be installed), the JSON report's structure and the floor flag."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "peers.py"


@pytest.fixture(scope="module")
def peers() -> ModuleType:
    """benchmarks/peers.py as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("peers_benchmark", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their annotations through it
    spec.loader.exec_module(module)
    return module


def _mock_peer(peers: ModuleType) -> object:
    """A peer predicting 1 µs at the first point (below any floor) and failing at the others."""
    first = peers.grid()[0]

    def predict(point: object) -> tuple[float, dict[str, object]]:
        if point == first:
            return 1e-6, {}
        raise ValueError("unsupported point")

    return peers.Tool("llm_analysis", "llm-analysis", True, "0.0-mock", predict, "mock")


def test_two_points_decodex_and_mocked_peers(peers: ModuleType, tmp_path: Path) -> None:
    points = peers.grid()[:2]
    tools = [*peers.decodex_tools(), peers.unavailable("genz", "genz-llm", "genz-llm is not installed (test)"),
             _mock_peer(peers)]
    runs = peers.time_tools(points, tools, rounds=2, progress=False)
    report = peers.build_report(points, tools, runs, rounds=2)
    path = peers.write_json(report, tmp_path / "peers.json")
    data = json.loads(path.read_text())
    assert not list(tmp_path.glob("*.tmp"))

    for key in ("date", "machine", "versions", "rounds", "grid", "summary", "ratios", "agreement", "points"):
        assert key in data
    assert set(data["machine"]) >= {"platform", "cpu_count", "python"}
    assert set(data["versions"]) == {"decodex", "genz-llm", "llm-analysis"}
    assert data["rounds"] == 2 and data["grid"]["points"] == 2 and len(data["points"]) == 2

    decodex = data["summary"]["decodex"]
    assert decodex["available"] and decodex["points_ok"] == 2 and decodex["points_failed"] == 0
    assert decodex["median_ms_per_point"] > 0 and decodex["p90_ms_per_point"] >= decodex["median_ms_per_point"]
    assert data["summary"]["decodex_band"]["median_ms_per_point"] > 0
    # each tool also alone, on the points it predicted
    assert decodex["alone_median_ms_per_point"] > 0
    assert data["summary"]["llm_analysis"]["alone_median_ms_per_point"] > 0
    assert data["summary"]["genz"]["alone_median_ms_per_point"] is None
    assert data["ratios"]["llm_analysis"]["alone_median_ms_over_decodex"] > 0
    assert data["summary"]["genz"]["available"] is False and data["summary"]["genz"]["points_ok"] == 0
    assert data["summary"]["llm_analysis"]["points_ok"] == 1 and data["summary"]["llm_analysis"]["points_failed"] == 1

    first, second = data["points"]
    assert first["floor_s"] > 0 and first["tools"]["decodex"]["step_time_s"] > first["floor_s"]
    assert first["tools"]["decodex_band"]["step_time_s"] == first["tools"]["decodex"]["step_time_s"]
    peer = first["tools"]["llm_analysis"]
    assert peer["ok"] and peer["below_floor"] is True and peer["decodex_over_peer"] > 1
    assert second["tools"]["llm_analysis"]["error"] == "ValueError: unsupported point"
    assert second["tools"]["llm_analysis"]["below_floor"] is None
    assert first["tools"]["genz"]["ok"] is False and first["tools"]["genz"]["error"]

    assert data["agreement"]["llm_analysis"]["points_below_floor"] == 1
    assert data["ratios"]["llm_analysis"]["median_ms_over_decodex"] > 0
    assert data["ratios"]["genz"]["median_ms_over_decodex"] is None
    assert "decodex" in peers.table(report)


def test_main_quick_without_peers(peers: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peers, "all_tools", lambda: [*peers.decodex_tools(),
                                                    peers.unavailable("genz", "genz-llm", "absent (test)")])
    report = peers.main(["--quick", "--out", str(tmp_path / "quick.json")])
    assert report["rounds"] == 1 and len(report["points"]) == 8
    assert json.loads((tmp_path / "quick.json").read_text())["summary"]["decodex"]["points_ok"] == 8
