"""``--set FIELD=VALUE``: a what-if edit of the system's spec files from the command line, the
same edits a sweep's ``spec.FIELD`` makes, checked as a file is; and a device file that extends a
catalog device by name works from any folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from decodex.app.cli import main
from decodex.explore.spec_overrides import system_with
from decodex.sim.estimate import estimate
from decodex.workloads.parallelism import Parallelism

BASE = ["--model", "llama3-70b", "--system", "h100-sxm", "--batch", "64", "--tp", "4", "--json"]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_set_edits_the_spec_as_a_sweep_does(capsys: pytest.CaptureFixture[str]) -> None:
    base = _run(capsys, "estimate", *BASE)
    faster = _run(capsys, "estimate", *BASE, "--set", "hbm.bandwidth@scale=2")
    same = _run(capsys, "estimate", *BASE, "--set", "spec.memory.hbm.bandwidth_bytes_per_s@scale=2")
    edited = system_with("h100-sxm", {"hbm.bandwidth_bytes_per_s@scale": 2})
    expected = estimate("llama3-70b", edited, 64, parallelism=Parallelism(tp=4))
    assert faster["step_time_s"] == pytest.approx(expected.step_time_s, rel=1e-12) == same["step_time_s"]
    assert faster["step_time_s"] < base["step_time_s"]  # more bandwidth is never slower
    doubled = _run(capsys, "estimate", *BASE, "--set", "hbm.bandwidth@scale=2",
                   "--set", "tensor.peak_flops.bf16@scale=2")
    assert doubled["step_time_s"] <= faster["step_time_s"]
    served = _run(capsys, "serve", "--model", "llama3-8b", "--system", "h100-sxm", "--rate", "5", "--requests", "20",
                  "--set", "hbm.bandwidth@scale=2", "--json")
    plain = _run(capsys, "serve", "--model", "llama3-8b", "--system", "h100-sxm", "--rate", "5", "--requests", "20",
                 "--json")
    assert served["tpot_s"]["mean"] < plain["tpot_s"]["mean"]


@pytest.mark.parametrize(("edit", "message"), [
    ("nosuch.field=3", "'nosuch' is not a field here"),
    ("hbm.bandwidth@scale=0", "outside the allowed range"),
    ("hbm.bandwidth@scale=fast", "@scale factor must be a number"),
])
def test_a_bad_edit_is_one_line_naming_the_field(capsys: pytest.CaptureFixture[str], edit: str, message: str) -> None:
    assert main(["estimate", "--model", "llama3-8b", "--system", "h100-sxm", "--set", edit]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err


def test_set_needs_field_equals_value() -> None:
    with pytest.raises(SystemExit):
        main(["estimate", "--model", "llama3-8b", "--system", "h100-sxm", "--set", "hbm.bandwidth"])


def test_extends_a_catalog_device_by_name_from_any_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "fast.toml").write_text('[device]\nname = "fast"\nextends = "h100-sxm"\n'
                                        '[memories.hbm]\nbandwidth_bytes_per_s = 6.7e12\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    fast = _run(capsys, "estimate", "--model", "llama3-8b", "--system", str(tmp_path / "fast.toml"), "--json")
    plain = _run(capsys, "estimate", "--model", "llama3-8b", "--system", "h100-sxm", "--json")
    assert fast["step_time_s"] < plain["step_time_s"]
