"""What the command line does as an installed program: its version, the shipped examples and
targets, a closed pipe, interruption, and `decodex app` stopping with its server."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import decodex
from decodex.app.cli import main
from decodex.examples import list_examples
from decodex.explore.sweep_space import load_space
from decodex.hw_models.device import load_device
from decodex.workloads.catalog import load_model

CLI = [sys.executable, "-m", "decodex"]


def test_version_comes_from_one_place(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"decodex {decodex.__version__}"


def test_examples_list_print_and_copy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["examples", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    kinds = {r["name"]: r["kind"] for r in rows}
    assert kinds["h100-batch-context"] == "sweep" and kinds["h100-2x-hbm"] == "device"
    assert kinds["tinyllama-1.1b"] == "model"
    assert main(["examples", "serve-rate"]) == 0
    assert "[sweep]" in capsys.readouterr().out
    assert main(["examples", "h100-2x-hbm", "--to", str(tmp_path)]) == 0
    copied = tmp_path / "h100-2x-hbm.toml"
    assert copied.is_file()
    assert main(["examples", "h100-2x-hbm", "--to", str(tmp_path)]) == 2  # kept without --force
    assert "exists" in capsys.readouterr().err
    assert main(["examples", "nope"]) == 2
    assert "known:" in capsys.readouterr().err


def test_every_example_loads() -> None:
    """The shipped examples are valid inputs: each sweep space parses, the device what-if loads
    (``extends`` a catalog device from another folder) and the model config builds."""
    for path in list_examples("sweep").values():
        assert load_space(path).parameters
    device = load_device(list_examples("device")["h100-2x-hbm"])
    base = decodex.load_system("h100-sxm").primary_device
    assert device.main_memory.bandwidth_bytes_per_s == pytest.approx(2 * base.main_memory.bandwidth_bytes_per_s)
    assert device.capacity_bytes == base.capacity_bytes
    model = load_model(list_examples("model")["tinyllama-1.1b"])
    assert model.num_layers == 22 and model.hidden_size == 2048
    # more bandwidth is never slower
    fast = decodex.estimate(model, list_examples("device")["h100-2x-hbm"], 64)
    slow = decodex.estimate(model, "h100-sxm", 64)
    assert fast.step_time_s < slow.step_time_s


def test_reproduce_list_names_the_shipped_targets(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["reproduce", "--list", "--json"]) == 0
    targets = json.loads(capsys.readouterr().out)
    assert len(targets) >= 10 and all(t["source"] for t in targets)
    assert {"step3-cost-step3", "neupims-vs-naive", "duplex-throughput-mean"} <= {t["name"] for t in targets}


def test_a_closed_pipe_ends_quietly() -> None:
    proc = subprocess.Popen([*CLI, "reproduce", "--list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before the command writes
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) in (0, 141)
    assert "Traceback" not in err and "BrokenPipe" not in err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _health(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as response:
            return response.read().decode().strip()
    except OSError:
        return ""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_to_decodex_app_stops_the_server() -> None:
    port = _free_port()
    proc = subprocess.Popen([*CLI, "app", "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None and _health(port) != "ok":
            time.sleep(0.5)
        assert _health(port) == "ok"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0  # nothing serves the port any more
    finally:
        if proc.poll() is None:
            proc.kill()
