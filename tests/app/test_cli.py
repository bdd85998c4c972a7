"""The decodex command line: listings, estimate output, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from decodex.app.cli import main
from decodex.hw_models.system import DEVICES_DIR

ROOT = Path(__file__).resolve().parents[2]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_models_and_systems_list_the_catalogs(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "models")
    assert code == 0 and "llama3-70b" in out and "deepseek-v3" in out
    code, out, _ = run_cli(capsys, "systems", "--json")
    rows = json.loads(out)
    assert code == 0 and {"h100-sxm", "a100-40g"} <= {r["name"] for r in rows}


def test_estimate_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "estimate", "--model", "llama3-8b", "--system", "h100-sxm", "--batch", "8",
                           "--context", "1024", "--ops")
    assert code == 0
    assert "step time" in out and "tokens/s" in out and "dense_layer.qkv_proj" in out


def test_estimate_json_has_summary_keys_and_ops(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "estimate", "--model", "llama3-70b", "--system", "h100-sxm", "--batch", "64",
                           "--context", "2048", "--tp", "8", "--json")
    data = json.loads(out)
    assert code == 0
    for key in ("step_time_s", "tokens_per_s", "energy_per_token_j", "weight_bytes", "kv_bytes",
                "memory_required_bytes", "fits", "ops"):
        assert key in data
    assert data["fits"] is True and data["devices"] == 8
    assert {"name", "kind", "unit", "flops", "bytes", "arithmetic_intensity", "time_s", "bound",
            "energy_j"} <= set(data["ops"][0])


def test_model_and_system_paths(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    model = ROOT / "workloads" / "catalog" / "llama2-7b.json"
    device = DEVICES_DIR / "a100-80g.toml"
    code, out, _ = run_cli(capsys, "estimate", "--model", str(model), "--system", str(device), "--json")
    assert code == 0 and json.loads(out)["model"] == "llama2-7b"


def test_context_list_sets_the_batch(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "estimate", "--model", "llama3-8b", "--system", "h100-sxm", "--context",
                           "100,2000,4000", "--json")
    data = json.loads(out)
    assert code == 0 and data["batch_size"] == 3 and data["mean_context"] == pytest.approx(2033.333, rel=1e-4)


@pytest.mark.parametrize(("argv", "needle"), [
    (["estimate", "--model", "nope", "--system", "h100-sxm"], "unknown model 'nope'"),
    (["estimate", "--model", "llama3-8b", "--system", "nope"], "unknown system 'nope'"),
    (["estimate", "--model", "llama3-8b", "--system", "h100-sxm", "--batch", "-4"], "--batch"),
    (["estimate", "--model", "llama3-8b", "--system", "h100-sxm", "--context", "100000"], "max_position"),
    (["estimate", "--model", "llama3-8b", "--system", "h100-sxm", "--tp", "3"], "not divisible"),
    (["estimate", "--model", "llama3-8b", "--system", "h100-sxm", "--precision", "fp7"], "unknown preset"),
])
def test_bad_input_is_one_line_without_traceback(argv: list[str], needle: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "app.cli", *argv], capture_output=True, text=True, cwd=ROOT,
                          check=False)
    assert proc.returncode != 0
    assert needle in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_negative_bandwidth_spec_file(tmp_path: Path) -> None:
    text = (DEVICES_DIR / "h100-sxm.toml").read_text().replace("bandwidth_bytes_per_s = 3.35e12",
                                                               "bandwidth_bytes_per_s = -3.35e12")
    path = tmp_path / "h100-sxm.toml"
    path.write_text(text)
    proc = subprocess.run([sys.executable, "-m", "app.cli", "estimate", "--model", "llama3-8b", "--system",
                           str(path)], capture_output=True, text=True, cwd=ROOT, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "memories.hbm.bandwidth_bytes_per_s" in proc.stderr and str(path) in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_simulate_json_and_trace(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    trace = tmp_path / "t.json"
    code, out, _ = run_cli(capsys, "simulate", "--model", "llama3-8b", "--system", "8x-h100-sxm", "--tp", "2",
                           "--batch", "4", "--context", "256", "--json", "--trace", str(trace))
    data = json.loads(out)
    assert code == 0 and "utilization" in data and "step_time_s" in data and data["ops"]
    assert 0 < data["utilization"]["d0.tensor"] <= 1
    assert json.loads(trace.read_text())["traceEvents"]
    code, out, _ = run_cli(capsys, "simulate", "--model", "llama2-7b", "--system", "8x-a100-80g", "--pp", "2",
                           "--batch", "4", "--microbatches", "2")
    assert code == 0 and "stage0" in out and "utilization" in out


def test_fixed_size_system_refuses_too_many_devices(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "estimate", "--model", "llama3-70b", "--system", "8x-h100-sxm", "--tp", "8",
                           "--pp", "2")
    assert code == 2 and "needs 16 devices" in err


def test_block_shares_above_100_percent_are_explained() -> None:
    """Duplex runs experts on the xPU and the Logic-PIM at once: the report says why its block
    shares add to more than 100 %; a GPU step, whose ops run one after another, says nothing."""
    from decodex.app.formatting import overlap_note, step_report
    from decodex.sim import estimate

    duplex = estimate("mixtral-8x7b", "4x-duplex", 64, context=2048)
    ratio = duplex.by_block()["time_share"].sum()
    assert ratio == pytest.approx(duplex.busy_over_step, rel=1e-9) and ratio > 1.05
    assert f"shares add to {100 * ratio:.0f}%" in step_report(duplex)
    gpu = estimate("llama3-8b", "h100-sxm", 8, context=2048)
    assert gpu.busy_over_step == pytest.approx(1.0) and overlap_note(gpu) == ""
    assert "shares add to" not in step_report(gpu)
