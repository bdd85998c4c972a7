"""Attention-FFN disaggregation beyond the papers (``decodex study afd``): from the planner
(:mod:`sim.afd_solver`), the best disaggregated layout and the colocated baseline at each context
length (tokens/s per GPU under the TPOT target, and the best attention:FFN ratio), and the NIC
bandwidth below which disaggregation stops paying. Every value is a simulated pipeline."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from decodex.sim.afd_solver import AfdLayout, candidate_layouts, solve_afd

TEMPLATE = "plotly_white"


def _best(frame: pd.DataFrame, colocated: bool, objective: str) -> pd.Series | None:
    rows = frame[(frame["ratio"] == "colocated") == colocated]
    rows = rows[rows["feasible"].astype(bool)]
    return None if rows.empty else rows.loc[rows[objective].idxmax()]


def compare_best(frame: pd.DataFrame, objective: str = "tokens_per_s_per_device") -> dict[str, object]:
    """The best disaggregated and the best colocated row of a :func:`solve_afd` frame: their
    ``objective`` values, the AFD layout (ratio, devices, micro-batches, batch) and the gain
    (AFD / colocated; NaN when either has no feasible row)."""
    afd, colo = _best(frame, False, objective), _best(frame, True, objective)
    afd_value = float(afd[objective]) if afd is not None else float("nan")
    colo_value = float(colo[objective]) if colo is not None else float("nan")
    return {"afd_" + objective: afd_value, "colocated_" + objective: colo_value,
            "gain": afd_value / colo_value if colo_value > 0 else float("nan"),
            "best_ratio": afd["ratio"] if afd is not None else "",
            "best_attention_instances": int(afd["attention_instances"]) if afd is not None else 0,
            "best_ffn_instances": int(afd["ffn_instances"]) if afd is not None else 0,
            "best_microbatches": int(afd["microbatches"]) if afd is not None else 0,
            "afd_batch": float(afd["batch"]) if afd is not None else float("nan"),
            "colocated_devices": int(colo["devices"]) if colo is not None else 0}


CONTEXTS = (2048, 4096, 8192, 16384, 32768)
"""Context lengths (tokens) of the context study."""


def context_study(model: str = "step3", contexts: Sequence[int] = CONTEXTS, *,
                  tpot_s: float = 0.05, layouts: Sequence[AfdLayout] | None = None, precision: str = "fp8",
                  objective: str = "tokens_per_s_per_device",
                  on_solved: Callable[[], None] | None = None) -> pd.DataFrame:
    """One row per context length (tokens): best AFD and colocated ``objective`` under ``tpot_s``
    (s), the gain and the best attention:FFN layout (:func:`compare_best`). ``on_solved`` is
    called after each context's solve (a progress line)."""
    rows = []
    for context in contexts:
        frame = solve_afd(model, context=int(context), tpot_s=tpot_s, layouts=layouts, precision=precision,
                          objective=objective)
        if on_solved is not None:
            on_solved()
        rows.append({"model": model, "context": int(context), "tpot_target_s": tpot_s,
                     **compare_best(frame, objective)})
    return pd.DataFrame(rows)


NIC_SCALES = (1 / 128, 1 / 64, 1 / 32, 1 / 16, 0.25, 1.0)  # of the catalog's 400 Gb/s per GPU


def nic_study(model: str = "step3", scales: Sequence[float] = NIC_SCALES, *, context: int = 4096,
              tpot_s: float = 0.05, layouts: Sequence[AfdLayout] | None = None, precision: str = "fp8",
              objective: str = "tokens_per_s_per_device",
              on_solved: Callable[[], None] | None = None) -> pd.DataFrame:
    """One row per NIC bandwidth multiple (of the catalog's, for AFD and colocated alike): best
    AFD and colocated ``objective``, the gain and the NIC bandwidth per GPU (B/s). ``on_solved``
    is called after each multiple's solve."""
    base = list(layouts) if layouts is not None else candidate_layouts()
    rows = []
    for scale in scales:
        scaled = [dataclasses.replace(layout, nic_scale=float(scale)) for layout in base]
        frame = solve_afd(model, context=context, tpot_s=tpot_s, layouts=scaled, precision=precision,
                          objective=objective)
        if on_solved is not None:
            on_solved()
        rows.append({"model": model, "nic_scale": float(scale), "context": context, "tpot_target_s": tpot_s,
                     **compare_best(frame, objective)})
    return pd.DataFrame(rows)


def break_even_scale(study: pd.DataFrame) -> float:
    """The NIC multiple at which AFD's gain over colocated crosses 1, interpolated in log-scale
    between the study's points; NaN if it never crosses (AFD always or never pays)."""
    frame = study.dropna(subset=["gain"]).sort_values("nic_scale")
    x, g = np.log(frame["nic_scale"].to_numpy()), frame["gain"].to_numpy() - 1.0
    for i in range(len(g) - 1):
        if g[i] == 0:
            return float(np.exp(x[i]))
        if g[i] * g[i + 1] < 0:
            return float(np.exp(x[i] - g[i] * (x[i + 1] - x[i]) / (g[i + 1] - g[i])))
    return float("nan")


def context_figure(study: pd.DataFrame, objective: str = "tokens_per_s_per_device") -> go.Figure:
    """Tokens/s per GPU against context for the best AFD layout and the colocated baseline, with
    the best attention:FFN layout written on each AFD point; gain on a second axis."""
    figure = make_subplots(specs=[[{"secondary_y": True}]])
    figure.add_trace(go.Scatter(x=study["context"], y=study["afd_" + objective], mode="lines+markers+text",
                                name="AFD (best layout)", text=study["best_ratio"], textposition="top center"))
    figure.add_trace(go.Scatter(x=study["context"], y=study["colocated_" + objective], mode="lines+markers",
                                name="colocated (DP attention + EP)"))
    figure.add_trace(go.Scatter(x=study["context"], y=study["gain"], mode="lines", name="AFD / colocated",
                                line={"dash": "dot"}), secondary_y=True)
    figure.update_xaxes(type="log", title="context (tokens)")
    figure.update_yaxes(title=objective, secondary_y=False)
    figure.update_yaxes(title="gain", secondary_y=True)
    model = study["model"].iloc[0] if len(study) else ""
    figure.update_layout(template=TEMPLATE, title=f"{model}: best AFD layout vs colocated under "
                         f"{study['tpot_target_s'].iloc[0] * 1e3:g} ms TPOT" if len(study) else "")
    return figure


def nic_figure(study: pd.DataFrame, objective: str = "tokens_per_s_per_device") -> go.Figure:
    """AFD and colocated ``objective`` against the NIC bandwidth multiple, with the break-even."""
    figure = go.Figure()
    figure.add_trace(go.Scatter(x=study["nic_scale"], y=study["afd_" + objective], mode="lines+markers+text",
                                name="AFD (best layout)", text=study["best_ratio"], textposition="top center"))
    figure.add_trace(go.Scatter(x=study["nic_scale"], y=study["colocated_" + objective], mode="lines+markers",
                                name="colocated"))
    crossing = break_even_scale(study)
    if np.isfinite(crossing):
        figure.add_vline(x=crossing, line_dash="dash", annotation_text=f"break-even {crossing:.2f}x")
    figure.update_xaxes(type="log", title="NIC bandwidth (x catalog, 400 Gb/s per GPU)")
    figure.update_yaxes(title=objective)
    figure.update_layout(template=TEMPLATE, title="Where disaggregation stops paying: NIC bandwidth")
    return figure
