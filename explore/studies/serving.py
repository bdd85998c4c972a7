"""Serving capacity study: which deployment serves a production trace within its latency SLOs,
per device and per dollar.

For each :class:`Deployment` (colocated replicas of one system, or prefill instances of one system
with decode instances of another), :func:`sim.serving.capacity.capacity` finds the highest arrival
rate of the trace (replayed at a scaled rate, bursts kept) whose run meets every SLO with its
queue steady; the table normalizes it by the deployment's devices and by its price (the devices'
``usd_per_hour``). A deployment that cannot run (the model does not fit, a system without a
price) is a row with its reason; the study goes on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from decodex.core.errors import DecodexError
from decodex.sim.serving.capacity import capacity
from decodex.workloads.parallelism import Parallelism

if TYPE_CHECKING:
    import plotly.graph_objects as go

DEFAULT_SLO = {"ttft_p99": 2.0, "tpot_p99": 0.1}  # s: the question (TTFT p99 <= 2 s, TPOT p99 <= 100 ms)
DEFAULT_REQUESTS = 4000  # per run: at ~9 req/s the arrivals span ~7 min, > 5 x the mean E2E (steady-state check)


@dataclass(frozen=True)
class Deployment:
    """One way to deploy the model: ``replicas`` of ``system`` behind a router, or (with
    ``decode_system``) one ``system`` instance prefilling for one ``decode_system`` instance."""

    label: str
    system: str
    replicas: int = 1
    decode_system: str | None = None


DEFAULT_DEPLOYMENTS = (
    Deployment("H100 x8, colocated", "8x-h100-sxm"),
    Deployment("H200 x8, colocated", "8x-h200"),
    Deployment("Duplex x8, colocated", "8x-duplex"),
    Deployment("H100 x8 prefill + H20 x8 decode", "8x-h100-sxm", decode_system="8x-h20"),
    Deployment("H100 x8 prefill + Duplex x8 decode", "8x-h100-sxm", decode_system="8x-duplex"),
)

COLUMNS = ("deployment", "system", "devices", "usd_per_hour", "capacity_per_s", "rate_scale", "capacity_per_device",
           "capacity_per_usd_hour", "binding", "ttft_p99_s", "tpot_p99_s", "runs", "bracketed", "reason")


def capacity_study(model: str = "llama3-70b", trace: str = "azure-conv-2023", *,
                   slo: Mapping[str, float] | None = None, requests: int = DEFAULT_REQUESTS,
                   deployments: Sequence[Deployment] = DEFAULT_DEPLOYMENTS,
                   parallelism: Parallelism | None = None, rel_tol: float = 0.02, progress: bool = False,
                   **serve_kwargs: Any) -> pd.DataFrame:
    """Capacity of each deployment serving ``trace`` (a shipped trace or CSV file) under ``slo``
    (seconds by key, default TTFT p99 <= 2 s and TPOT p99 <= 0.1 s).

    ``requests``: per run (the trace's first N); ``parallelism``: of every instance (default
    tp 8); ``rel_tol``: the search's stopping width; ``serve_kwargs``: passed to every run
    (scheduler, software, ...). Returns one row per deployment (:data:`COLUMNS`): capacity in
    requests/s, per device and per USD/hour, the SLO that binds, TTFT and TPOT p99 (s) of the
    run at capacity; ``reason`` says why a deployment has no capacity (empty otherwise).
    """
    slo = dict(slo or DEFAULT_SLO)
    par = parallelism or Parallelism(tp=8)
    rows = []
    for plan in deployments:
        row: dict[str, Any] = dict.fromkeys(COLUMNS)
        row.update(deployment=plan.label, system=plan.system, reason="")
        try:
            result = capacity(model, plan.system, slo=slo, workload=trace, requests=requests, parallelism=par,
                              replicas=plan.replicas, decode_systems=plan.decode_system, rel_tol=rel_tol,
                              progress=progress, **serve_kwargs)
        except DecodexError as err:
            row.update(reason=str(err), capacity_per_s=0.0)
            rows.append(row)
            continue
        curve = result.curve
        at = curve[curve["rate_per_s"] == result.capacity_per_s]
        row.update(system=result.system, devices=result.devices, usd_per_hour=result.usd_per_hour,
                   capacity_per_s=result.capacity_per_s, rate_scale=result.rate_scale,
                   capacity_per_device=result.capacity_per_device,
                   capacity_per_usd_hour=result.capacity_per_usd_hour, binding=result.binding,
                   ttft_p99_s=float(at["ttft_p99_s"].iloc[0]) if len(at) else float("nan"),
                   tpot_p99_s=float(at["tpot_p99_s"].iloc[0]) if len(at) else float("nan"),
                   runs=result.runs, bracketed=result.bracketed,
                   reason="; ".join(result.notes) if result.capacity_per_s == 0 else "")
        rows.append(row)
    return pd.DataFrame(rows, columns=list(COLUMNS))


def capacity_figure(frame: pd.DataFrame) -> go.Figure:
    """Two bar panels: capacity per device (requests/s) and per price (requests/s per USD/hour)
    of each deployment; deployments without a capacity are left out."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    shown = frame[frame["capacity_per_s"] > 0]
    figure = make_subplots(rows=1, cols=2, subplot_titles=("capacity per device (req/s)",
                                                           "capacity per price (req/s per USD/h)"))
    for col, column in enumerate(("capacity_per_device", "capacity_per_usd_hour"), start=1):
        figure.add_trace(go.Bar(x=shown["deployment"], y=shown[column], showlegend=False,
                                customdata=shown[["capacity_per_s", "binding"]],
                                hovertemplate="%{x}: %{y:.3g}<br>capacity %{customdata[0]:.3g} req/s, "
                                              "binding %{customdata[1]}<extra></extra>"), row=1, col=col)
    figure.update_layout(template="plotly_white", title="Capacity under the SLOs, per device and per dollar")
    return figure
