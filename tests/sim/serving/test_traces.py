"""Shipped production traces and the trace reader: replayed exactly, scaled, windowed, bursts kept."""

from __future__ import annotations

import csv
import gzip
import io
from decimal import Decimal
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from decodex.core.errors import ArgumentError, SpecError
from decodex.sim.serving import Workload
from decodex.sim.serving.traces import TRACES, list_traces, load_trace, read_trace, trace_file, trace_summary

NAMES = ("azure-conv-2023", "azure-code-2023")
FOLDER = "trace_data/azure-llm-inference-2023"


def raw(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The shipped CSV read without the reader: seconds from the first row (exact decimal
    arithmetic on the time of day; every row is on one date), prompt and output tokens."""
    with trace_file(name).open("rb") as handle:
        rows = list(csv.DictReader(io.TextIOWrapper(gzip.GzipFile(fileobj=handle), encoding="utf-8")))
    assert {row["TIMESTAMP"][:10] for row in rows} == {"2023-11-16"}

    def seconds(stamp: str) -> Decimal:
        hours, minutes, secs = stamp[11:].split(":")
        return int(hours) * 3600 + int(minutes) * 60 + Decimal(secs)

    times = [seconds(row["TIMESTAMP"]) for row in rows]
    assert times == sorted(times)  # recorded in order: the reader's stable sort keeps the rows' order
    first = min(times)
    return (np.array([float(t - first) for t in times]), np.array([int(row["ContextTokens"]) for row in rows]),
            np.array([int(row["GeneratedTokens"]) for row in rows]))


@pytest.fixture(scope="module", params=NAMES)
def trace(request: pytest.FixtureRequest) -> tuple[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    return request.param, raw(request.param)


def test_shipped_files_are_in_the_package_with_license_and_attribution() -> None:
    assert list_traces() == sorted(NAMES) and set(TRACES) == set(NAMES)
    folder = resources.files("decodex.sim.serving").joinpath(FOLDER)
    for name in NAMES:
        assert trace_file(name).is_file()
    license_text = folder.joinpath("LICENSE").read_text(encoding="utf-8-sig")
    assert "Attribution 4.0 International" in license_text
    readme = folder.joinpath("README.md").read_text(encoding="utf-8")
    for text in ("CC-BY 4.0", "Splitwise", "ISCA 2024", "github.com/Azure/AzurePublicDataset", "gzip"):
        assert text in readme
    assert folder.joinpath("AzureLLMInferenceDataset2023.md").is_file()
    for info in TRACES.values():
        assert info.license == "CC-BY-4.0" and "Splitwise" in info.citation and info.source_url.startswith("https")


def test_replay_reproduces_the_trace_exactly(trace: tuple[str, tuple[np.ndarray, ...]]) -> None:
    name, (times, inputs, outputs) = trace
    got = load_trace(name)
    np.testing.assert_allclose(got.arrival_s, times, rtol=0, atol=1e-9)  # the trace's resolution is 100 ns
    np.testing.assert_array_equal(got.input_tokens, inputs)
    np.testing.assert_array_equal(got.output_tokens, outputs)
    assert got.arrival_s[0] == 0.0 and (inputs >= 1).all() and (outputs >= 1).all()
    generated = Workload.from_trace(name).generate()  # the serving path replays the same requests
    for a, b in zip(generated, got, strict=True):
        np.testing.assert_array_equal(a, b)


def test_rate_scale_divides_every_gap_and_keeps_the_order(trace: tuple[str, tuple[np.ndarray, ...]]) -> None:
    name, _ = trace
    base = load_trace(name)
    for scale in (2.0, 0.5, 3.7):
        fast = load_trace(name, rate_scale=scale)
        np.testing.assert_array_equal(fast.arrival_s, base.arrival_s / scale)
        np.testing.assert_allclose(np.diff(fast.arrival_s), np.diff(base.arrival_s) / scale, rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(fast.input_tokens, base.input_tokens)
        np.testing.assert_array_equal(fast.output_tokens, base.output_tokens)
        generated = Workload.from_trace(name, rate_scale=scale).generate()
        np.testing.assert_array_equal(generated.arrival_s, fast.arrival_s)
        np.testing.assert_array_equal(generated.input_tokens, fast.input_tokens)


def test_a_window_selects_exactly_its_rows(trace: tuple[str, tuple[np.ndarray, ...]]) -> None:
    name, (times, inputs, outputs) = trace
    start, duration = 600.0, 300.0
    inside = (times >= start) & (times < start + duration)
    got = load_trace(name, start_s=start, duration_s=duration)
    assert got.arrival_s.size == inside.sum() > 0
    np.testing.assert_allclose(got.arrival_s, times[inside] - start, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(got.input_tokens, inputs[inside])
    np.testing.assert_array_equal(got.output_tokens, outputs[inside])
    first = load_trace(name, start_s=start, duration_s=duration, max_requests=7)
    np.testing.assert_array_equal(first.input_tokens, inputs[inside][:7])
    tail = load_trace(name, start_s=3000.0)
    assert tail.arrival_s.size == (times >= 3000.0).sum()
    windowed = Workload.from_trace(name, start_s=start, duration_s=duration, rate_scale=2.0).generate(10)
    np.testing.assert_array_equal(windowed.arrival_s, got.arrival_s[:10] / 2.0)


def test_bursts_are_kept(trace: tuple[str, tuple[np.ndarray, ...]]) -> None:
    """Requests per 1 s bin equal the raw trace's (also at twice the rate, per 0.5 s bin), and
    the gaps are at least as variable as a Poisson stream's (coefficient of variation >= 1)."""
    name, (times, _, _) = trace
    bins = np.arange(0.0, times[-1] + 2.0)
    expected = np.histogram(times, bins)[0]
    np.testing.assert_array_equal(np.histogram(load_trace(name).arrival_s, bins)[0], expected)
    np.testing.assert_array_equal(np.histogram(load_trace(name, rate_scale=2.0).arrival_s, bins / 2.0)[0], expected)
    gaps = np.diff(load_trace(name).arrival_s)
    assert gaps.std() / gaps.mean() >= 1.0 and expected.max() >= 10


@pytest.mark.parametrize(("kwargs", "argument"), [
    ({"rate_scale": 0.0}, "rate_scale"),
    ({"rate_scale": -2.0}, "rate_scale"),
    ({"rate_scale": float("nan")}, "rate_scale"),
    ({"rate_scale": True}, "rate_scale"),
    ({"start_s": -1.0}, "start_s"),
    ({"start_s": 4000.0}, "start_s"),  # after the last request (the trace spans ~3500 s)
    ({"start_s": 10.0, "duration_s": 0.0}, "duration_s"),
    ({"start_s": 100.0, "duration_s": 1e-7}, "duration_s"),  # a window with no request
    ({"max_requests": 0}, "max_requests"),
    ({"repeat": 0}, "repeat"),
    ({"repeat": 2.0}, "repeat"),
    ({"repeat": 10**7}, "repeat"),  # 1.9e11 requests
])
def test_bad_arguments_name_the_argument(kwargs: dict[str, object], argument: str) -> None:
    with pytest.raises(ArgumentError, match=argument):
        load_trace("azure-conv-2023", **kwargs)  # type: ignore[arg-type]


def test_repeat_plays_the_window_back_to_back_at_its_rate() -> None:
    window = load_trace("azure-code-2023", start_s=100.0, duration_s=200.0)
    n, span = window.arrival_s.size, float(window.arrival_s[-1] - window.arrival_s[0])
    period = span + span / (n - 1)  # the window's span and one mean gap
    played = load_trace("azure-code-2023", start_s=100.0, duration_s=200.0, repeat=3, rate_scale=2.0)
    assert played.arrival_s.size == 3 * n
    for copy in range(3):
        part = slice(copy * n, (copy + 1) * n)
        np.testing.assert_allclose(played.arrival_s[part], (window.arrival_s + copy * period) / 2.0, rtol=1e-12)
        np.testing.assert_array_equal(played.input_tokens[part], window.input_tokens)
        np.testing.assert_array_equal(played.output_tokens[part], window.output_tokens)
    assert (np.diff(played.arrival_s) >= 0).all()
    rate = (n - 1) / span
    assert (3 * n - 1) / float(played.arrival_s[-1] - played.arrival_s[0]) == pytest.approx(2.0 * rate, rel=1e-9)
    first = load_trace("azure-code-2023", start_s=100.0, duration_s=200.0, repeat=10**6, max_requests=n + 5)
    np.testing.assert_array_equal(first.arrival_s, played.arrival_s[:n + 5] * 2.0)  # only what is kept is built
    drawn = Workload.from_trace("azure-conv-2023", repeat=2).generate(25_000)
    assert drawn.arrival_s.size == 25_000 and (np.diff(drawn.arrival_s) >= 0).all()


def test_unknown_names_and_bad_workload_fields() -> None:
    with pytest.raises(ArgumentError, match=r"trace: 'azure-conv-2024'.*did you mean 'azure-conv-2023'"):
        load_trace("azure-conv-2024")
    with pytest.raises(ArgumentError, match="trace"):
        Workload.from_trace("azure-chat").generate()
    for kwargs, argument in (({"rate_scale": 0}, "rate_scale"), ({"start_s": -1}, "start_s"),
                             ({"duration_s": 0}, "duration_s"), ({"repeat": 0}, "repeat")):
        with pytest.raises(ArgumentError, match=argument):
            Workload.from_trace("azure-conv-2023", **kwargs)  # type: ignore[arg-type]
    workload = Workload.from_trace("azure-code-2023", rate_scale=2.0)
    assert workload.trace == "azure-code-2023" and workload.name == "trace:azure-code-2023"


def test_user_files_in_either_schema(tmp_path: Path) -> None:
    azure = tmp_path / "azure.csv"
    azure.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:00:01.5,30,3\n"
                     "2023-11-16 18:00:00.25,10,1\n\n2023-11-16 18:00:01.5,20,2\n")
    got = load_trace(azure, rate_scale=2.0)
    np.testing.assert_array_equal(got.arrival_s, [0.0, 0.625, 0.625])
    np.testing.assert_array_equal(got.input_tokens, [10, 30, 20])  # equal times keep the file's order
    np.testing.assert_array_equal(Workload.from_trace(azure).generate().output_tokens, [1, 3, 2])
    ours = tmp_path / "ours.csv"
    ours.write_text("arrival_s,input_tokens,output_tokens\n0.5,10,3\n2.0,20,4\n4.0,30,5\n")
    got = load_trace(str(ours), start_s=1.0, duration_s=3.0)
    np.testing.assert_array_equal(got.arrival_s, [1.0])
    np.testing.assert_array_equal(load_trace(ours).arrival_s, [0.5, 2.0, 4.0])  # as written
    bad = tmp_path / "bad.csv"
    bad.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:00:00,10,1\n\n2023-11-16 18:00:01,10,0\n")
    with pytest.raises(SpecError, match=r"bad\.csv: GeneratedTokens: line 4"):
        load_trace(bad)
    bad.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\nyesterday,10,1\n")
    with pytest.raises(SpecError, match="TIMESTAMP: line 2"):
        load_trace(bad)


def test_read_trace_hands_out_copies() -> None:
    first = read_trace("azure-code-2023")
    first.input_tokens[:] = 0
    assert read_trace("azure-code-2023").input_tokens.min() >= 1


def test_summary_numbers(trace: tuple[str, tuple[np.ndarray, ...]]) -> None:
    name, (times, inputs, outputs) = trace
    summary = trace_summary(name)
    assert summary["requests"] == times.size
    assert summary["duration_s"] == pytest.approx(times[-1], abs=1e-9)
    assert summary["mean_rate_per_s"] == pytest.approx((times.size - 1) / times[-1])
    assert summary["input_tokens_p50"] == np.percentile(inputs, 50)
    assert summary["output_tokens_p99"] == np.percentile(outputs, 99)
    assert summary["output_tokens_mean"] == pytest.approx(outputs.mean())
    assert summary["license"] == "CC-BY-4.0"
