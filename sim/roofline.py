"""Roofline data of a step (each op's arithmetic intensity and attained FLOP/s against its
unit's ceilings) and a Plotly figure of it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from decodex.sim.results import StepResult


def roofline_points(result: StepResult) -> pd.DataFrame:
    """One row per compute op: ``arithmetic_intensity`` (FLOP/B), ``attained_flops`` (FLOP/s),
    the ceilings ``peak_flops`` and ``peak_bandwidth_bytes_per_s``, and the ``ridge`` point
    (FLOP/B) where they meet."""
    frame = result.ops
    frame = frame[(frame["kind"] != "collective") & (frame["flops"] > 0)].copy()
    frame["attained_flops"] = frame["flops"] / frame["time_s"]
    frame["ridge"] = frame["peak_flops"] / frame["peak_bandwidth_bytes_per_s"]
    columns = ["template", "block", "name", "kind", "unit", "dtype", "arithmetic_intensity", "attained_flops",
               "peak_flops", "peak_bandwidth_bytes_per_s", "ridge", "bound", "time_s", "repeat"]
    return frame[columns].reset_index(drop=True)


def roofline_figure(result: StepResult, title: str | None = None) -> go.Figure:
    """Log-log roofline: each unit's ceiling (per dtype) and each op as a point, in TFLOP/s."""
    points = roofline_points(result)
    fig = go.Figure()
    if points.empty:
        return fig
    lo = max(points["arithmetic_intensity"].min() / 4, 1e-2)
    hi = max(points["arithmetic_intensity"].max(), points["ridge"].max()) * 4
    ai = np.logspace(np.log10(lo), np.log10(hi), 200)
    ceilings = points.drop_duplicates(["unit", "dtype"])
    for row in ceilings.itertuples():
        roof = np.minimum(row.peak_flops, ai * row.peak_bandwidth_bytes_per_s) / 1e12
        fig.add_trace(go.Scatter(x=ai, y=roof, mode="lines", name=f"{row.unit} {row.dtype} ceiling",
                                 line={"dash": "dash"}))
    for block, group in points.groupby("block", sort=False):
        fig.add_trace(go.Scatter(
            x=group["arithmetic_intensity"], y=group["attained_flops"] / 1e12, mode="markers", name=str(block),
            text=group["name"], marker={"size": 10},
            hovertemplate="%{text}<br>%{x:.3g} FLOP/B<br>%{y:.3g} TFLOP/s<extra></extra>"))
    fig.update_xaxes(type="log", title="arithmetic intensity (FLOP/B)")
    fig.update_yaxes(type="log", title="attained TFLOP/s")
    fig.update_layout(title=title or f"{result.model} on {result.system}: roofline", template="plotly_white")
    return fig
