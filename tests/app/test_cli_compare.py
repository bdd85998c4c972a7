"""``decodex compare``: the seed systems side by side by default, each row as the dashboard's
Systems-compared page computes it, as text, JSON and CSV; a system that cannot run is a row."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from decodex.app.cli import main
from decodex.app.cli_compare import DEFAULT_SYSTEMS
from decodex.sim.system_comparison import run_system


def test_the_seed_systems_by_default(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "rows.csv"
    assert main(["compare", "--json", "--csv", str(out)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["system"] for r in rows] == list(DEFAULT_SYSTEMS)
    expected = run_system("llama2-7b", "h100-sxm", 32, 1024, "fp16")
    assert rows[0]["tokens_per_s"] == pytest.approx(expected.tokens_per_s, rel=1e-12)
    assert rows[0]["parallelism"] == expected.parallelism == "tp1"
    by_name = {r["system"]: r for r in rows}
    assert by_name["alveo-u280"]["status"] == "does not fit"  # fp16 weights and KV beyond the card
    assert by_name["step3-2a2f-h800"]["path"] == "simulate"  # attention-FFN ping-pong goes through the engine
    assert pd.read_csv(out)["system"].tolist() == list(DEFAULT_SYSTEMS)


def test_text_and_rows_that_cannot_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", "--model", "llama3-70b", "--systems", "8x-h100-sxm,h200,no-such-system", "--batch", "8",
                 "--tp", "8", "--precision", "bf16"]) == 0
    text = capsys.readouterr().out
    assert "llama3-70b, bf16, batch 8" in text and "8x-h100-sxm" in text and "tp8" in text
    assert "cannot run" in text  # the unknown system is a row with its reason, not an error
    assert max(len(line) for line in text.splitlines()) < 200
    with pytest.raises(SystemExit):
        main(["compare", "--tp", "0"])


def test_systems_fits_a_wide_terminal_unless_asked(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["systems"]) == 0
    narrow = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in narrow) <= 130 and any(line.endswith("…") for line in narrow)
    assert main(["systems", "--wide"]) == 0
    assert max(len(line) for line in capsys.readouterr().out.splitlines()) > 130


def test_a_band_without_width_says_there_is_no_validation_data() -> None:
    from decodex.app.formatting import band_text

    assert band_text(0.010, 0.015) == "10 ms .. 15 ms"
    assert band_text(0.00944, 0.00944) == "no validation data"  # no record covers the step
    assert band_text(float("nan"), 0.01) == "no validation data"
