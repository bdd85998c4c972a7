"""``decodex serve``: the sub-command built by ``add_serve_parser`` on its own parser."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from decodex.app.cli import _Parser, main
from decodex.app.cli_serve import _workload, add_serve_parser
from decodex.core.errors import ArgumentError, DecodexError
from decodex.sim.serving.traces import load_trace


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


def test_shipped_trace_scaled_and_windowed(capsys: pytest.CaptureFixture[str]) -> None:
    model = ("--model", "llama3-8b", "--system", "h100-sxm")
    data = json.loads(run(capsys, *model, "--trace", "azure-conv-2023", "--rate-scale", "2", "--requests", "50",
                          "--json"))
    assert data["requests"] == 50
    args = parse(*model, "--trace", "azure-code-2023", "--trace-window", "600:30", "--rate-scale", "1.5")
    assert args.trace_window == (600.0, 30.0) and args.rate_scale == 1.5
    workload = _workload(args)
    expected = load_trace("azure-code-2023", rate_scale=1.5, start_s=600.0, duration_s=30.0)
    np.testing.assert_array_equal(workload.generate().arrival_s, expected.arrival_s)
    assert parse(*model, "--trace", "x.csv", "--trace-window", "600:").trace_window == (600.0, None)
    args = parse(*model, "--trace", "azure-code-2023", "--trace-window", "600:30", "--trace-repeat", "3")
    repeated = load_trace("azure-code-2023", start_s=600.0, duration_s=30.0, repeat=3)
    np.testing.assert_array_equal(_workload(args).generate().arrival_s, repeated.arrival_s)


def test_trace_options_are_checked() -> None:
    model = ("--model", "llama3-8b", "--system", "h100-sxm")
    for bad in (("--rate-scale", "0"), ("--rate-scale", "-1"), ("--rate-scale", "x"), ("--trace-window", "600"),
                ("--trace-window", "600:0"), ("--trace-window", "-5:10"), ("--trace-window", ":10"),
                ("--trace-repeat", "0"), ("--trace-repeat", "1.5")):
        with pytest.raises(SystemExit) as exit_info:
            parse(*model, "--trace", "azure-conv-2023", *bad)
        assert exit_info.value.code == 2
    args = parse(*model, "--rate", "1", "--rate-scale", "2")
    with pytest.raises(ArgumentError, match="--rate-scale: only with --trace"):
        args.func(args)
    args = parse(*model, "--rate", "1", "--trace-repeat", "2")
    with pytest.raises(ArgumentError, match="--trace-repeat: only with --trace"):
        args.func(args)
    args = parse(*model, "--trace", "azure-conv-2023", "--trace-window", "5000:10", "--requests", "5")
    with pytest.raises(ArgumentError, match="start_s"):
        args.func(args)


def test_traces_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["traces"]) == 0
    out = capsys.readouterr().out
    for text in ("azure-conv-2023", "azure-code-2023", "19,366", "8,819", "CC-BY-4.0", "Splitwise"):
        assert text in out
    assert main(["traces", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["trace"] for row in rows] == ["azure-code-2023", "azure-conv-2023"]


def test_replicas_and_router_json(capsys: pytest.CaptureFixture[str]) -> None:
    data = json.loads(run(capsys, *BASE, "--replicas", "2", "--router", "least-outstanding", "--json"))
    assert data["replicas"] == 2 and data["router"] == "least-outstanding" and data["requests"] == 60
    assert sum(r["requests"] for r in data["per_replica"]) == 60
    assert sum(r["output_tokens"] for r in data["per_replica"]) == data["output_tokens"]
    for key in ("ttft_s", "tpot_s", "e2e_s"):
        assert {"p50", "p90", "p99"} <= set(data[key])


def test_heterogeneous_systems_report(capsys: pytest.CaptureFixture[str]) -> None:
    out = run(capsys, "--model", "llama3-8b", "--systems", "h100-sxm,h100-sxm,h200", "--requests", "30",
              "--rate", "20")
    for text in ("3 replicas", "2 x h100-sxm, 1 x h200", "round-robin", "TTFT", "throughput", "replica", "h200"):
        assert text in out


def test_cluster_option_errors() -> None:
    for argv, flag in (((), "--system"), (("--system", "h100-sxm", "--systems", "h200"), "--system"),
                       (("--systems", "h200", "--replicas", "2"), "--replicas")):
        args = parse("--model", "llama3-8b", "--rate", "5", *argv)
        with pytest.raises(ArgumentError, match=f"^{flag}:"):
            args.func(args)
    for bad in (("--replicas", "0"), ("--router", "random"), ("--systems", "h100-sxm,,h200")):
        with pytest.raises(SystemExit) as exit_info:
            parse("--model", "llama3-8b", "--system", "h100-sxm", *bad)
        assert exit_info.value.code == 2


def test_disaggregated_serving_from_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    data = json.loads(run(capsys, "--model", "llama3-8b", "--prefill-systems", "h100-sxm", "--decode-systems",
                          "h20", "--requests", "30", "--rate", "5", "--json"))
    assert data["requests"] == 30
    out = run(capsys, "--model", "llama3-8b", "--prefill-systems", "h100-sxm", "--decode-systems", "h100-sxm",
              "--requests", "20", "--rate", "5", "--no-layerwise-overlap")
    for text in ("prefill on h100-sxm", "decode on h100-sxm", "KV transfer", "after the prefill"):
        assert text in out
    args = parse("--model", "llama3-8b", "--prefill-systems", "h100-sxm", "--rate", "5")
    with pytest.raises(ArgumentError, match=r"^--decode-systems:"):
        args.func(args)
    data = json.loads(run(capsys, "--model", "llama3-8b", "--prefill-systems", "h100-sxm", "--decode-systems",
                          "h100-sxm,h20", "--decode-router", "round-robin", "--requests", "20", "--rate", "5",
                          "--json"))
    assert data["decode_router"] == "round-robin"
    args = parse(*BASE, "--decode-router", "least-kv")
    with pytest.raises(ArgumentError, match=r"^--decode-router:"):
        args.func(args)


@pytest.mark.parametrize(("extra", "tables"), [
    ((), {"requests", "iterations"}),
    (("--replicas", "2"), {"requests", "replicas"}),
])
def test_out_writes_parquet_tables(extra: tuple[str, ...], tables: set[str], tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    import pandas as pd

    out = tmp_path / "run"
    data = json.loads(run(capsys, *BASE, *extra, "--json", "--out", str(out)))
    assert {p.stem for p in out.glob("*.parquet")} == tables
    requests = pd.read_parquet(out / "requests.parquet")
    assert len(requests) == data["requests"]
    assert json.loads((out / "summary.json").read_text())["output_tokens"] == data["output_tokens"]
