"""The serving run behind the dashboard's Serving page and its figures: a :class:`ServingPoint`
(every argument of one ``serve`` call, as plain values, so that ``st.cache_data`` keys a run on
it), latency metrics, TTFT/TPOT distributions and the sweep of throughput and goodput against the
arrival rate. No Streamlit here, so everything is tested alone. Times are seconds inside; figures
and metrics show milliseconds."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from decodex.app.dashboard.limits import MAX_BATCH, MAX_SERVE_REQUESTS, check_parallel, check_serve_size, check_whole
from decodex.app.dashboard.uploads import resolve_model, resolve_system
from decodex.sim.serving import DEFAULT_SLO_TPOT_S, DEFAULT_SLO_TTFT_S, ServingResult, Workload, serve
from decodex.sim.serving.metrics import percentiles
from decodex.workloads.parallelism import Parallelism

TEMPLATE = "plotly_white"
MAX_REQUESTS = MAX_SERVE_REQUESTS
"""Most requests one run of the page may draw (:data:`app.dashboard.limits.MAX_SERVE_REQUESTS`)."""
SWEEP_FACTORS = (0.25, 0.5, 1.0, 1.5, 2.0)
"""Multiples of the chosen arrival rate that the rate sweep runs."""
SLO_LINE_REACH = 2.0
"""A latency figure draws its SLO line only up to this multiple of the largest latency."""


@dataclass(frozen=True)
class ServingPoint:
    """Everything one ``serve`` call takes, as plain values: model and system (catalog names),
    precision, parallel degrees, the workload (``dataset``: a ``Workload.preset`` name,
    ``arrival``: ``poisson`` or ``fixed``, ``rate`` in requests/s, ``input_len``/``output_len``
    in tokens or None for the preset's), ``requests`` to draw, the scheduler with its
    ``max_batch`` (requests) and ``chunk`` (tokens per iteration of ``chunked``), the goodput
    SLOs (s) and the seed of the draws. ``model_text`` / ``system_text``: an uploaded
    config.json / device or system TOML (``model`` / ``system`` then hold the file names)."""

    model: str = "llama3-70b"
    system: str = "h100-sxm"
    precision: str = "bf16"
    tp: int = 8
    pp: int = 1
    ep: int = 1
    dataset: str = "sharegpt"
    arrival: str = "poisson"
    rate: float = 10.0
    input_len: int | None = None
    output_len: int | None = None
    requests: int = 200
    scheduler: str = "continuous"
    max_batch: int = 256
    chunk: int = 512
    slo_ttft_s: float = DEFAULT_SLO_TTFT_S
    slo_tpot_s: float = DEFAULT_SLO_TPOT_S
    seed: int = 0
    model_text: str | None = None
    system_text: str | None = None

    def workload(self) -> Workload:
        """The workload preset at ``rate`` requests/s (ArgumentError for a bad preset or rate)."""
        return Workload.preset(self.dataset, self.rate, arrival=self.arrival, input_len=self.input_len,
                               output_len=self.output_len)

    def at_rate(self, rate: float) -> ServingPoint:
        """The same point at another arrival rate (requests/s)."""
        return dataclasses.replace(self, rate=float(rate))

    def check_size(self) -> None:
        """Raise ArgumentError naming the field and range unless the run is within the dashboard's
        bounds (:mod:`app.dashboard.limits`): requests, mean prompt and output tokens, the
        iterations they need, max batch (requests) and tp / pp / ep."""
        check_serve_size(self.requests, self.dataset, self.input_len, self.output_len, self.scheduler, self.chunk)
        check_whole(self.max_batch, "max_batch", 1, MAX_BATCH)
        check_parallel(self.tp, self.pp, self.ep)

    def run(self) -> ServingResult:
        """``sim.serving.serve`` of this point (times in s, energy in J), bounded first
        (:meth:`check_size`); DecodexError for an input that cannot run (an infeasible
        parallelism, a KV cache too small, a run too big for the dashboard, ...)."""
        self.check_size()
        model = resolve_model(self.model, self.model_text)
        system = resolve_system(self.system, self.system_text)
        return serve(model, system, self.workload(), requests=self.requests, scheduler=self.scheduler,
                     chunk=self.chunk, max_batch=self.max_batch, precision=self.precision,
                     parallelism=Parallelism(tp=self.tp, pp=self.pp, ep=self.ep), seed=self.seed,
                     slo_ttft_s=self.slo_ttft_s, slo_tpot_s=self.slo_tpot_s)

    def label(self) -> str:
        """A short human-readable description."""
        par = f"tp{self.tp}" + (f" pp{self.pp}" if self.pp > 1 else "") + (f" ep{self.ep}" if self.ep > 1 else "")
        return (f"{self.model} on {self.system} ({self.precision}, {par}), {self.scheduler} batching (max "
                f"{self.max_batch}), {self.requests} {self.dataset} requests at {self.rate:g} req/s ({self.arrival})")


def sweep_rates(rate: float, factors: Sequence[float] = SWEEP_FACTORS) -> list[float]:
    """The arrival rates (requests/s) of a sweep around ``rate``: ``rate`` times each factor,
    ascending, duplicates dropped; ValueError for a rate or factor that is not positive."""
    if not rate > 0 or any(not f > 0 for f in factors):
        raise ValueError(f"rate {rate!r} and factors {list(factors)!r} must be > 0")
    return sorted({float(rate) * float(f) for f in factors})


def latency_metrics(result: ServingResult) -> dict[str, float]:
    """Mean, p50 and p99 of TTFT and TPOT over the requests, s (NaN where no request has one):
    keys ``ttft_mean``, ``ttft_p50``, ``ttft_p99``, ``tpot_mean``, ``tpot_p50``, ``tpot_p99``."""
    out: dict[str, float] = {}
    for name, values in (("ttft", result.ttft_s), ("tpot", result.tpot_s)):
        stats = percentiles(values)
        for q in ("mean", "p50", "p99"):
            out[f"{name}_{q}"] = stats[q]
    return out


def ecdf(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The empirical CDF of the finite ``values``: (sorted values, fraction of values at or below
    each, in (0, 1]); empty arrays when none is finite."""
    data = np.asarray(values, dtype=float)
    data = np.sort(data[np.isfinite(data)])
    return data, np.arange(1, data.size + 1) / max(data.size, 1)


def latency_figure(values_s: np.ndarray, slo_s: float, name: str, kind: str = "ecdf") -> go.Figure:
    """The distribution of one latency over the requests (``values_s`` in s; NaN ignored), drawn
    in ms as an ECDF (``kind="ecdf"``) or a histogram (``"histogram"``), with the SLO (s) as a
    dashed vertical line (left out when it lies beyond ``SLO_LINE_REACH`` x the largest value) and
    the share of requests within it in the title."""
    if kind not in ("ecdf", "histogram"):
        raise ValueError(f"kind must be ecdf or histogram, got {kind!r}")
    x, y = ecdf(values_s)
    figure = go.Figure()
    if kind == "ecdf":
        figure.add_trace(go.Scatter(x=x * 1e3, y=y, mode="lines", line_shape="hv", name=name,
                                    hovertemplate="%{x:.2f} ms: %{y:.1%} of requests<extra></extra>"))
        figure.update_yaxes(title="fraction of requests", range=[0, 1.02])
    else:
        figure.add_trace(go.Histogram(x=x * 1e3, nbinsx=min(60, max(10, x.size // 5)), name=name))
        figure.update_yaxes(title="requests")
    within = float(np.mean(x <= slo_s)) if x.size else float("nan")
    if x.size and slo_s <= SLO_LINE_REACH * x[-1]:  # a far-off SLO line would squash the distribution
        figure.add_vline(x=slo_s * 1e3, line_dash="dash", line_color="firebrick",
                         annotation_text=f"SLO {slo_s * 1e3:g} ms", annotation_position="top right")
    figure.update_layout(template=TEMPLATE, showlegend=False, xaxis_title=f"{name} (ms)",
                         title=f"{name}: {within:.1%} of {x.size} requests within the SLO of {slo_s * 1e3:g} ms")
    return figure


def sweep_frame(runs: Sequence[tuple[float, ServingResult]]) -> pd.DataFrame:
    """One row per (rate in requests/s, result) of a sweep, by rate: ``offered_tokens_per_s`` (the
    output tokens drawn over the span of their arrivals, the load actually offered; throughput
    cannot exceed it, since every request finishes after it arrives), ``nominal_tokens_per_s``
    (rate x mean output tokens drawn), ``throughput_tokens_per_s``, ``request_throughput_per_s``,
    ``goodput_requests_per_s``, ``slo_attainment`` (0..1), ``ttft_p50_s``, ``ttft_p99_s``,
    ``tpot_p50_s``, ``tpot_p99_s`` (s), ``utilization`` (0..1), ``preemptions``."""
    rows = []
    for rate, result in sorted(runs, key=lambda run: run[0]):
        span = float(result.arrival_s.max() - result.arrival_s.min())
        tokens = float(result.total_output_tokens)
        ttft, tpot = percentiles(result.ttft_s), percentiles(result.tpot_s)
        rows.append({
            "rate_per_s": float(rate),
            "offered_tokens_per_s": tokens / span if span > 0 else float("inf"),
            "nominal_tokens_per_s": float(rate) * tokens / max(result.num_requests, 1),
            "throughput_tokens_per_s": result.throughput_tokens_per_s,
            "request_throughput_per_s": result.request_throughput_per_s,
            "goodput_requests_per_s": result.goodput_requests_per_s,
            "slo_attainment": float(result.meets_slo.mean()),
            "ttft_p50_s": ttft["p50"], "ttft_p99_s": ttft["p99"], "tpot_p50_s": tpot["p50"], "tpot_p99_s": tpot["p99"],
            "utilization": result.utilization, "preemptions": result.preemptions,
        })
    return pd.DataFrame(rows)


RATE_SWEEP_COLUMNS = {
    "rate_per_s": ("arrival rate (req/s)", 1.0), "nominal_tokens_per_s": ("offered (tokens/s)", 1.0),
    "throughput_tokens_per_s": ("throughput (tokens/s)", 1.0), "request_throughput_per_s": ("finished (req/s)", 1.0),
    "goodput_requests_per_s": ("goodput (req/s)", 1.0), "slo_attainment": ("SLO attained (%)", 100.0),
    "ttft_p99_s": ("TTFT p99 (ms)", 1e3), "tpot_p99_s": ("TPOT p99 (ms)", 1e3),
    "utilization": ("busy (%)", 100.0), "preemptions": ("preemptions", 1.0)}
"""Rate-sweep columns as shown: label with its unit, and the factor from the SI value."""


def rate_sweep_display(frame: pd.DataFrame) -> pd.DataFrame:
    """The rate sweep (from :func:`sweep_frame`, SI) as shown: labelled columns in req/s, ms and %,
    rounded to 3 significant figures' worth of decimals."""
    return pd.DataFrame({label: (frame[column] * factor).round(3) for column, (label, factor) in
                         RATE_SWEEP_COLUMNS.items()})


def sweep_figure(frame: pd.DataFrame, title: str = "") -> go.Figure:
    """Two panels against the arrival rate (requests/s), from a :func:`sweep_frame`: throughput
    (output tokens/s) with the nominal offered load rate x mean output tokens dotted; goodput and
    finished requests (requests/s) with the arrival rate itself dotted."""
    figure = make_subplots(rows=1, cols=2, subplot_titles=("Throughput (output tokens/s)",
                                                           "Goodput and finished requests (requests/s)"))
    rate = frame["rate_per_s"]
    lines = [(1, "throughput_tokens_per_s", "throughput", "solid", "lines+markers"),
             (1, "nominal_tokens_per_s", "offered load (tokens/s)", "dot", "lines"),
             (2, "goodput_requests_per_s", "goodput", "solid", "lines+markers"),
             (2, "request_throughput_per_s", "finished requests", "dash", "lines+markers"),
             (2, "rate_per_s", "offered load (requests/s)", "dot", "lines")]
    for col, column, name, dash, mode in lines:
        figure.add_trace(go.Scatter(x=rate, y=frame[column], mode=mode, line_dash=dash, name=name,
                                    hovertemplate="%{x:g} req/s: %{y:,.3f}<extra>" + name + "</extra>"),
                         row=1, col=col)
    figure.update_layout(template=TEMPLATE, title=title or "Throughput and goodput against the arrival rate",
                         legend={"orientation": "h", "y": -0.25})
    figure.update_xaxes(title_text="arrival rate (requests/s)")
    figure.update_yaxes(title_text="output tokens/s", rangemode="tozero", row=1, col=1)
    figure.update_yaxes(title_text="requests/s", rangemode="tozero", row=1, col=2)
    return figure
