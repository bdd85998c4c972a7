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
    # each tool also warm (calls in a row), on the points it predicted
    assert decodex["warm_median_ms_per_point"] > 0
    assert data["summary"]["llm_analysis"]["warm_median_ms_per_point"] > 0
    assert data["summary"]["genz"]["warm_median_ms_per_point"] is None
    assert data["ratios"]["llm_analysis"]["warm_median_ms_over_decodex"] > 0
    assert len(runs["decodex"][0]["warm_seconds"]) == peers.WARM_ROUNDS * (peers.WARM_CALLS - 1)
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
    goal = data["goal"]  # on the one point the mocked peer predicted
    assert goal["points"] == 1 and goal["target_ratio"] == 2.5
    assert goal["interleaved_ratio"] == pytest.approx(peer["ms"] / first["tools"]["decodex_band"]["ms"])
    assert goal["met"] == (goal["interleaved_ratio"] >= 2.5 and goal["interleaved_ratio_per_point"] >= 2.5)


def test_the_goal_by_hand(peers: ModuleType) -> None:
    def point(band: float, peer: float | None, band_warm: float, peer_warm: float) -> dict:
        return {"tools": {"decodex_band": {"ok": True, "ms": band, "warm_ms": band_warm},
                          "llm_analysis": {"ok": peer is not None, "ms": peer, "warm_ms": peer_warm}}}

    rows = [point(0.1, 0.3, 0.05, 0.2), point(0.2, 0.4, 0.1, 0.2), point(0.1, None, 0.1, 0.1),
            point(0.4, 1.2, 0.1, 0.5)]
    goal = peers.speed_goal(rows)
    assert goal["points"] == 3
    assert goal["interleaved_ratio"] == pytest.approx(0.4 / 0.2)  # medians 0.4 and 0.2
    assert goal["interleaved_ratio_per_point"] == pytest.approx(3.0)  # ratios 3, 2, 3
    assert goal["warm_ratio"] == pytest.approx(0.2 / 0.1) and goal["warm_ratio_per_point"] == pytest.approx(4.0)
    assert goal["met"] is False  # 2.0x of the medians
    assert peers.speed_goal(rows, target=2.0)["met"] is True
    assert peers.speed_goal([])["met"] is None


def test_main_quick_without_peers(peers: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peers, "all_tools", lambda: [*peers.decodex_tools(),
                                                    peers.unavailable("genz", "genz-llm", "absent (test)")])
    report = peers.main(["--quick", "--out", str(tmp_path / "quick.json")])
    assert report["rounds"] == 1 and len(report["points"]) == 8
    assert json.loads((tmp_path / "quick.json").read_text())["summary"]["decodex"]["points_ok"] == 8
