"""Bad command-line input ends in one line and exit status 2, never a traceback: the cases
found by the [reliability] review, kept as regression tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from decodex.app.cli import main

STEP = ["--model", "llama3-8b", "--system", "h100-sxm"]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "a-file.toml").write_text("x = 1\n")
    return {"dir": str(tmp_path), "file": str(tmp_path / "a-file.toml"),
            "missing_dir_file": str(tmp_path / "no-such-folder" / "out.json")}


CASES = {
    "batch 10**12 (7 TiB of contexts)": ["estimate", *STEP, "--batch", str(10**12)],
    "context 10**21": ["estimate", *STEP, "--context", str(10**21)],
    "context negative": ["estimate", *STEP, "--context", "-5"],
    "context 0 (a decode follows a prompt)": ["estimate", *STEP, "--context", "0"],
    "context 0 in a list": ["simulate", *STEP, "--context", "512,0"],
    "rate 1e-308": ["serve", *STEP, "--rate", "1e-308", "--requests", "4"],
    "trace into a folder": ["simulate", *STEP, "--trace", "{dir}"],
    "trace into a missing folder": ["simulate", *STEP, "--trace", "{missing_dir_file}"],
    "port beyond 65535": ["app", "--port", "70000"],
    "port 0": ["app", "--port", "0"],
    "address not an address": ["app", "--address", "999.1.1.1"],
    "study out is a file": ["study", "duplex", "--out", "{file}"],
    "study tpot nan": ["study", "afd", "--tpot-ms", "nan"],
    "study tpot negative": ["study", "afd", "--tpot-ms", "-1"],
    "speculate draft unknown": ["speculate", "--model", "llama3-8b", "--system", "h100-sxm", "--draft", "heads:x"],
    "speculate acceptance above 1": ["speculate", "--model", "llama3-8b", "--system", "h100-sxm", "--acceptance",
                                     "1.2"],
    "speculate self-draft too deep": ["speculate", "--model", "llama3-8b", "--system", "h100-sxm", "--draft",
                                      "self:99"],
    "serve speculate disaggregated": ["serve", "--model", "llama3-8b", "--prefill-systems", "h100-sxm",
                                      "--decode-systems", "h100-sxm", "--rate", "1", "--speculate",
                                      "model:llama3.2-1b"],
    "serve draft length 0": ["serve", "--model", "llama3-8b", "--system", "h100-sxm", "--rate", "1", "--speculate",
                             "free", "--draft-length", "0"],
    "study specdec lengths not numbers": ["study", "specdec", "--lengths", "1,x"],
    "study specdec empty list item": ["study", "specdec", "--batches", "1,,8"],
    "study specdec acceptance above 1": ["study", "specdec", "--acceptances", "0.5,1.5"],
    "study specdec unknown model": ["study", "specdec", "--models", "nope", "--batches", "1", "--contexts", "8",
                                    "--lengths", "0", "--acceptances", "0.5", "--out", "{missing_dir_file}"],
    "calibrate out is a folder": ["calibrate", "host", "--out", "{dir}"],
    "non-UTF-8 model file": ["estimate", "--model", "{latin1}", "--system", "h100-sxm"],
    "model file is a folder": ["estimate", "--model", "{dir}", "--system", "h100-sxm"],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line(case: str, files: dict[str, str], tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes('{"model_type": "llama", "x": "caf\xe9"}'.encode("latin-1"))
    argv = [a.format(**files, latin1=latin1) for a in CASES[case]]
    try:
        status = main(argv)
    except SystemExit as exit_info:  # argparse's own errors
        status = exit_info.code
    err = capsys.readouterr().err
    assert status == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("decodex: error:") and "Traceback" not in err, err
