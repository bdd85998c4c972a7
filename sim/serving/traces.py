"""Production request traces shipped with Decodex, and the reader of every trace file.

Shipped traces (:data:`TRACES`, data under ``trace_data/`` next to this module, gzip-compressed):
``azure-conv-2023`` and ``azure-code-2023``, the Azure LLM inference traces 2023 (conversation
and code-completion services, one hour each; CC-BY 4.0; Patel et al., "Splitwise", ISCA 2024).

:func:`load_trace` replays a trace as recorded: arrival times in seconds from the trace's first
request (bursts kept, never re-drawn), lengths in tokens; ``rate_scale`` replays it faster or
slower, ``start_s``/``duration_s`` cut a window of it, ``max_requests`` keeps its first requests.
A trace file is either the Azure schema (``TIMESTAMP``, ``ContextTokens``, ``GeneratedTokens``)
or Decodex's own (``arrival_s``, ``input_tokens``, ``output_tokens``; read by
``workload._read_trace``). A row whose length is not an integer >= 1 token is refused
(SpecError naming the line); the shipped traces have none. Prompts longer than a model's window
are left to ``Workload.generate(max_total_tokens=...)``, which caps them.
"""

from __future__ import annotations

import csv
import functools
import io
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from decodex.core.errors import ArgumentError, SpecError, did_you_mean
from decodex.core.input_files import MAX_TRACE_BYTES, read_text
from decodex.sim.serving.workload import MAX_TOKENS, RequestArrays, _line_of_row, _read_trace, check_float, check_int

if TYPE_CHECKING:
    import pandas as pd

AZURE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
RATE_SCALE_RANGE = (0.0, 1e6)  # open at 0: x replays at x times the recorded rate
MAX_WINDOW_S = 1e9  # s; start and length of a window (~32 years)
MAX_REQUESTS = 10**8  # requests (as Workload.generate)
_PACKAGE = "decodex.sim.serving"
_AZURE_URL = "https://github.com/Azure/AzurePublicDataset/blob/master/AzureLLMInferenceDataset2023.md"
_AZURE_CITATION = ("Pratyush Patel, Esha Choukse, Chaojie Zhang, Aashaka Shah, Íñigo Goiri, Saeed Maleki, "
                   "Ricardo Bianchini. \"Splitwise: Efficient generative LLM inference using phase splitting\", "
                   "ISCA 2024")


@dataclass(frozen=True)
class TraceInfo:
    """A shipped trace: its ``file`` (relative to this package's folder), what it is, its license
    and the citation its license asks for, and where it comes from."""

    name: str
    file: str
    description: str
    license: str = "CC-BY-4.0"
    citation: str = _AZURE_CITATION
    source_url: str = _AZURE_URL


TRACES: dict[str, TraceInfo] = {info.name: info for info in (
    TraceInfo("azure-conv-2023", "trace_data/azure-llm-inference-2023/AzureLLMInferenceTrace_conv.csv.gz",
              "Azure LLM inference 2023, conversation service: one hour of production requests"),
    TraceInfo("azure-code-2023", "trace_data/azure-llm-inference-2023/AzureLLMInferenceTrace_code.csv.gz",
              "Azure LLM inference 2023, code-completion service: one hour of production requests"),
)}


def list_traces() -> list[str]:
    """Names of the shipped traces, sorted."""
    return sorted(TRACES)


def trace_file(name: str) -> Traversable:
    """The packaged file of the shipped trace ``name`` (found through ``importlib.resources``)."""
    return resources.files(_PACKAGE).joinpath(_info(name).file)


def _info(name: str) -> TraceInfo:
    if name not in TRACES:
        hint = did_you_mean(name, TRACES)
        raise ArgumentError(f"trace: {name!r:.80} is not a shipped trace ({', '.join(list_traces())})"
                            + (f"; {hint}" if hint else ""))
    return TRACES[name]


def _azure_arrays(frame: pd.DataFrame, source: str, line: Any) -> RequestArrays:
    """Seconds from the first request and lengths (tokens) of an Azure-schema frame, sorted
    stably by time; ``line(row)`` gives the file line of a row for errors."""
    import pandas as pd

    for column in AZURE_COLUMNS:
        if column not in frame.columns:
            raise SpecError(source, column, f"missing column; the Azure schema has {', '.join(AZURE_COLUMNS)}")
    if frame.empty:
        raise SpecError(source, "", "the trace has no rows")
    stamps = pd.to_datetime(frame["TIMESTAMP"], format="ISO8601", utc=True, errors="coerce")
    bad = stamps.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise SpecError(source, "TIMESTAMP", f"line {line(row)} holds {str(frame['TIMESTAMP'].iloc[row])!r:.40}; "
                                             "must be a date and time such as 2023-11-16 18:15:46.6805900")
    ns = stamps.dt.tz_convert(None).to_numpy(dtype="datetime64[ns]").astype(np.int64)
    lengths = []
    for column in AZURE_COLUMNS[1:]:
        data = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(data) | (data < 1) | (data != np.floor(data)) | (data > MAX_TOKENS)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise SpecError(source, column, f"line {line(row)} holds {str(frame[column].iloc[row])!r:.40}; "
                                            f"must be an integer in [1, {MAX_TOKENS}] tokens")
        lengths.append(data.astype(np.int64))
    order = np.argsort(ns, kind="stable")
    ns = ns[order]
    return RequestArrays((ns - ns[0]) / 1e9, lengths[0][order], lengths[1][order])


def _header(text: str) -> tuple[int, list[str]]:
    """The (1-based) line of the first non-blank line and its column names (empty when none)."""
    for number, line in enumerate(io.StringIO(text), start=1):
        if line.strip():
            try:
                return number, [name.strip() for name in next(csv.reader([line]))]
            except csv.Error:
                return number, []
    return 0, []


@functools.cache
def _shipped(name: str) -> RequestArrays:
    """The whole shipped trace ``name``, read once per process; arrays are read-only."""
    import pandas as pd

    with trace_file(name).open("rb") as handle:
        frame = pd.read_csv(handle, compression="gzip", dtype=str)
    arrays = _azure_arrays(frame, name, lambda row: row + 2)
    for array in arrays:
        array.setflags(write=False)
    return arrays


def _read_file(path: Path) -> RequestArrays:
    """A trace CSV file in the Azure or the ``arrival_s`` schema (the header decides)."""
    import pandas as pd

    source = str(path)
    text = read_text(path, max_bytes=MAX_TRACE_BYTES, what="trace file")
    header_line, names = _header(text)
    if set(AZURE_COLUMNS) <= set(names):
        try:
            frame = pd.read_csv(io.StringIO(text), skiprows=header_line - 1, dtype=str, index_col=False,
                                skip_blank_lines=True)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as err:
            raise SpecError(source, "", f"not a readable CSV file ({str(err).strip()})") from None
        return _azure_arrays(frame, source, lambda row: _line_of_row(text, header_line, row))
    return RequestArrays(*_read_trace(path, text))


def read_trace(name_or_path: str | Path) -> RequestArrays:
    """The whole trace, sorted stably by arrival: a shipped trace's name (a ``str`` in
    :data:`TRACES`) or a CSV file (a ``Path``, or a ``str`` that is not a shipped name).

    Azure-schema files: arrival in seconds from the first request. ``arrival_s`` files: arrival
    times as written (s). Lengths in tokens. New arrays every call (the caller may write them).
    """
    if isinstance(name_or_path, str) and name_or_path in TRACES:
        return RequestArrays(*(array.copy() for array in _shipped(name_or_path)))
    if not isinstance(name_or_path, str | Path) or not str(name_or_path).strip():
        raise ArgumentError(f"trace: {name_or_path!r:.80} is neither a shipped trace ({', '.join(list_traces())}) "
                            "nor a CSV file path")
    path = Path(name_or_path)
    if not path.exists() and not path.suffix and len(path.parts) == 1:  # a name, not a file
        _info(str(name_or_path))
    return _read_file(path)


def load_trace(name_or_path: str | Path, *, rate_scale: float = 1.0, start_s: float = 0.0,
               duration_s: float | None = None, max_requests: int | None = None, repeat: int = 1) -> RequestArrays:
    """Requests of a trace (see :func:`read_trace`) replayed exactly as recorded, bursts kept.

    ``start_s``/``duration_s`` (s, on the trace's own timeline): keep the requests arriving in
    ``[start_s, start_s + duration_s)`` (to the end when ``duration_s`` is None) and shift them
    by ``-start_s``, so the window starts at 0 s. ``rate_scale`` (> 0): replay at that many
    times the recorded rate: every arrival time, hence every gap, divided by it (2 halves the
    gaps). ``repeat``: play the window that many times back to back (a long run from a short
    trace): copy ``k`` is the window shifted by ``k`` periods, a period being the window's span
    plus its mean gap between arrivals (1 s for a window of one instant), so the mean rate is
    kept (before ``rate_scale``).
    ``max_requests``: at most that many, the (repeated) window's first.

    Ranges: ``rate_scale`` (0, 1e6]; ``start_s`` [0, 1e9] s and below the trace's last arrival;
    ``duration_s`` (0, 1e9] s; ``max_requests`` [1, 1e8]; ``repeat`` [1, 1e8], at most 1e8
    requests in all. ArgumentError names the argument out of range, a window with no request, or
    an unknown trace name; SpecError a bad file.
    """
    scale = check_float("rate_scale", rate_scale, *RATE_SCALE_RANGE, lo_open=True)
    start = check_float("start_s (s)", start_s, 0.0, MAX_WINDOW_S)
    if duration_s is not None:
        check_float("duration_s (s)", duration_s, 0.0, MAX_WINDOW_S, lo_open=True)
    if max_requests is not None:
        check_int("max_requests", max_requests, 1, MAX_REQUESTS)
    copies = check_int("repeat", repeat, 1, MAX_REQUESTS)
    arrival, inputs, outputs = read_trace(name_or_path)
    lo = int(np.searchsorted(arrival, start, side="left"))
    hi = arrival.size if duration_s is None else int(np.searchsorted(arrival, start + duration_s, side="left"))
    if hi <= lo:
        span = f"the trace's requests arrive in [{arrival[0]:g}, {arrival[-1]:g}] s"
        if start > arrival[-1]:
            raise ArgumentError(f"start_s: {start:g} s is after the last request; {span}")
        raise ArgumentError(f"duration_s: the window [{start:g}, {start + float(duration_s or 0):g}) s holds no "
                            f"request; {span}")
    window, inputs, outputs = arrival[lo:hi] - start, inputs[lo:hi], outputs[lo:hi]
    if copies > 1:
        window, inputs, outputs = _repeated(window, inputs, outputs, copies, max_requests)
    if max_requests is not None:
        window, inputs, outputs = window[:max_requests], inputs[:max_requests], outputs[:max_requests]
    return RequestArrays(window / scale, inputs, outputs)


def _repeated(arrival: np.ndarray, inputs: np.ndarray, outputs: np.ndarray, copies: int,
              max_requests: int | None) -> RequestArrays:
    """``copies`` copies of a window back to back (``load_trace``'s ``repeat``), no more than
    ``max_requests`` requests' worth; arrival times in s from the window's start."""
    if max_requests is not None:
        copies = min(copies, -(-max_requests // arrival.size))
    if copies * arrival.size > MAX_REQUESTS:
        raise ArgumentError(f"repeat: {copies} copies of {arrival.size:,} requests exceed {MAX_REQUESTS:,} requests")
    span = float(arrival[-1] - arrival[0])
    period = span + (span / (arrival.size - 1) if arrival.size > 1 else 1.0)  # s; one mean gap between copies
    if period <= 0:  # every request of the window at one instant
        period = 1.0
    shifts = np.repeat(np.arange(copies, dtype=np.float64) * period, arrival.size)
    return RequestArrays(np.tile(arrival, copies) + shifts, np.tile(inputs, copies), np.tile(outputs, copies))


def trace_summary(name_or_path: str | Path) -> dict[str, Any]:
    """Statistics of a whole trace: ``requests``; ``duration_s`` (first to last arrival, s);
    ``mean_rate_per_s`` ((requests - 1) / duration, requests/s; 0 for one instant); mean, p50
    and p99 of ``input_tokens`` and ``output_tokens`` (tokens); for a shipped trace also its
    ``description``, ``license``, ``citation`` and ``source_url``."""
    arrival, inputs, outputs = read_trace(name_or_path)
    duration = float(arrival[-1] - arrival[0])
    out: dict[str, Any] = {"trace": str(name_or_path), "requests": int(arrival.size), "duration_s": duration,
                           "mean_rate_per_s": (arrival.size - 1) / duration if duration > 0 else 0.0}
    for column, values in (("input_tokens", inputs), ("output_tokens", outputs)):
        p50, p99 = np.percentile(values, [50, 99])
        out |= {f"{column}_mean": float(values.mean()), f"{column}_p50": float(p50), f"{column}_p99": float(p99)}
    if isinstance(name_or_path, str) and name_or_path in TRACES:
        info = TRACES[name_or_path]
        out |= {"description": info.description, "license": info.license, "citation": info.citation,
                "source_url": info.source_url}
    return out
