"""``capacity``: the highest request rate a replica sustains while meeting latency SLOs.

Capacity, as Sarathi-Serve defines it (Agrawal et al., OSDI 2024), is the maximum load
(requests/s) a system serves while its latencies stay within their SLOs; its artifact's capacity
search (microsoft/sarathi-serve ``sarathi/benchmark/capacity_search/main.py``) bounds the median
scheduling delay (2 s) and the P99 time between tokens (0.2 s), here any of
:data:`capacity_runs.SLO_KEYS` (``sched_delay_p50`` is that bound).

The search: a first guess from the analytical decode throughput (max batch / step time, in
requests/s), doubled or halved until one run meets the SLOs and one does not, then bisected (on
the log of the rate) until the two are within ``rel_tol``. Every run draws the same requests
(one seed: common random numbers, so the curve is smooth and a rate is never run twice). A run
whose queue grows over its arrival window is over capacity whatever its latencies (a short run
drains at the end and hides it); a run too short to tell is flagged (:mod:`capacity_runs`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from decodex.core.errors import ArgumentError, DecodexError
from decodex.core.run_limits import RunWatch
from decodex.hw_models.system import SystemSpec, load_system
from decodex.sim.estimate import estimate
from decodex.sim.serving.api import DEFAULT_REQUESTS, _step_times, serve
from decodex.sim.serving.capacity_runs import parse_slo, run_row
from decodex.sim.serving.cluster import MAX_REPLICAS, SystemArg, serve_cluster
from decodex.sim.serving.disagg import serve_disaggregated
from decodex.sim.serving.software import DEFAULT_SOFTWARE, ServingSoftware, load_software
from decodex.sim.serving.traces import list_traces
from decodex.sim.serving.workload import PRESET_NAMES, RATE_RANGE, Workload, check_bool, check_float, check_int
from decodex.workloads.batch import Batch
from decodex.workloads.catalog import load_model
from decodex.workloads.model_config import ModelConfig
from decodex.workloads.parallelism import Parallelism
from decodex.workloads.precision import Precision

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

DEFAULT_MAX_RUNS = 16
FALLBACK_GUESS_PER_S = 1.0  # requests/s, when the analytical guess cannot be made


@dataclass(frozen=True, eq=False)
class CapacityResult:
    """The outcome of :func:`capacity`. ``capacity_per_s``: the highest rate (requests/s) whose
    run met every SLO with its queue not growing (0 when none did); ``rate_scale``: that rate as
    a trace's replay factor (None for a synthetic workload), ``trace_mean_rate_per_s`` the
    trace's recorded mean rate over the requests replayed; ``system``: the deployment (a system,
    ``N x system`` replicas, or ``P prefill, D decode``); ``devices`` and ``usd_per_hour``: its
    devices and their price; ``binding``: the SLO key the next
    rate up broke (or ``"queue growing"``; empty when no run failed); ``curve``: one row per run,
    by rate (see :func:`capacity_runs.run_row`); ``bracketed``: a run passed and one ``rel_tol``
    above it failed; ``notes``: what to know about the search (runs too short, bracket ends)."""

    model: str
    system: str
    software: str
    workload: str
    slo: Mapping[str, float]
    capacity_per_s: float
    rate_scale: float | None
    binding: str
    curve: pd.DataFrame
    bracketed: bool
    rel_tol: float
    trace_mean_rate_per_s: float | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    devices: int = 0
    usd_per_hour: float = float("nan")

    @property
    def capacity_per_device(self) -> float:
        """Capacity per device of the deployment, requests/s (NaN when no run was made)."""
        return self.capacity_per_s / self.devices if self.devices else float("nan")

    @property
    def capacity_per_usd_hour(self) -> float:
        """Capacity per price of the deployment, requests/s per USD/hour (NaN without a price)."""
        return self.capacity_per_s / self.usd_per_hour if self.usd_per_hour > 0 else float("nan")

    @property
    def runs(self) -> int:
        """Serving runs made."""
        return len(self.curve)

    @property
    def undecided(self) -> bool:
        """Whether some run was too short to tell steady state (neither steady nor overloaded)."""
        return bool((~self.curve["steady"] & ~self.curve["overloaded"]).any())

    def summary(self) -> dict[str, Any]:
        """The headline as a plain dict (JSON-ready): capacity (requests/s), binding SLO, runs."""
        return {"model": self.model, "system": self.system, "software": self.software, "workload": self.workload,
                "slo_s": dict(self.slo), "capacity_per_s": self.capacity_per_s, "rate_scale": self.rate_scale,
                "trace_mean_rate_per_s": self.trace_mean_rate_per_s, "binding": self.binding,
                "bracketed": self.bracketed, "rel_tol": self.rel_tol, "runs": self.runs,
                "devices": self.devices, "usd_per_hour": self.usd_per_hour,
                "capacity_per_device": self.capacity_per_device,
                "capacity_per_usd_hour": self.capacity_per_usd_hour,
                "steady_runs": int(self.curve["steady"].sum()), "undecided": self.undecided,
                "notes": list(self.notes)}

    def figure(self) -> go.Figure:
        """One panel per SLO: its metric (ms) against the arrival rate (requests/s), the SLO as
        a dashed line, the capacity as a vertical line; runs that were not steady drawn open."""
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        keys = list(self.slo)
        figure = make_subplots(rows=1, cols=len(keys), subplot_titles=[k.replace("_", " ") for k in keys])
        curve = self.curve
        for col, key in enumerate(keys, start=1):
            figure.add_trace(go.Scatter(
                x=curve["rate_per_s"], y=curve[f"{key}_s"] * 1e3, mode="lines+markers", name=key, showlegend=False,
                marker={"symbol": ["circle" if s else "circle-open" for s in curve["steady"]], "size": 9,
                        "color": ["seagreen" if p else "firebrick" for p in curve["passes"]]},
                customdata=curve["steady_reason"],
                hovertemplate="%{x:.4g} req/s: %{y:,.2f} ms<br>%{customdata}<extra>" + key + "</extra>"),
                row=1, col=col)
            figure.add_hline(y=self.slo[key] * 1e3, line_dash="dash", line_color="firebrick", row=1, col=col,
                             annotation_text=f"SLO {self.slo[key] * 1e3:g} ms")
            if self.capacity_per_s > 0:
                figure.add_vline(x=self.capacity_per_s, line_dash="dot", line_color="royalblue", row=1, col=col)
            figure.update_yaxes(title_text=f"{key} (ms)", rangemode="tozero", row=1, col=col)
        figure.update_xaxes(title_text="arrival rate (requests/s)")
        figure.update_layout(template="plotly_white", title=(
            f"{self.model} on {self.system}, {self.workload}: capacity {self.capacity_per_s:.4g} req/s"
            + (f" (binding: {self.binding})" if self.binding else "")))
        return figure


def _resolve_workload(workload: str | Path | Workload) -> Workload:
    """A preset name, a shipped trace name, a trace CSV path or a Workload (not all-at-once)."""
    if isinstance(workload, Workload):
        resolved = workload
    elif isinstance(workload, str) and workload in PRESET_NAMES:
        resolved = Workload.preset(workload, 1.0)
    elif isinstance(workload, str | Path) and (str(workload) in list_traces() or Path(workload).is_file()):
        resolved = Workload.from_trace(workload)
    else:
        raise ArgumentError(f"workload: {workload!r:.80} is neither a preset ({', '.join(PRESET_NAMES)}) nor a "
                            f"shipped trace ({', '.join(list_traces())}) nor a trace file")
    if resolved.arrival == "all-at-once":
        raise ArgumentError("workload: all-at-once arrivals have no rate to search; use poisson, fixed or a trace")
    return resolved


def _first_guess(model: ModelConfig, system: SystemSpec, engine: ServingSoftware, mean_in: float, mean_out: float,
                 serve_kwargs: Mapping[str, Any]) -> float:
    """The analytical decode throughput in requests/s: max batch / step time at the mean
    context / mean output tokens (an upper bound: no prefill, no KV limit)."""
    batch = int(serve_kwargs.get("max_batch") or engine.max_batch)
    try:
        step = estimate(model, system, Batch.decode(batch, int(mean_in + mean_out / 2)),
                        precision=serve_kwargs.get("precision", "bf16"), parallelism=serve_kwargs.get("parallelism"))
    except DecodexError:
        return FALLBACK_GUESS_PER_S
    guess = batch / step.step_time_s / max(mean_out, 1.0)
    return min(max(guess, RATE_RANGE[0]), RATE_RANGE[1]) if math.isfinite(guess) else FALLBACK_GUESS_PER_S


def _as_list(systems: SystemArg | Sequence[SystemArg]) -> list[SystemArg]:
    """One system argument or a sequence of them, as a list (a str or Path is one)."""
    if isinstance(systems, str | Path | SystemSpec):
        return [systems]
    listed = list(systems)
    if not listed:
        raise ArgumentError("system: no system given")
    return listed


def _round_rate(rate: float) -> float:
    """A rate rounded to 6 significant digits: the key of the run cache (requests/s)."""
    return float(f"{rate:.6g}")


def capacity(model: str | Path | ModelConfig, system: SystemArg | Sequence[SystemArg], *, slo: Mapping[str, float],
             workload: str | Path | Workload = "sharegpt", requests: int | None = None,
             software: str | Path | ServingSoftware = DEFAULT_SOFTWARE, seed: int = 0, rate_lo: float | None = None,
             rate_hi: float | None = None, rel_tol: float = 0.02, max_runs: int = DEFAULT_MAX_RUNS,
             replicas: int = 1, decode_systems: SystemArg | Sequence[SystemArg] | None = None,
             progress: bool = False, **serve_kwargs: Any) -> CapacityResult:
    """The highest arrival rate (requests/s) at which ``model`` on ``system`` meets every SLO.

    The deployment: one replica of ``system`` (:func:`serve`); ``replicas`` > 1 of it behind a
    router (:func:`cluster.serve_cluster`; ``router`` among ``serve_kwargs``); or, with
    ``decode_systems``, ``system`` (one or a sequence) as the prefill instances and
    ``decode_systems`` as the decode instances (:func:`disagg.serve_disaggregated`; ``link``,
    ``layerwise_overlap``, ``prefill_router``, ``decode_router`` among ``serve_kwargs``).

    ``slo``: seconds by key, e.g. ``{"ttft_p99": 2.0, "tpot_p99": 0.1}`` (keys
    :data:`capacity_runs.SLO_KEYS`). ``workload``: a preset name (``sharegpt``, ...: Poisson
    arrivals at the searched rate), a shipped trace name or trace file (replayed at rate_scale =
    rate / the trace's mean rate), or a :class:`Workload` (its rate or rate_scale is replaced).
    ``requests``: per run (default 1000; a trace's first N). ``seed``: the same for every run.
    ``rate_lo``/``rate_hi``: a bracket (requests/s) that the search does not leave (default: found
    from the analytical decode throughput). ``rel_tol``: stop when the passing and failing rates
    are within this fraction. ``max_runs``: most serving runs. ``progress``: a line on stderr.
    ``serve_kwargs``: passed to every run (scheduler, max_batch, precision, parallelism,
    time_limit_s, ...); the goodput SLOs default to ``ttft_p99``/``tpot_p99``. Single-replica runs
    share one step-time cache, so no batch is priced twice in a search.

    Ranges: ``rate_lo`` < ``rate_hi`` in [1e-6, 1e9]; ``rel_tol`` [1e-4, 1]; ``max_runs`` [2, 200];
    ``replicas`` [1, MAX_REPLICAS], 1 with ``decode_systems``.
    Raises ArgumentError (checked before any run), or what :func:`serve` raises.
    """
    import pandas as pd

    slo = parse_slo(slo)
    base = _resolve_workload(workload)
    check_float("rel_tol", rel_tol, 1e-4, 1.0)
    check_int("max_runs", max_runs, 2, 200)
    check_int("seed", seed, 0, 2**63 - 1)
    for name, value in (("rate_lo", rate_lo), ("rate_hi", rate_hi)):
        if value is not None:
            check_float(f"{name} (requests/s)", value, *RATE_RANGE)
    if rate_lo is not None and rate_hi is not None and not rate_lo < rate_hi:
        raise ArgumentError(f"rate_lo: {rate_lo:g} must be below rate_hi = {rate_hi:g} (requests/s)")
    check_bool("progress", progress)
    check_int("replicas", replicas, 1, MAX_REPLICAS)
    if decode_systems is not None and replicas != 1:
        raise ArgumentError(f"replicas: {replicas} with decode_systems; list the prefill instances as system instead")
    for key in ("progress", "slo", "workload", "step_cache"):
        serve_kwargs.pop(key, None)
    serve_kwargs.setdefault("slo_ttft_s", slo.get("ttft_p99", 2.0))
    serve_kwargs.setdefault("slo_tpot_s", slo.get("tpot_p99", 0.1))
    model_cfg, engine = load_model(model), load_software(software)
    prefill_specs = [load_system(one) for one in _as_list(system)]
    decode_specs = None if decode_systems is None else [load_system(one) for one in _as_list(decode_systems)]
    if decode_specs is None and len(prefill_specs) != 1:
        raise ArgumentError("system: one system, unless decode_systems makes it the prefill pool; use replicas")
    system_spec = prefill_specs[0]
    count = requests if requests is not None else DEFAULT_REQUESTS
    drawn = base.generate(count, seed, max_total_tokens=model_cfg.context_window or None)
    trace_rate: float | None = None
    if base.arrival == "trace":
        span = float(drawn.arrival_s[-1] - drawn.arrival_s[0])
        if span <= 0 or drawn.arrival_s.size < 2:
            raise ArgumentError("workload: the trace's requests arrive at one instant; no rate to scale")
        trace_rate = (drawn.arrival_s.size - 1) / span / base.rate_scale  # the recorded rate

    def workload_at(rate: float) -> tuple[Workload, float | None]:
        if trace_rate is None:
            return dataclasses.replace(base, rate=rate), None
        return dataclasses.replace(base, rate_scale=rate / trace_rate), rate / trace_rate

    rows: dict[float, dict[str, Any]] = {}
    watch = RunWatch("capacity search", "runs", max_runs, progress=progress)
    cache = _step_times(None, model_cfg, system_spec, Precision.parse(serve_kwargs.get("precision", "bf16")),
                        serve_kwargs.get("parallelism") or Parallelism(), serve_kwargs.get("bucket_width", 0.01),
                        serve_kwargs.get("routing"), serve_kwargs.get("speculation"))
    deployment: dict[str, Any] = {}

    def run(at: Workload) -> Any:
        common = {"requests": count, "software": engine, "seed": seed, **serve_kwargs}
        if decode_specs is not None:
            result = serve_disaggregated(model_cfg, prefill_specs, decode_specs, at, **common)
            deployment.update(devices=int(result.summary()["devices"]), usd_per_hour=result.usd_per_hour)
        elif replicas > 1:
            result = serve_cluster(model_cfg, (system_spec, replicas), at, **common)
            devices = int(sum(r.devices for r in result.replica_results))
            deployment.update(devices=devices, usd_per_hour=devices * system_spec.primary_device.usd_per_hour)
        else:
            result = serve(model_cfg, system_spec, at, step_cache=cache, **common)
            price = result.devices * system_spec.primary_device.usd_per_hour
            deployment.update(devices=result.devices, usd_per_hour=price)
        return result

    def passes(rate: float) -> bool:
        rate = _round_rate(rate)
        if rate not in rows:
            at, scale = workload_at(rate)
            rows[rate] = {"run": len(rows) + 1, **run_row(rate, scale, run(at), slo)}
            watch.tick(len(rows))
        return bool(rows[rate]["passes"])

    lo: float | None = None  # highest passing rate
    hi: float | None = None  # lowest failing rate
    notes: list[str] = []
    try:
        for given in (rate_lo, rate_hi):
            if given is not None:
                if passes(given):
                    lo = _round_rate(given)
                else:
                    hi = _round_rate(given) if hi is None else min(hi, _round_rate(given))
        if lo is None and hi is None:
            mean_in, mean_out = float(drawn.input_tokens.mean()), float(drawn.output_tokens.mean())
            guess = sum(_first_guess(model_cfg, spec, engine, mean_in, mean_out, serve_kwargs)
                        for spec in (decode_specs or prefill_specs)) * replicas
            if passes(guess):
                lo = _round_rate(guess)
            else:
                hi = _round_rate(guess)
        while (lo is None or hi is None) and len(rows) < max_runs:  # bracket by doubling / halving
            if hi is None and lo is not None and rate_hi is None and lo * 2 <= RATE_RANGE[1]:
                nxt = _round_rate(lo * 2)
            elif lo is None and hi is not None and rate_lo is None and hi / 2 >= RATE_RANGE[0]:
                nxt = _round_rate(hi / 2)
            else:
                break
            if passes(nxt):
                lo = nxt
            else:
                hi = nxt
        while lo is not None and hi is not None and hi > lo * (1 + rel_tol) and len(rows) < max_runs:
            mid = _round_rate(math.sqrt(lo * hi))
            if mid in (lo, hi):
                break
            if passes(mid):
                lo = mid
            else:
                hi = mid
    finally:
        watch.close()

    curve = pd.DataFrame(sorted(rows.values(), key=lambda r: r["rate_per_s"])).reset_index(drop=True)
    binding = ""
    if hi is not None:
        failed = rows[hi]
        binding = failed["worst_slo"] if not failed["meets_slo"] else "queue growing"
    bracketed = lo is not None and hi is not None and hi <= lo * (1 + rel_tol) * (1 + 1e-9)
    if lo is None:
        notes.append(f"no run met the SLOs; the lowest rate tried, {curve['rate_per_s'].min():.4g} req/s, failed")
    if hi is None:
        notes.append(f"every run met the SLOs up to {lo:.4g} req/s ("
                     + ("the upper bracket rate_hi" if rate_hi is not None else "max_runs reached") + ")")
    elif lo is not None and not bracketed:
        notes.append(f"stopped after {len(rows)} runs (max_runs) with the capacity between {lo:.4g} and "
                     f"{hi:.4g} req/s")
    short = curve[~curve["steady"] & ~curve["overloaded"]]
    if len(short):
        notes.append(f"{len(short)} of {len(curve)} runs too short to decide steady state (arrival span < 5 x mean "
                     f"E2E, at {', '.join(f'{r:.4g}' for r in short['rate_per_s'])} req/s); raise requests")
    if lo is not None and not rows[lo]["steady"]:
        notes.append(f"the run at the capacity is not steady: {rows[lo]['steady_reason']}")
    if decode_specs is not None:
        name = f"{'+'.join(x.name for x in prefill_specs)} prefill, {'+'.join(x.name for x in decode_specs)} decode"
    else:
        name = system_spec.name if replicas == 1 else f"{replicas} x {system_spec.name}"
    return CapacityResult(
        model=model_cfg.name, system=name, software=engine.name, devices=deployment.get("devices", 0),
        usd_per_hour=deployment.get("usd_per_hour", float("nan")),
        workload=base.name if trace_rate is None else str(base.trace), slo=slo,
        capacity_per_s=lo or 0.0, rate_scale=(lo / trace_rate if trace_rate and lo else None), binding=binding,
        curve=curve, bracketed=bracketed, rel_tol=float(rel_tol), trace_mean_rate_per_s=trace_rate,
        notes=tuple(notes))
