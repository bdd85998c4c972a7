"""The Python API examples, one per seed system (examples/api/*.py), run as written and say what
their mechanisms say: more bandwidth is faster, interleaving hides the PIM's attention, Logic-PIM
speeds MoE decode, the FPGA spends less energy per token, AFD runs on both pools."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "api"


def _main(name: str) -> dict[str, float]:
    return runpy.run_path(str(EXAMPLES / f"{name}.py"))["main"]()


def test_every_example_is_tested() -> None:
    assert sorted(p.stem for p in EXAMPLES.glob("*.py")) == ["afd", "duplex", "flightllm", "gpu_baseline", "neupims"]


def test_gpu_baseline(capsys: pytest.CaptureFixture[str]) -> None:
    out = _main("gpu_baseline")
    assert 1.0 < out["h200"] / out["h100-sxm"] <= 4.8 / 3.35  # never more than the bandwidth ratio
    assert "H200 / H100" in capsys.readouterr().out


def test_neupims() -> None:
    out = _main("neupims")
    assert out["two"] < out["one"] < out["npu"]


def test_duplex() -> None:
    out = _main("duplex")
    assert out["4x-duplex"] > out["4x-h100-sxm"]


def test_flightllm(capsys: pytest.CaptureFixture[str]) -> None:
    _main("flightllm")
    assert "energy per token, V100S / U280" in capsys.readouterr().out


def test_afd() -> None:
    out = _main("afd")
    assert out["devices"] == 32 and out["tokens_per_s"] > 0
