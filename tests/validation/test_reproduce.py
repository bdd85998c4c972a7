"""The reproduction registry and its command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from decodex.app.cli import main
from decodex.core.errors import ArgumentError, SpecError
from decodex.validation.reproduce import Target, load_targets, reproduce, run_target


def test_targets_load_with_sources_and_tolerances() -> None:
    targets = load_targets()
    assert targets and all(t.source and t.tolerance > 0 and (t.absolute or t.tolerance <= 1) for t in targets)


def test_absolute_tolerance_is_in_the_target_unit(tmp_path: Path) -> None:
    targets = Path(__file__).resolve().parents[2] / "validation" / "targets"
    text = (targets / "gpu-decode-llama2-7b-h100.toml").read_text()
    path = tmp_path / "gpu-abs.toml"
    path.write_text(text.replace("tolerance = ", 'tolerance_kind = "absolute"\ntolerance = '))
    load_targets()
    target = Target.load(path)
    result = run_target(target)
    assert target.absolute and result.absolute
    assert result.error == pytest.approx(result.simulated - result.target)
    assert result.passed == (abs(result.simulated - result.target) <= target.tolerance)


def test_worked_gpu_target_passes() -> None:
    (result,) = reproduce("gpu-decode-llama2-7b-h100")
    assert result.passed and abs(result.error) <= result.tolerance


def test_unknown_target_and_bad_file(tmp_path: Path) -> None:
    with pytest.raises(ArgumentError, match="no target or group"):
        reproduce("no-such-target")
    bad = tmp_path / "bad.toml"
    bad.write_text('[target]\nname = "x"\nvalue = 1.0\nunit = "s"\ntolerance = 0.1\nsource = "s"\nrunner = "nope"\n')
    load_targets()  # registers the runners
    with pytest.raises(SpecError, match="runner"):
        Target.load(bad)


def test_failing_target_fails(tmp_path: Path) -> None:
    path = tmp_path / "gpu-wrong.toml"
    targets = Path(__file__).resolve().parents[2] / "validation" / "targets"
    text = (targets / "gpu-decode-llama2-7b-h100.toml").read_text()
    path.write_text(text.replace("value = 0.183e-3", "value = 0.5e-3"))
    load_targets()
    result = run_target(Target.load(path))
    assert not result.passed and result.error < -0.5


def test_reproduce_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["reproduce", "gpu", "--json"])
    rows = json.loads(capsys.readouterr().out)
    assert code == 0
    assert {"name", "target", "simulated", "unit", "error", "tolerance", "passed"} <= set(rows[0])


# every group but duplex, whose three targets test_duplex_reproduction runs and requires to pass
# (running them here too would repeat its ~3 minutes of serving simulation)
@pytest.mark.parametrize("group", sorted({t.group for t in load_targets()} - {"duplex"}))
def test_reproduce_exit_status_says_whether_every_target_passed(group: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["reproduce", group, "--json"])
    rows = json.loads(capsys.readouterr().out)
    assert rows and all(r["name"] for r in rows)
    assert code == (0 if all(r["passed"] or r["verdict"] == "reported" for r in rows) else 1)


def test_a_reported_figure_is_shown_with_its_reason_and_never_fails(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    targets = Path(__file__).resolve().parents[2] / "validation" / "targets"
    text = (targets / "gpu-decode-llama2-7b-h100.toml").read_text().replace("value = 0.183e-3", "value = 0.5e-3")
    load_targets()
    path = tmp_path / "gpu-reported.toml"
    path.write_text(text.replace('runner = ', 'kind = "reported"\nreason = "a published figure"\nrunner = ', 1))
    target = Target.load(path)
    result = run_target(target)
    assert target.reported and result.reported and result.reason == "a published figure"
    assert not result.passed and result.ok and result.verdict == "reported"
    assert result.to_dict()["verdict"] == "reported"
    failing = run_target(Target.load(targets / "gpu-decode-llama2-7b-h100.toml"))
    assert failing.verdict == "pass" and failing.ok
    # a reported figure without its reason is refused, naming the field
    path.write_text(text.replace('runner = ', 'kind = "reported"\nrunner = ', 1))
    with pytest.raises(SpecError, match="reason"):
        Target.load(path)
    path.write_text(text.replace('runner = ', 'kind = "maybe"\nrunner = ', 1))
    with pytest.raises(SpecError, match="kind"):
        Target.load(path)


def test_the_paper_averages_of_neupims_are_reported_beside_the_artifact_matched_targets() -> None:
    by_name = {t.name: t for t in load_targets()}
    for name in ("neupims-vs-gpu", "neupims-vs-npu", "neupims-vs-naive"):
        assert by_name[name].reported and "artifact" in by_name[name].reason
    matched = [t for t in by_name.values() if t.name.startswith("neupims-artifact-")]
    assert matched and not any(t.reported for t in matched)


def test_reproduce_shows_progress_on_a_terminal_unless_quiet_or_json(monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    from decodex.app.cli import main

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    main(["reproduce", "gpu-decode-llama2-7b-h100"])
    assert "reproduce: 1/1 targets" in capsys.readouterr().err
    for quiet in (["--quiet"], ["--json"]):
        main(["reproduce", "gpu-decode-llama2-7b-h100", *quiet])
        assert "targets" not in capsys.readouterr().err
    seen: list[tuple[int, int]] = []
    from decodex.validation.reproduce import reproduce

    reproduce("gpu-decode-llama2-7b-h100", on_target=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 1)]
