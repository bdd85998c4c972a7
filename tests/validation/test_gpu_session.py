"""The prepared GPU session: parts run in order, each row is written as it is measured, a spent
budget stops new work and keeps what was measured, a missing torch/GPU skips a part (under
Numba's CUDA simulator here); and the queued kernel timing's arithmetic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

from decodex.validation.kernels import timing


def test_session_under_the_simulator_keeps_what_it_measured(tmp_path: Path) -> None:
    pytest.importorskip("numba_cuda")
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    # the first parts run whole; then a budget spent during the first kernel (its simulated compile
    # takes several seconds): the session stops, keeping that row and its record
    for parts, budget in (("ceilings,e2e", "600"), ("kernels", "3")):
        done = subprocess.run([sys.executable, "-m", "decodex.validation.gpu_session", "--out", str(tmp_path),
                               "--parts", parts, "--cases", "sim", "--repeats", "1", "--budget-s", budget,
                               "--spec", "h200"], capture_output=True, text=True, timeout=600, env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        if parts != "kernels":
            first = json.loads((tmp_path / "session.json").read_text())
    session = json.loads((tmp_path / "session.json").read_text())
    session["parts"].update(first["parts"])
    assert session["parts"]["ceilings"]["status"] == "done"
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if not has_cuda:
        assert session["parts"]["e2e"]["status"].startswith("skipped: no torch")
    assert session["parts"]["kernels"]["status"].startswith("stopped: budget")
    rows = pd.read_csv(tmp_path / "kernels.csv")
    assert len(rows) >= 1 and {"measured_s", "predicted_s", "launches_per_sample", "host_bound"} <= set(rows.columns)
    record = tmp_path / session["kernel_record"]
    assert record.is_file() and len(pd.read_csv(record)) == len(rows)
    assert json.loads(record.with_suffix(".json").read_text())["spec"] == "h200"


def test_unknown_part_is_refused(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "decodex.validation.gpu_session", "--out", str(tmp_path),
                           "--parts", "kernels,warp"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "unknown ['warp']" in done.stderr


class _FakeCuda:
    """Just enough of numba.cuda for the queued timing: a clock that launches advance."""

    def __init__(self, kernel_s: float) -> None:
        self.now, self.kernel_s = 0.0, kernel_s

    def jit(self, fn: Any) -> Any:
        cuda = self

        class Spin:
            def __getitem__(self, _config: Any) -> Any:
                def run(iterations: int, _sink: Any) -> None:
                    cuda.now += iterations * 1e-9  # 1e9 iterations per second

                return run

        return Spin()

    def to_device(self, array: Any) -> Any:
        return array

    def synchronize(self) -> None:
        pass

    def event(self, timing: bool = True) -> Any:
        cuda = self

        class Event:
            def record(self) -> None:
                self.at = cuda.now

            def synchronize(self) -> None:
                pass

            def elapsed_time(self, end: Any) -> float:
                return (end.at - self.at) * 1e3

        return Event()

    def launch(self) -> None:
        self.now += self.kernel_s


def test_queued_timing_divides_each_burst_by_its_launches(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _FakeCuda(kernel_s=5e-6)
    monkeypatch.setattr(timing, "_SPIN", {})
    runs = [SimpleNamespace(launch=fake.launch) for _ in range(3)]
    result = timing._time_queued(fake, runs, repeats=20, working_set=1e6)
    assert result.median_s == pytest.approx(5e-6)
    # a burst lasts about QUEUE_TARGET_S (capped at MAX_QUEUED launches) and rotates every copy
    assert result.launches_per_sample == timing.MAX_QUEUED and result.copies == 3
    assert len(result.samples_s) == 5 and result.host_bound == 0
    monkeypatch.setattr(timing, "_SPIN", {})
    fake = _FakeCuda(kernel_s=10e-3)
    slow = timing._time_queued(fake, [SimpleNamespace(launch=fake.launch) for _ in range(3)], repeats=4,
                               working_set=1e6)
    assert slow.launches_per_sample == 3 and slow.median_s == pytest.approx(10e-3)  # each input copy once
