"""``decodex serve``: the sub-command built by ``add_serve_parser`` on its own parser."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from decodex.app.cli import _Parser
from decodex.app.cli_serve import add_serve_parser
from decodex.core.errors import ArgumentError, DecodexError


def parse(*argv: str) -> argparse.Namespace:
    parser = _Parser(prog="decodex")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    add_serve_parser(sub)
    return parser.parse_args(["serve", *argv])


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    args = parse(*argv)
    assert args.func(args) == 0
    return capsys.readouterr().out


BASE = ("--model", "llama3-8b", "--system", "h100-sxm", "--requests", "60", "--rate", "20")


def test_json_has_the_summary_keys(capsys: pytest.CaptureFixture[str]) -> None:
    data = json.loads(run(capsys, *BASE, "--scheduler", "chunked", "--chunk", "256", "--json"))
    for key in ("ttft_s", "tpot_s", "e2e_s", "tbt_s"):
        assert {"p50", "p90", "p99"} <= set(data[key])
    for key in ("throughput_tokens_per_s", "goodput_requests_per_s", "requests", "output_tokens", "preemptions"):
        assert key in data
    assert data["requests"] == 60 and data["scheduler"] == "chunked"


def test_text_report(capsys: pytest.CaptureFixture[str]) -> None:
    out = run(capsys, *BASE, "--dataset", "fixed", "--input-len", "128", "--output-len", "16", "--tp", "2",
              "--precision", "fp8", "--max-batch", "8", "--seed", "3")
    for text in ("TTFT", "TPOT", "E2E", "TBT", "p99", "throughput", "goodput", "preemptions", "tp2"):
        assert text in out


def test_trace_option(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("arrival_s,input_tokens,output_tokens\n0,10,2\n0.1,20,3\n")
    data = json.loads(run(capsys, "--model", "llama3-8b", "--system", "h100-sxm", "--trace", str(path), "--json"))
    assert data["requests"] == 2 and data["output_tokens"] == 5


def test_missing_rate_and_bad_values() -> None:
    args = parse("--model", "llama3-8b", "--system", "h100-sxm")
    with pytest.raises(ArgumentError, match="--rate"):
        args.func(args)
    for bad in (("--rate", "0"), ("--rate", "x"), ("--requests", "0"), ("--scheduler", "nope"),
                ("--memory-utilization", "1.5")):
        with pytest.raises(SystemExit) as exit_info:
            parse("--model", "llama3-8b", "--system", "h100-sxm", *bad)
        assert exit_info.value.code == 2


def test_bad_trace_is_a_decodex_error(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("arrival_s,input_tokens\n0,10\n")
    args = parse("--model", "llama3-8b", "--system", "h100-sxm", "--trace", str(path))
    with pytest.raises(DecodexError, match="output_tokens"):
        args.func(args)
