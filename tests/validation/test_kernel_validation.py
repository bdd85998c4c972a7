"""``validate cpu|gpu``: records written, predictions on the vector unit, no-GPU handling."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from decodex.validation.host import calibrate_host, host_device
from decodex.validation.kernel_validation import spec_for_gpu, validate_cpu
from decodex.validation.kernels import CPU_CASES
from decodex.validation.records import load_records

ROOT = Path(__file__).resolve().parents[2]


def test_validate_cpu_writes_a_record_with_predictions(tmp_path: Path) -> None:
    device = host_device(calibrate_host(quick=True))
    cases = [c for c in CPU_CASES if c.kernel in ("rmsnorm", "softmax")][:2]
    frame, summary, path = validate_cpu(device, cases, repeats=3, root=tmp_path)
    assert path is not None and path.is_file()
    assert (frame["measured_s"] > 0).all() and (frame["predicted_s"] > 0).all()
    # the prediction is never below the host's roofline for the kernel's bytes
    assert (frame["predicted_s"] >= frame["bytes"] / device.main_memory.bandwidth_bytes_per_s).all()
    loaded = load_records(tmp_path)
    assert set(loaded["device_kind"]) == {"cpu"} and len(loaded) == len(cases)
    assert summary[device.name]["elementwise"]["n"] == len(cases)


def test_gpu_names_map_to_specs() -> None:
    assert spec_for_gpu("NVIDIA H100 80GB HBM3") == "h100-sxm"
    assert spec_for_gpu("NVIDIA H200") == "h200"
    assert spec_for_gpu("NVIDIA A100-SXM4-40GB") == "a100-40g"
    assert spec_for_gpu("NVIDIA A100-SXM4-80GB") == "a100-80g"


def test_validate_gpu_without_a_gpu_is_one_line_and_non_zero() -> None:
    env = {key: value for key, value in os.environ.items() if key != "NUMBA_ENABLE_CUDASIM"}
    proc = subprocess.run([sys.executable, "-m", "app.cli", "validate", "gpu", "--no-write"], capture_output=True,
                          text=True, cwd=ROOT, env=env, check=False)
    if proc.returncode == 0:
        pytest.skip("a CUDA GPU is present")
    # numba-cuda installed (the dev extra) but no GPU or driver: the reason, on one line, status 2
    expected = "needs numba-cuda" if importlib.util.find_spec("numba_cuda") is None else "no CUDA GPU found: "
    assert proc.returncode == 2 and proc.stderr.startswith("decodex: error: ") and expected in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_calibrated_spec_file_drives_validate_cpu(tmp_path: Path) -> None:
    spec = tmp_path / "host.toml"
    run = [sys.executable, "-m", "app.cli"]
    assert subprocess.run([*run, "calibrate", "host", "--quick", "--out", str(spec)], cwd=ROOT,
                          check=False, capture_output=True).returncode == 0
    proc = subprocess.run([*run, "validate", "cpu", "--spec", str(spec), "--cases", "1", "--no-write", "--json"],
                          cwd=ROOT, check=False, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "matmul" in next(iter(json.loads(proc.stdout).values()))


def test_validate_cpu_shows_progress_unless_quiet(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from decodex.app.cli import main

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    monkeypatch.setattr("decodex.core.run_limits.RunWatch.clock", iter(range(0, 10_000)).__next__)
    assert main(["validate", "cpu", "--cases", "1", "--quick", "--no-write"]) == 0
    assert "validate cpu: 1/1 kernel cases" in capsys.readouterr().err
    assert main(["validate", "cpu", "--cases", "1", "--quick", "--no-write", "--quiet"]) == 0
    assert "kernel cases" not in capsys.readouterr().err
