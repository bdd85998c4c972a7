"""Fuzzing the command line: any arguments to estimate, simulate and serve end in a valid,
bounded result (exit 0) or one clean error line (exit 1 or 2), never a traceback.

Option values come from a pool of hostile strings (huge, tiny, negative, non-numbers, paths to
folders, to non-UTF-8 files, to deeply nested JSON) mixed with small valid ones, so that a valid
run stays short: hypothesis explores which options appear and with what.
"""

from __future__ import annotations

import argparse
import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from decodex.app.cli import build_parser, main

NUMBERS = ["0", "1", "2", "3", "-1", "1.5", "nan", "inf", "-inf", "1e308", "1e-308", "1e-300", str(10**21),
           "9" * 5000, "", "abc", "0x10", "1_000", " 4 "]
PRECISIONS = ["bf16", "fp8", "w4a16", "w=int4,a=int8,kv=int8,wbits=4.1", "w=int4", "w=bf16,a=bf16,kv=fp8,sparsity=2:4",
              "w=bf16,sparsity=5:4", "wbits=99", "nonsense", ""]
MODELS = ["llama3-8b", "mixtral-8x7b", "gpt3-7b", "nope-model", "{dir}", "{latin1}", "{deep}", "{empty}"]
SYSTEMS = ["h100-sxm", "8x-h100-sxm", "neupims", "duplex", "alveo-u280", "nope-system", "{dir}", "{latin1}", "{empty}"]
COMMANDS = ("estimate", "simulate", "serve")
# small valid values per option, so that hypothesis also reaches deep, valid combinations
VALID = {"--batch": ["1", "8", "64", "256"], "--tp": ["1", "2", "4", "8"], "--pp": ["1", "2", "4"],
         "--ep": ["1", "2", "8"], "--microbatches": ["1", "2", "4"], "--skew": ["0", "1", "2"],
         "--routing-seed": ["0", "7"], "--chunk": ["64", "512"], "--max-batch": ["1", "16", "256"],
         "--block-size": ["1", "16"], "--memory-utilization": ["0.5", "0.9", "1"], "--seed": ["0", "1"],
         "--input-len": ["1", "100", "4000"], "--output-len": ["1", "50"], "--slo-ttft": ["0.1", "1"],
         "--slo-tpot": ["0.01", "0.1"], "--rate": ["1", "5", "50"], "--requests": ["1", "20"]}
CHOICES_NOISE = ["", "bogus", "UNIFORM"]


def _options(command: str) -> list[argparse.Action]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return [a for a in sub.choices[command]._actions if a.option_strings and a.dest != "help"]


def _value(action: argparse.Action) -> st.SearchStrategy[str]:
    name = action.option_strings[0]
    if name == "--model":
        return st.sampled_from(MODELS)
    if name == "--system":
        return st.sampled_from(SYSTEMS)
    if name == "--precision":
        return st.sampled_from(PRECISIONS)
    if name == "--context":
        return st.sampled_from([*NUMBERS, "100,2000", "5,-1", "1,2,3,4,5,6,7,8", "4096", "8192", "100000"])
    if name in ("--trace",):
        return st.sampled_from(["{dir}", "{missing}/x", "{latin1}", "{file}"])
    if action.choices:
        return st.sampled_from([*map(str, action.choices), *CHOICES_NOISE])
    return st.one_of(st.sampled_from(VALID.get(name, ["1"])), st.sampled_from(NUMBERS))


@st.composite
def argv(draw: st.DrawFn) -> list[str]:
    command = draw(st.sampled_from(COMMANDS))
    actions = _options(command)
    required = [a for a in actions if a.required]
    optional = [a for a in actions if not a.required]
    optional = [a for a in optional if a.dest != "json"]
    chosen = required + draw(st.lists(st.sampled_from(optional), unique_by=lambda a: a.dest, max_size=6))
    out = [command, "--json"]
    for action in chosen:
        if action.nargs == 0:  # a flag
            out.append(action.option_strings[0])
        else:
            out += [action.option_strings[0], draw(_value(action))]
    if command == "serve" and "--rate" not in out and "--trace" not in out and draw(st.booleans()):
        out += ["--rate", draw(st.sampled_from(["1", "5", "1e-308", "nan", "1e308"]))]
    if command == "serve" and "--requests" not in out:
        out += ["--requests", "20"]  # a valid serve stays short
    return out


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("fuzz-cli")
    (root / "latin1.json").write_bytes('{"model_type": "llama", "x": "caf\xe9"}'.encode("latin-1"))
    (root / "deep.json").write_text("[" * 10000 + "]" * 10000)
    (root / "empty.toml").write_text("")
    (root / "file.csv").write_text("arrival_s,input_tokens,output_tokens,extra\n0,10,10,1\nx,y,z,w\n")
    (root / "dir").mkdir()
    return {"dir": str(root / "dir"), "latin1": str(root / "latin1.json"), "deep": str(root / "deep.json"),
            "empty": str(root / "empty.toml"), "file": str(root / "file.csv"), "missing": str(root / "no-such")}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(args=argv())
def test_any_arguments_end_in_a_result_or_one_line(args: list[str], paths: dict[str, str],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    args = [a.format(**paths) for a in args]
    try:
        status = main(args)
    except SystemExit as exit_info:  # argparse refuses the arguments
        status = exit_info.code
    out, err = capsys.readouterr()
    assert "Traceback" not in err, (args, err)
    if status == 0:
        result = json.loads(out)
        for key in ("step_time_s", "tokens_per_s", "makespan_s", "throughput_tokens_per_s"):
            if key in result:
                assert result[key] is not None and math.isfinite(result[key]) and result[key] >= 0, (args, key)
        return
    lines = [line for line in err.splitlines() if line.strip()]
    # 4: a step that does not fit in memory (EXIT_DOES_NOT_FIT), said in the same one line
    assert status in (1, 2, 4) and len(lines) == 1 and lines[0].startswith("decodex: error:"), (args, status, err)
