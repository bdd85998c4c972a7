"""A serving run is bounded: refused up front when its memory is above ``max_memory_bytes``,
stopped when its iterations grow past it or its wall time passes ``time_limit_s`` (one line
saying how far it got), and otherwise unchanged by the limits."""

from __future__ import annotations

import math

import numpy as np
import pytest

from decodex.app.cli import main
from decodex.core.errors import ArgumentError, DecodexError
from decodex.core.run_limits import LimitError, RunWatch, check_time_limit, memory_limit
from decodex.sim.serving import Workload, serve
from decodex.sim.serving import api as serving_api
from decodex.sim.serving.workload import Lengths

MODEL, SYSTEM = "llama3-8b", "h100-sxm"


def _workload(rate: float = 50.0) -> Workload:
    return Workload(arrival="poisson", rate=rate, input_lengths=Lengths.fixed(100), output_lengths=Lengths.fixed(20),
                    name="small")


def _held(requests: int, output: int = 20) -> float:
    """What the run holds before its iterations (sim/serving/api.py constants), bytes."""
    return (serving_api.RUN_BASE_BYTES + requests * serving_api.REQUEST_BYTES
            + requests * output * serving_api.TOKEN_BYTES)


def test_a_run_above_the_memory_limit_is_refused_before_drawing_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_draws(*args: object, **kwargs: object) -> None:
        raise AssertionError("requests were drawn before the memory check")

    monkeypatch.setattr(Workload, "generate", no_draws)
    with pytest.raises(LimitError, match=r"100,000 requests needs about .* above the limit of 1 MB") as refused:
        serve(MODEL, SYSTEM, _workload(), requests=100_000, max_memory_bytes="1M")
    assert "\n" not in str(refused.value) and isinstance(refused.value, DecodexError)


def test_the_output_tokens_drawn_count_against_the_limit() -> None:
    # 200 requests fit below the limit by their count alone, not with 20 tokens each
    limit = serving_api.RUN_BASE_BYTES + 200 * serving_api.REQUEST_BYTES + 10
    with pytest.raises(LimitError, match="200 requests"):
        serve(MODEL, SYSTEM, _workload(), requests=200, max_memory_bytes=limit)


def test_a_run_whose_iterations_outgrow_the_limit_is_stopped_with_its_progress() -> None:
    requests = 400  # at 2 requests/s each request runs nearly alone: ~20 iterations per request
    limit = _held(requests) + 100 * serving_api.ITERATION_BYTES
    with pytest.raises(LimitError, match=r"serving run stopped with [\d,]+ of 400 requests done: it holds .* above "
                                         r"the memory limit"):
        serve(MODEL, SYSTEM, _workload(rate=2.0), requests=requests, max_memory_bytes=limit)


def test_a_run_past_its_time_limit_is_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]

    def clock() -> float:
        now[0] += 10.0  # ten seconds per look at the clock: the first watch call is past 5 s
        return now[0]

    monkeypatch.setattr(RunWatch, "clock", staticmethod(clock))
    with pytest.raises(LimitError, match=r"time limit of 5 s \(--time-limit\) with [\d,]+ of 400 requests done"):
        serve(MODEL, SYSTEM, _workload(rate=2.0), requests=400, time_limit_s=5)


def test_limits_that_hold_change_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    free = serve(MODEL, SYSTEM, _workload(), requests=300, seed=4)
    bounded = serve(MODEL, SYSTEM, _workload(), requests=300, seed=4, time_limit_s=600, max_memory_bytes="8G",
                    progress=True)
    for name in ("finish_s", "first_token_s", "token_time_s", "iteration_duration_s"):
        np.testing.assert_array_equal(getattr(free, name), getattr(bounded, name))
    assert capsys.readouterr().out == ""  # progress goes to stderr only


def test_progress_is_one_line_on_stderr(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    now = [0.0]

    def clock() -> float:
        now[0] += 0.01
        return now[0]

    monkeypatch.setattr(RunWatch, "clock", staticmethod(clock))
    serve(MODEL, SYSTEM, _workload(rate=2.0), requests=400, progress=True)
    err = capsys.readouterr().err
    assert "serving run: " in err and "/400 requests" in err and err.endswith("\n")


@pytest.mark.parametrize(("options", "needle"), [
    ({"time_limit_s": -1}, "time_limit_s"), ({"time_limit_s": math.nan}, "time_limit_s"),
    ({"time_limit_s": True}, "time_limit_s"), ({"max_memory_bytes": "lots"}, "max_memory_bytes"),
    ({"max_memory_bytes": 0}, "max_memory_bytes"), ({"progress": "yes"}, "progress")])
def test_bad_limits_are_argument_errors(options: dict[str, object], needle: str) -> None:
    with pytest.raises(ArgumentError, match=needle):
        serve(MODEL, SYSTEM, _workload(), requests=10, **options)  # type: ignore[arg-type]


def test_limit_helpers() -> None:
    assert check_time_limit(None) is None and check_time_limit(5) == 5.0
    assert memory_limit("2G") == 2e9 and memory_limit(None) > 0


@pytest.mark.parametrize("argv", [
    ["--max-memory", "1M", "--requests", "5000"], ["--time-limit", "-1"], ["--max-memory", "a lot"]])
def test_cli_limits_are_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    try:
        status = main(["serve", "--model", MODEL, "--system", SYSTEM, "--rate", "5", *argv])
    except SystemExit as exit_:  # argparse refuses a bad option value itself
        status = exit_.code  # type: ignore[assignment]
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and err.startswith("decodex: error:")
    assert "--max-memory" in err or "--time-limit" in err


def test_disaggregated_runs_are_bounded_too(monkeypatch: pytest.MonkeyPatch) -> None:
    from decodex.sim.serving import disagg

    with pytest.raises(LimitError, match=r"100,000 requests needs about"):
        disagg.serve_disaggregated(MODEL, SYSTEM, SYSTEM, _workload(), requests=100_000, max_memory_bytes="1M")
    requests = 400
    held = (2 * serving_api.RUN_BASE_BYTES
            + requests * (2 * serving_api.REQUEST_BYTES + disagg.DISAGG_REQUEST_BYTES + 8)
            + requests * 20 * (serving_api.TOKEN_BYTES + disagg.DISAGG_TOKEN_BYTES))
    with pytest.raises(LimitError, match=r"serving run stopped with [\d,]+ of 400 requests done: it holds .* above"):
        disagg.serve_disaggregated(MODEL, SYSTEM, SYSTEM, _workload(rate=2.0), requests=requests,
                                   max_memory_bytes=held + 100 * serving_api.ITERATION_BYTES)
    free = disagg.serve_disaggregated(MODEL, SYSTEM, SYSTEM, _workload(), requests=100, seed=1)
    bounded = disagg.serve_disaggregated(MODEL, SYSTEM, SYSTEM, _workload(), requests=100, seed=1,
                                         max_memory_bytes="8G", time_limit_s=600)
    np.testing.assert_array_equal(free.token_time_s, bounded.token_time_s)
    with pytest.raises(ArgumentError, match="max_memory"):
        disagg.serve_disaggregated(MODEL, SYSTEM, SYSTEM, _workload(), requests=10, max_memory_bytes=-1)
