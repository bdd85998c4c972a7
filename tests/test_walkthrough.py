"""The README's "First 10 minutes": its three what-if questions give the numbers it quotes, from
the CLI (the commands as written; tests/test_readme.py runs them too) and from the dashboard's
Systems compared page (AppTest). The Design point upload of question 1 runs in the browser
(tests/app/dashboard/test_browser.py::test_walkthrough_bandwidth_upload)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from decodex.app.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
SECTION = README.split("## First 10 minutes", 1)[1].split("\n## ", 1)[0]
TEXT = " ".join(SECTION.split())  # the prose, line breaks as spaces
SYSTEMS_PAGE = str(ROOT / "app/dashboard/views/systems_compared.py")


def _commands() -> list[list[str]]:
    """The walkthrough's ``decodex`` commands, in order."""
    blocks = re.findall(r"```bash\n(.*?)```", SECTION, re.S)
    return [shlex.split(line)[1:] for block in blocks for line in block.splitlines() if line.startswith("decodex ")]


def _json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> object:
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_the_walkthrough_asks_three_questions() -> None:
    assert len(re.findall(r"\*\*\d\. What if", TEXT)) == 3
    assert [c[0] for c in _commands()] == ["estimate", "estimate", "compare", "compare"]


def test_question_1_bandwidth(capsys: pytest.CaptureFixture[str]) -> None:
    base, doubled = (_json(argv, capsys) for argv in _commands()[:2])
    assert base["layout"].startswith("tp4") and doubled["layout"].startswith("tp4")  # type: ignore[index]
    before, after = base["step_time_s"], doubled["step_time_s"]  # type: ignore[index]
    assert f"from {before * 1e3:.1f} ms to {after * 1e3:.1f} ms" in TEXT
    assert f"{before / after:.1f}x, not 2x" in TEXT
    assert 1.0 < before / after < 2.0  # more bandwidth is faster, and the collectives keep it under 2x
    # the dashboard's way, uploading the example device file, is the same what-if
    from decodex.examples import example_path
    from decodex.sim import estimate
    from decodex.sim.auto_layout import choose_layout

    layout = choose_layout("llama3-70b", "h100-sxm", 64, context=2048).parallelism
    uploaded = estimate("llama3-70b", example_path("h100-2x-hbm"), 64, context=2048, parallelism=layout)
    assert uploaded.step_time_s == pytest.approx(after, rel=1e-12)


def _rows(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, object]]:
    return {row["system"]: row for row in _json(argv, capsys)}  # type: ignore[union-attr]


def test_question_2_pim(capsys: pytest.CaptureFixture[str]) -> None:
    rows = _rows(_commands()[2], capsys)
    gpu, duplex, neupims = rows["h100-sxm"], rows["4x-duplex"], rows["neupims"]
    speedup = gpu["step_time_s"] / duplex["step_time_s"]  # type: ignore[operator]
    saving = 1 - duplex["energy_per_token_j"] / gpu["energy_per_token_j"]  # type: ignore[operator]
    assert f"{speedup:.1f}x faster than the H100" in TEXT and f"uses {100 * saving:.0f} % less" in TEXT
    assert neupims["step_time_s"] > gpu["step_time_s"]  # type: ignore[operator]
    assert 0.28 < 1 - neupims["energy_per_token_j"] / gpu["energy_per_token_j"] < 0.38  # "a third less"  # type: ignore[operator]


def test_question_3_afd(capsys: pytest.CaptureFixture[str]) -> None:
    rows = _rows(_commands()[3], capsys)
    assert rows["h800"]["status"] == "does not fit" and rows["step3-2a2f-h800"]["status"] == "ok"
    afd = rows["step3-2a2f-h800"]
    assert f"{afd['tokens_per_s'] / 1e3:.1f} k tokens/s" in TEXT  # type: ignore[operator]
    assert f"{afd['tokens_per_s_per_device'] / 1e3:.2f} k per device" in TEXT  # type: ignore[operator]


@pytest.mark.parametrize("question", [2, 3])
def test_the_dashboard_steps_show_the_same_rows(question: int, capsys: pytest.CaptureFixture[str]) -> None:
    """Questions 2 and 3 on the Systems compared page, set as the walkthrough says."""
    argv = _commands()[question]
    option = dict(zip(argv[1::2], argv[2::2], strict=False))
    expected = _rows(argv, capsys)
    at = AppTest.from_file(SYSTEMS_PAGE, default_timeout=120).run()
    at.selectbox(key="systems.model").set_value(option["--model"])
    at.selectbox(key="systems.precision").set_value(option["--precision"])
    at.number_input(key="systems.batch").set_value(int(option["--batch"]))
    at.number_input(key="systems.context").set_value(int(option["--context"]))
    at.multiselect(key="systems.systems").set_value(option["--systems"].split(",")).run()
    assert not at.exception and not at.error
    table = next(d.value for d in at.dataframe if "mapper (path)" in d.value.columns).set_index("system")
    for system, row in expected.items():
        assert table.loc[system, "status"] == row["status"]
        if row["status"] != "cannot run":
            assert table.loc[system, "tokens/s"] == pytest.approx(row["tokens_per_s"], rel=1e-9)
