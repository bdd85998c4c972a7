"""``decodex speculate``: the table and JSON by draft length, and its draft option."""

from __future__ import annotations

import argparse
import json

import pytest

from decodex.app.cli import main
from decodex.app.cli_speculate import draft_spec
from decodex.sim.speculative import Draft, estimate_speculative
from decodex.workloads.acceptance import ChainAcceptance


def test_the_table_has_one_row_per_length(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["speculate", "--model", "llama3-8b", "--system", "h100-sxm", "--batch", "4", "--context", "512",
                 "--draft", "self:4", "--lengths", "0,2,3", "--acceptance", "0.9,0.7"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line[:1].isdigit()]
    assert [row[0] for row in rows] == ["0", "2", "3"] and rows[0][6] == "1.00x"
    assert "plain decode" in out


def test_the_json_equals_the_api(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["speculate", "--model", "llama2-13b", "--system", "h100-sxm", "--batch", "8", "--context", "1000",
                 "--draft", "model:llama2-7b", "--lengths", "3", "--acceptance", "0.8", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    step = estimate_speculative("llama2-13b", "h100-sxm", 8, context=1000, draft=Draft("model", model="llama2-7b"),
                                draft_length=3, acceptance=ChainAcceptance((0.8,)))
    (row,) = data["steps"]
    assert row["speedup"] == pytest.approx(step.speedup)
    assert row["tokens_per_step"] == pytest.approx(step.tokens_per_step)
    assert data["plain_step_s"] == pytest.approx(step.plain.step_time_s) and row["fits"] is True


def test_draft_specs() -> None:
    assert draft_spec("free") == {"kind": "free"}
    assert draft_spec("self:8") == {"kind": "self", "layers": 8}
    assert draft_spec("model:llama2-7b") == {"kind": "model", "model": "llama2-7b", "system": None}
    assert draft_spec("model:llama2-7b@duplex") == {"kind": "model", "model": "llama2-7b", "system": "duplex"}
    assert draft_spec("heads:3") == {"kind": "heads", "heads": 3}
    for bad in ("self", "self:0", "model:", "heads:0", "tree:4", "free:1", "self:x"):
        with pytest.raises(argparse.ArgumentTypeError):
            draft_spec(bad)


def test_serve_speculate_reports_the_accepted_tokens(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["serve", "--model", "llama3-8b", "--system", "h100-sxm", "--rate", "4", "--requests", "30",
            "--speculate", "self:8", "--draft-length", "3", "--acceptance", "0.8"]
    assert main([*args, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["speculation"] == "self:8 k=3"
    assert summary["drafted_tokens"] > summary["accepted_tokens"] > 0
    assert 1.0 < summary["tokens_per_decode_step"] <= 1.0 + 0.8 + 0.64 + 0.512
    assert main(args) == 0
    assert "tokens per decode step" in capsys.readouterr().out


def test_speculate_simulate_runs_the_engine(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["speculate", "--model", "llama3-8b", "--system", "duplex", "--batch", "8", "--lengths", "0,3"]
    assert main([*args, "--simulate", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    step = estimate_speculative("llama3-8b", "duplex", 8, context=1024, draft=Draft(), draft_length=3,
                                acceptance=ChainAcceptance((0.7,)), engine="simulate")
    assert data["engine"] == "simulate" and data["steps"][1]["step_s"] == pytest.approx(step.step_time_s)
    assert main([*args, "--simulate"]) == 0
    assert "(simulated)" in capsys.readouterr().out


def test_speculate_tree_width_verifies_a_spine_tree(capsys: pytest.CaptureFixture[str]) -> None:
    from decodex.workloads.token_tree import TokenTree

    assert main(["speculate", "--model", "llama3-8b", "--system", "h100-sxm", "--batch", "8", "--lengths", "0,3",
                 "--acceptance", "0.6", "--tree-width", "2", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    tree = TokenTree.spine(3, 2)
    step = estimate_speculative("llama3-8b", "h100-sxm", 8, context=1024, draft=Draft(), draft_length=6,
                                acceptance=ChainAcceptance((0.6,)).for_ranked_tree(tree))
    row = data["steps"][1]
    assert row["positions"] == 3 and row["draft_length"] == 6
    assert row["tokens_per_step"] == pytest.approx(1 + 0.84 * (1 + 0.6 + 0.36))  # each level: 1 - 0.4^2
    assert row["speedup"] == pytest.approx(step.speedup)


def test_capacity_takes_the_speculation(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["capacity", "--model", "llama3-8b", "--system", "h100-sxm", "--slo", "tpot_p99=0.006,ttft_p99=2",
            "--preset", "alpaca", "--requests", "100", "--max-runs", "5", "--max-batch", "16", "--json", "-q"]
    assert main(args) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main([*args, "--speculate", "free", "--draft-length", "3", "--acceptance", "1.0"]) == 0
    fast = json.loads(capsys.readouterr().out)
    assert fast["capacity_per_s"] > plain["capacity_per_s"]


def test_serve_takes_the_heuristic_draft_schedule(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--model", "llama3-8b", "--system", "h100-sxm", "--rate", "4", "--requests", "30",
                 "--speculate", "free", "--draft-length", "5", "--draft-schedule", "heuristic", "--max-draft-length",
                 "9", "--acceptance", "0.7", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["speculation"] == "free k=5..9" and summary["tokens_per_decode_step"] > 1


def test_speculate_interleave(capsys: pytest.CaptureFixture[str]) -> None:
    from decodex.sim.speculative import interleaved_speculative

    assert main(["speculate", "--model", "llama3-8b", "--system", "h100-sxm", "--batch", "64", "--lengths", "0,3",
                 "--draft", "model:llama3.2-1b@a100-80g", "--interleave", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    step = interleaved_speculative("llama3-8b", "h100-sxm", 64, context=1024,
                                   draft=Draft("model", model="llama3.2-1b", system="a100-80g"), draft_length=3,
                                   acceptance=ChainAcceptance((0.7,)))
    assert data["interleave"] and data["steps"][1]["speedup"] == pytest.approx(step.speedup)
