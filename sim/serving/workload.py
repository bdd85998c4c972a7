"""What arrives at a serving replica: arrival times and prompt/output lengths of requests.

A :class:`Workload` is a frozen spec; :meth:`Workload.generate` draws ``n`` requests from
``numpy.random.default_rng(seed)`` (vectorized), or replays a trace (``traces.py``: a shipped
production trace or a CSV file). Times are seconds, lengths are tokens.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from decodex.core.errors import ArgumentError, SpecError
from decodex.core.input_files import MAX_TRACE_BYTES, read_text

if TYPE_CHECKING:
    pass

ARRIVALS = ("poisson", "fixed", "trace", "all-at-once")
LENGTH_KINDS = ("fixed", "uniform", "lognormal", "normal")
TRACE_COLUMNS = ("arrival_s", "input_tokens", "output_tokens")
_EXTRA = "\0extra"  # the column a row's fields beyond the header's land in (an error when any does)
MAX_TOKENS = 10**8
RATE_RANGE = (1e-6, 1e9)  # requests/s: one request per ~12 days .. far beyond any cluster (as the CLI's --rate)


class RequestArrays(NamedTuple):
    """The requests of a run, ordered by arrival: arrival time (s) and lengths (tokens)."""

    arrival_s: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray


def check_int(name: str, value: object, lo: int, hi: int = MAX_TOKENS) -> int:
    """``value`` as an int when it is an integer (not a bool) in [lo, hi]; ArgumentError naming
    ``name`` and the range otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or not lo <= value <= hi:
        raise ArgumentError(f"{name}: {value!r:.80} must be an integer in [{lo}, {hi}]")
    return int(value)


def check_bool(name: str, value: object) -> bool:
    """``value`` when it is True or False; ArgumentError naming ``name`` otherwise."""
    if not isinstance(value, bool):
        raise ArgumentError(f"{name}: must be True or False, got {value!r:.80}")
    return value


def check_float(name: str, value: object, lo: float, hi: float, lo_open: bool = False) -> float:
    """``value`` as a float when it is a finite number (not a bool) in [lo, hi] (``(lo, hi]``
    with ``lo_open``); ArgumentError naming ``name`` and the range otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ArgumentError(f"{name}: {value!r:.80} is not a number")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    bad_lo = number <= lo if lo_open else number < lo
    if not math.isfinite(number) or bad_lo or number > hi:
        raise ArgumentError(f"{name}: {number!r} outside {'(' if lo_open else '['}{lo:g}, {hi:g}]")
    return number


@dataclass(frozen=True)
class Lengths:
    """A distribution of token counts (prompt or output lengths), clipped to ``[1, max_tokens]``.

    ``kind="fixed"``: always ``mean`` tokens. ``kind="uniform"``: integers uniform in
    ``[low, high]`` (both included). ``kind="lognormal"``: ``exp(N(mu, sigma²))`` rounded to
    the nearest integer, with ``mu = ln(mean) - sigma²/2`` so that the mean of the unclipped
    distribution is exactly ``mean`` tokens; ``sigma`` is the standard deviation of the
    underlying normal (dimensionless). ``kind="normal"``: ``N(mean, (sigma · mean)²)`` rounded
    (Gaussian lengths, as Duplex draws them); ``sigma`` is the coefficient of variation there.
    ``max_tokens`` (tokens, optional) clips from above.
    """

    kind: str = "fixed"
    mean: float = 128.0
    low: int = 1
    high: int = 1
    sigma: float = 1.0
    max_tokens: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or self.kind not in LENGTH_KINDS:
            raise ArgumentError(f"lengths.kind: {self.kind!r} not one of {', '.join(LENGTH_KINDS)}")
        if self.kind == "fixed":
            mean = check_float("lengths.mean", self.mean, 1.0, MAX_TOKENS)
            if not mean.is_integer():
                raise ArgumentError(f"lengths.mean: {self.mean!r} must be an integer in [1, {MAX_TOKENS}]")
        elif self.kind == "uniform":
            check_int("lengths.low", self.low, 1)
            check_int("lengths.high", self.high, self.low)
        else:
            check_float("lengths.mean", self.mean, 1.0, MAX_TOKENS)
            check_float("lengths.sigma", self.sigma, 0.0, 5.0)
        if self.max_tokens is not None:
            check_int("lengths.max_tokens", self.max_tokens, 1)

    @classmethod
    def fixed(cls, tokens: int) -> Lengths:
        """Always ``tokens`` tokens."""
        check_int("lengths.tokens", tokens, 1)
        return cls("fixed", mean=float(tokens))

    @classmethod
    def uniform(cls, low: int, high: int) -> Lengths:
        """Integers uniform in ``[low, high]`` tokens."""
        return cls("uniform", low=low, high=high)

    @classmethod
    def lognormal(cls, mean: float, sigma: float = 1.0, max_tokens: int | None = None) -> Lengths:
        """Lognormal with the given mean (tokens) and ``sigma`` of the underlying normal."""
        return cls("lognormal", mean=mean, sigma=sigma, max_tokens=max_tokens)

    @classmethod
    def normal(cls, mean: float, cv: float = 0.25, max_tokens: int | None = None) -> Lengths:
        """Gaussian with the given mean (tokens) and coefficient of variation ``cv`` (std / mean)."""
        return cls("normal", mean=mean, sigma=cv, max_tokens=max_tokens)

    @property
    def expected_tokens(self) -> float:
        """Mean of the unclipped distribution, tokens."""
        if self.kind == "uniform":
            return (self.low + self.high) / 2
        return float(self.mean)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` lengths (int64 tokens, each in ``[1, max_tokens]``) drawn from ``rng``."""
        if self.kind == "fixed":
            values = np.full(n, int(self.mean), dtype=np.int64)
        elif self.kind == "uniform":
            values = rng.integers(self.low, self.high, size=n, endpoint=True, dtype=np.int64)
        elif self.kind == "normal":
            values = np.rint(rng.normal(self.mean, self.sigma * self.mean, size=n)).astype(np.int64)
        else:
            mu = math.log(self.mean) - self.sigma**2 / 2
            values = np.rint(rng.lognormal(mu, self.sigma, size=n)).astype(np.int64)
        return np.clip(values, 1, self.max_tokens or MAX_TOKENS)


# Preset means (tokens): sharegpt 80/296 as used by NeuPIMs; sharegpt-long 1730/415 are the
# ShareGPT statistics quoted by Vidur and Sarathi-Serve; alpaca 12/56. The spreads (sigma = 1.0
# for prompts, 0.8 for outputs) are assumptions, not taken from those papers.
PRESETS: dict[str, tuple[float, float]] = {
    "sharegpt": (80.0, 296.0),
    "sharegpt-long": (1730.0, 415.0),
    "alpaca": (12.0, 56.0),
}
PRESET_NAMES = (*PRESETS, "fixed")
INPUT_SIGMA = 1.0
OUTPUT_SIGMA = 0.8


@dataclass(frozen=True)
class Workload:
    """A stream of requests.

    ``arrival``: ``"poisson"`` (exponential gaps with mean ``1/rate`` s), ``"fixed"`` (one request
    every ``1/rate`` s, the first at 0 s), ``"all-at-once"`` (every request at 0 s: the
    max-throughput mode of benchmarks such as TensorRT-LLM's ``trtllm-bench``) or ``"trace"``
    (``trace``: a shipped trace's name such as ``"azure-conv-2023"``, see ``traces.TRACES``, or a
    CSV file, columns ``arrival_s``, ``input_tokens``, ``output_tokens`` or the Azure schema).
    ``rate``: requests per second, finite, in :data:`RATE_RANGE` (ignored for traces and
    ``all-at-once``). ``input_lengths``/``output_lengths``: token-count distributions.
    ``rate_scale``, ``start_s``, ``duration_s`` (traces only): replay at ``rate_scale`` times the
    recorded rate, the window ``[start_s, start_s + duration_s)`` s, ``repeat`` times back to
    back (see ``traces.load_trace``).
    """

    arrival: str = "poisson"
    rate: float = 1.0
    input_lengths: Lengths = field(default_factory=lambda: Lengths.fixed(512))
    output_lengths: Lengths = field(default_factory=lambda: Lengths.fixed(128))
    trace: Path | str | None = None
    name: str = "custom"
    rate_scale: float = 1.0
    start_s: float = 0.0
    duration_s: float | None = None
    repeat: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.arrival, str) or self.arrival not in ARRIVALS:
            raise ArgumentError(f"workload.arrival: {self.arrival!r} not one of {', '.join(ARRIVALS)}")
        if self.arrival == "trace":
            if not isinstance(self.trace, str | Path) or not str(self.trace).strip():
                raise ArgumentError(f"workload.trace: a shipped trace name or a CSV file path is needed when "
                                    f"arrival='trace', got {self.trace!r:.80}")
            from decodex.sim.serving.traces import TRACES  # traces imports this module

            if not (isinstance(self.trace, str) and self.trace in TRACES):  # a shipped name stays a str
                object.__setattr__(self, "trace", Path(self.trace))
        else:
            check_float("workload.rate (requests/s)", self.rate, *RATE_RANGE)
        if not isinstance(self.name, str):
            raise ArgumentError(f"workload.name: must be a string, got {self.name!r:.80}")
        check_float("workload.rate_scale", self.rate_scale, 0.0, 1e6, lo_open=True)
        check_float("workload.start_s (s)", self.start_s, 0.0, 1e9)
        if self.duration_s is not None:
            check_float("workload.duration_s (s)", self.duration_s, 0.0, 1e9, lo_open=True)
        check_int("workload.repeat", self.repeat, 1, 10**8)
        for name in ("input_lengths", "output_lengths"):
            if not isinstance(getattr(self, name), Lengths):
                raise ArgumentError(f"workload.{name}: must be a Lengths, got {getattr(self, name)!r}")

    @classmethod
    def preset(cls, name: str, rate: float, *, arrival: str = "poisson", input_len: int | None = None,
               output_len: int | None = None) -> Workload:
        """A named workload at ``rate`` requests/s.

        ``sharegpt`` (mean 80 prompt / 296 output tokens, NeuPIMs), ``sharegpt-long`` (1730 / 415,
        the ShareGPT statistics of Vidur and Sarathi-Serve), ``alpaca`` (12 / 56): lognormal
        lengths with those means. ``fixed``: every request has ``input_len`` and ``output_len``
        tokens (default 512 and 128). ``input_len``/``output_len`` given with a lognormal
        preset replace its means.
        """
        if not isinstance(name, str):
            raise ArgumentError(f"dataset: {name!r:.80} not one of {', '.join(PRESET_NAMES)}")
        if name == "fixed":
            inputs = Lengths.fixed(512 if input_len is None else check_int("input_len", input_len, 1))
            outputs = Lengths.fixed(128 if output_len is None else check_int("output_len", output_len, 1))
        elif name in PRESETS:
            mean_in, mean_out = PRESETS[name]
            if input_len is not None:
                mean_in = check_int("input_len", input_len, 1)
            if output_len is not None:
                mean_out = check_int("output_len", output_len, 1)
            inputs = Lengths.lognormal(mean_in, INPUT_SIGMA)
            outputs = Lengths.lognormal(mean_out, OUTPUT_SIGMA)
        else:
            raise ArgumentError(f"dataset: {name!r} not one of {', '.join(PRESET_NAMES)}")
        return cls(arrival=arrival, rate=rate, input_lengths=inputs, output_lengths=outputs, name=name)

    @classmethod
    def from_trace(cls, path: str | Path, *, rate_scale: float = 1.0, start_s: float = 0.0,
                   duration_s: float | None = None, repeat: int = 1) -> Workload:
        """Requests of a shipped trace (a name such as ``"azure-conv-2023"``) or read from a CSV
        file with exactly the columns ``arrival_s`` (s), ``input_tokens`` and ``output_tokens``
        (tokens), or the Azure columns ``TIMESTAMP``, ``ContextTokens``, ``GeneratedTokens``;
        rows are sorted by arrival time. Replayed at ``rate_scale`` times the recorded rate, the
        window ``[start_s, start_s + duration_s)`` s only, ``repeat`` times back to back
        (``traces.load_trace``). The file is read by :meth:`generate`."""
        workload = cls(arrival="trace", trace=path, rate_scale=rate_scale, start_s=start_s,  # type: ignore[arg-type]
                       duration_s=duration_s, repeat=repeat)
        return dataclasses.replace(workload, name=f"trace:{Path(path).name}")

    def generate(self, n: int | None = None, seed: int = 0, max_total_tokens: int | None = None) -> RequestArrays:
        """``n`` requests (all rows of a trace's window when ``n`` is None, else its first ``n``;
        1000 otherwise).

        Draws come from ``numpy.random.default_rng(seed)`` only: arrival gaps first, then prompt
        lengths, then output lengths. ``max_total_tokens`` (the model's context window, tokens)
        caps each request: the prompt to ``max_total_tokens - 1`` and the output so that prompt
        + output <= ``max_total_tokens``.
        """
        if self.arrival == "trace":
            from decodex.sim.serving.traces import load_trace  # traces imports this module

            if n is not None:
                check_int("requests", n, 1, 10**8)
            arrival, inputs, outputs = load_trace(self.trace, rate_scale=self.rate_scale,  # type: ignore[arg-type]
                                                  start_s=self.start_s, duration_s=self.duration_s,
                                                  repeat=self.repeat, max_requests=n)
            if n is not None:
                check_int("requests", n, 1, arrival.size)
                arrival, inputs, outputs = arrival[:n], inputs[:n], outputs[:n]
        else:
            n = 1000 if n is None else check_int("requests", n, 1, 10**8)
            rng = np.random.default_rng(check_int("seed", seed, 0, 2**63 - 1))
            if self.arrival == "poisson":
                arrival = np.cumsum(rng.exponential(1.0 / self.rate, size=n))
            elif self.arrival == "all-at-once":
                arrival = np.zeros(n)
            else:
                arrival = np.arange(n, dtype=np.float64) / self.rate
            inputs = self.input_lengths.sample(rng, n)
            outputs = self.output_lengths.sample(rng, n)
        if max_total_tokens is not None:
            limit = check_int("max_total_tokens", max_total_tokens, 2)
            inputs = np.minimum(inputs, limit - 1)
            outputs = np.minimum(outputs, limit - inputs)
        return RequestArrays(np.asarray(arrival, dtype=np.float64), inputs.astype(np.int64),
                             outputs.astype(np.int64))


def _trace_header(text: str, source: str) -> tuple[int, list[str]]:
    """The (1-based) line of a trace's header, its first non-blank line, and its column names;
    SpecError when the header does not hold exactly :data:`TRACE_COLUMNS` (any order)."""
    expected = ", ".join(TRACE_COLUMNS)
    first = next(((n, line) for n, line in enumerate(io.StringIO(text), start=1) if line.strip()), None)
    if first is None:
        raise SpecError(source, "", f"the trace is empty; it needs a header with the columns {expected} and rows")
    number, line = first
    try:
        names = [name.strip() for name in next(csv.reader([line]))]
    except csv.Error as err:
        raise SpecError(source, f"line {number} (header)", f"not a CSV header ({err})") from None
    where = f"line {number} (header)"
    unexpected = [name for name in names if name not in TRACE_COLUMNS]
    if unexpected:
        shown = ", ".join(repr(name) for name in unexpected[:5])
        raise SpecError(source, where, f"unexpected column(s) {shown}; a trace has exactly the columns {expected}")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise SpecError(source, where, f"column(s) {', '.join(repeated)} appear twice; "
                                       f"a trace has exactly the columns {expected}")
    for column in TRACE_COLUMNS:
        if column not in names:
            raise SpecError(source, column, f"missing column; the columns needed are {expected}")
    return number, names


def _line_of_row(text: str, header_line: int, row: int) -> int:
    """The (1-based) line of data row ``row`` (0-based; blank lines hold no row, as for pandas)."""
    seen = -1
    for number, line in enumerate(io.StringIO(text), start=1):
        if number > header_line and line.strip():
            seen += 1
            if seen == row:
                return number
    return header_line + row + 1


def _line_with_too_many_fields(text: str, header_line: int, fields: int) -> tuple[int, int] | None:
    """The first line after the header with more than ``fields`` fields, and its field count."""
    for number, line in enumerate(io.StringIO(text), start=1):
        if number > header_line and line.strip():
            try:
                count = len(next(csv.reader([line]), []))
            except csv.Error:
                continue
            if count > fields:
                return number, count
    return None


def _read_trace(path: Path, text: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three columns of a trace CSV file, sorted by arrival.

    The file is read by :func:`core.input_files.read_text` (at most :data:`MAX_TRACE_BYTES`,
    UTF-8); its header must name exactly :data:`TRACE_COLUMNS` and no row may hold more fields
    than the header. Every problem is a SpecError naming the file, the line (1-based, counting
    blank lines) and the column or the columns expected. ``text``: the file's text, already read.
    """
    import pandas as pd

    source = str(path)
    if text is None:
        text = read_text(path, max_bytes=MAX_TRACE_BYTES, what="trace file")
    header_line, names = _trace_header(text, source)
    expected = ", ".join(TRACE_COLUMNS)
    try:
        frame = pd.read_csv(io.StringIO(text), header=None, skiprows=header_line, names=[*names, _EXTRA],
                            index_col=False, skip_blank_lines=True)
    except pd.errors.ParserError as err:
        extra = _line_with_too_many_fields(text, header_line, len(names) + 1)
        if extra is not None:
            raise SpecError(source, f"line {extra[0]}", f"{extra[1]} fields, the header has {len(names)}; "
                                                         f"a trace has exactly the columns {expected}") from None
        raise SpecError(source, "", f"not a readable CSV file ({str(err).strip()})") from None
    except (pd.errors.EmptyDataError, ValueError) as err:
        raise SpecError(source, "", f"not a readable CSV file ({str(err).strip()})") from None
    extras = frame[_EXTRA].notna().to_numpy()
    if extras.any():
        line = _line_of_row(text, header_line, int(np.flatnonzero(extras)[0]))
        raise SpecError(source, f"line {line}", f"more fields than the header's {len(names)}; "
                                                 f"a trace has exactly the columns {expected}")
    if frame.empty:
        raise SpecError(source, "", "the trace has no rows")
    values = {}
    for column in TRACE_COLUMNS:
        data = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(data)
        if column == "arrival_s":
            bad |= data < 0
            allowed = "a number of seconds >= 0"
        else:
            bad |= (data < 1) | (data != np.floor(data)) | (data > MAX_TOKENS)
            allowed = f"an integer in [1, {MAX_TOKENS}]"
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            line = _line_of_row(text, header_line, row)
            cell = frame[column].iloc[row]
            shown = "no value (empty, missing or nan)" if pd.isna(cell) else f"{str(cell)!r:.40}"
            raise SpecError(source, column, f"line {line} holds {shown}; must be {allowed}")
        values[column] = data
    order = np.argsort(values["arrival_s"], kind="stable")
    return (values["arrival_s"][order], values["input_tokens"][order].astype(np.int64),
            values["output_tokens"][order].astype(np.int64))
