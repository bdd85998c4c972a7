"""Pure functions of the "Systems compared" and "Validation" pages (no Streamlit, so they are
tested alone): one workload on several systems, the reproduction targets as a table, and the
measured records (predicted vs measured) with their error summary and bands.

Inside, every quantity is SI (s, B, J, USD); the ``*_display`` functions convert for showing."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from decodex.sim.system_comparison import (  # noqa: F401  (the page and its tests import them from here)
    AUTO_TP,
    TP_CHOICES,
    SystemRow,
    comparison_frame,
    needs_engine,
    row_from_result,
    run_system,
    tp_candidates,
)
from decodex.validation.bands import KIND_ALIASES, BandTable
from decodex.validation.records import error_summary, relative_errors
from decodex.validation.reproduce import Target, TargetResult

TEMPLATE = "plotly_white"

# ---------------------------------------------------------------------------------------------
# Systems compared: one workload on several systems (the runs: sim/system_comparison.py)
# ---------------------------------------------------------------------------------------------

DISPLAY_COLUMNS = {
    "system": "system", "status": "status", "engine": "mapper (path)", "parallelism": "parallelism",
    "devices": "devices", "step_ms": "step time (ms)", "tokens_per_s": "tokens/s",
    "tokens_per_s_per_device": "tokens/s per device", "energy_mj": "energy/token (mJ)", "hourly": "$/hour",
    "per_mtok": "$/Mtok", "memory": "memory/device (GB)",
}
NO_PRICE = "no price"
"""Shown where a device has no catalog price (research designs, FPGA cards)."""


def _money(value: float, decimals: int) -> str:
    return f"{value:,.{decimals}f}" if math.isfinite(value) and value > 0 else NO_PRICE


def comparison_display(frame: pd.DataFrame) -> pd.DataFrame:
    """The comparison frame for showing: ms, mJ, GB (1e9 B), readable column names, one column
    for the mapper and its path and one for memory need against capacity, prices as text ("no
    price" where a device has none). The precision is the page's and the reason for a row that
    does not fit or cannot run is said under the table, so neither takes a column."""
    out = frame.assign(step_ms=frame["step_time_s"] * 1e3, energy_mj=frame["energy_per_token_j"] * 1e3)
    out["engine"] = [f"{m} ({p})" for m, p in zip(frame["mapper"], frame["path"], strict=True)]
    out["hourly"] = [_money(float(v), 2) for v in frame["usd_per_hour"]]
    out["per_mtok"] = [_money(float(v), 3) for v in frame["usd_per_mtok"]]
    out["memory"] = [f"{need / 1e9:,.1f} of {cap / 1e9:,.1f}" if math.isfinite(need) and math.isfinite(cap) else ""
                     for need, cap in zip(frame["memory_required_bytes"], frame["memory_capacity_bytes"], strict=True)]
    out["devices"] = out["devices"].astype("Int64").mask(out["status"] == "cannot run")
    return out[list(DISPLAY_COLUMNS)].rename(columns=DISPLAY_COLUMNS)


def _bar(frame: pd.DataFrame, column: str, scale: float, label: str, title: str) -> go.Figure:
    shown = frame[frame["status"] != "cannot run"].assign(value=lambda f: f[column] * scale)
    figure = px.bar(shown, x="system", y="value", color="status", template=TEMPLATE, text_auto=".3s",
                    color_discrete_map={"ok": "#2a9d8f", "does not fit": "#e9c46a"},
                    hover_data=["parallelism", "precision", "devices", "path"], labels={"value": label})
    figure.update_xaxes(categoryorder="array", categoryarray=list(shown["system"]))
    figure.update_layout(title=title, xaxis_title="", legend_title_text="memory")
    return figure


def tokens_per_device_figure(frame: pd.DataFrame) -> go.Figure:
    """Bars of output tokens/s per device for each system that runs (coloured by memory fit)."""
    return _bar(frame, "tokens_per_s_per_device", 1.0, "tokens/s per device", "Output tokens/s per device")


def energy_per_token_figure(frame: pd.DataFrame) -> go.Figure:
    """Bars of energy per output token, mJ (from J), for each system that runs."""
    return _bar(frame, "energy_per_token_j", 1e3, "energy per token (mJ)", "Energy per output token")


# ---------------------------------------------------------------------------------------------
# Reproduction targets
# ---------------------------------------------------------------------------------------------


def target_groups(targets: Sequence[Target]) -> list[str]:
    """``all`` followed by the targets' groups, sorted (what ``decodex reproduce NAME`` accepts)."""
    return ["all", *sorted({t.group for t in targets})]


def select_targets(targets: Sequence[Target], selection: str) -> list[Target]:
    """The targets whose name or group equals ``selection`` (``all``: every one), as
    :func:`validation.reproduce.reproduce` selects them."""
    return [t for t in targets if selection in ("all", t.name, t.group)]


def target_row(target: Target, result: TargetResult | None, error: str = "") -> dict[str, Any]:
    """One row of the reproduction table: the paper value, the simulated one, the error (as a
    fraction for relative targets, in ``unit`` for absolute ones), the tolerance and the verdict
    (``pass``/``FAIL``, or ``reported`` with its reason as the note).
    ``result`` None: the runner failed with ``error`` (a ``FAIL`` row that says why)."""
    row: dict[str, Any] = {"target": target.name, "group": target.group, "paper": target.value,
                           "unit": target.unit, "tolerance": target.tolerance, "absolute": target.absolute,
                           "source": target.source}
    if result is None:
        return {**row, "simulated": math.nan, "error": math.nan, "passed": False, "result": "FAIL",
                "note": error}
    return {**row, "simulated": result.simulated, "error": result.error, "passed": bool(result.passed),
            "result": result.verdict, "note": result.reason}


def _signed(value: float, absolute: bool, unit: str) -> str:
    if not math.isfinite(value):
        return "n/a"
    return f"{value:+.3g} {unit}" if absolute else f"{100 * value:+.1f} %"


def reproduce_display(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The reproduction table for showing (as ``decodex reproduce`` prints it): values with their
    unit, the error in % (relative targets) or in the unit (absolute ones), the tolerance alike."""
    out = []
    for r in rows:
        absolute, unit = bool(r["absolute"]), str(r["unit"])
        simulated = r["simulated"]
        out.append({
            "target": r["target"], "paper": f"{r['paper']:.4g} {unit}",
            "simulated": f"{simulated:.4g} {unit}" if math.isfinite(simulated) else "n/a",
            "error": _signed(float(r["error"]), absolute, unit),
            "tolerance": f"±{r['tolerance']:g} {unit}" if absolute else f"±{100 * r['tolerance']:.0f} %",
            "result": r["result"], "note": r["note"], "source": r["source"]})
    return pd.DataFrame(out, columns=["target", "paper", "simulated", "error", "tolerance", "result", "note",
                                      "source"])


def result_colour(value: str) -> str:
    """CSS for a ``result`` cell: green for ``pass``, red for ``FAIL``, grey for ``reported``."""
    if value == "reported":
        return "background-color: #e9ecef; color: #343a40"
    if value == "pass":
        return "background-color: #d8f3dc; color: #1b4332"
    if value == "FAIL":
        return "background-color: #ffd6d6; color: #7a0000"
    return ""


# ---------------------------------------------------------------------------------------------
# Validation records
# ---------------------------------------------------------------------------------------------


def filter_records(frame: pd.DataFrame, devices: Sequence[str] | None = None, op_kinds: Sequence[str] | None = None,
                   runs: Sequence[str] | None = None) -> pd.DataFrame:
    """The rows of ``frame`` (from :func:`validation.records.load_records`) whose device, op kind
    and run are among the given ones (None: no filter on that column)."""
    mask = pd.Series(True, index=frame.index)
    for column, allowed in (("device", devices), ("op_kind", op_kinds), ("run_id", runs)):
        if allowed is not None:
            mask &= frame[column].astype(str).isin([str(a) for a in allowed])
    return frame[mask]


def with_relative_error(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` plus ``rel_error`` = predicted_s / measured_s - 1 (dimensionless; recomputed
    from the times, not read from the ``error`` column); rows without a positive finite
    measured time are left out."""
    ok = np.isfinite(frame["measured_s"].to_numpy(dtype=float)) & (frame["measured_s"].to_numpy(dtype=float) > 0)
    kept = frame[ok]
    return kept.assign(rel_error=relative_errors(kept["measured_s"].to_numpy(), kept["predicted_s"].to_numpy()))


def summary_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Error summary per device and op kind (:func:`validation.records.error_summary`): ``mape``
    and ``max_error`` (fractions of the measured time), ``bias`` (median signed error, fraction)
    and ``n`` cases; one row per (device, op kind), sorted."""
    columns = ["device", "op_kind", "mape", "max_error", "bias", "n"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    summary = error_summary(frame)
    rows = []
    for (device, kind), group in frame.groupby(["device", "op_kind"], sort=True):
        s = summary[str(device)][str(kind)]
        signed = relative_errors(group["measured_s"].to_numpy(), group["predicted_s"].to_numpy())
        rows.append({"device": str(device), "op_kind": str(kind), "mape": s["mape"], "max_error": s["max_error"],
                     "bias": float(np.median(signed)), "n": s["n"]})
    return pd.DataFrame(rows, columns=columns)


def summary_display(summary: pd.DataFrame) -> pd.DataFrame:
    """The error summary for showing: MAPE, max error and bias in %."""
    return pd.DataFrame({"device": summary["device"], "op kind": summary["op_kind"],
                         "MAPE (%)": summary["mape"] * 100, "max error (%)": summary["max_error"] * 100,
                         "bias, median (%)": summary["bias"] * 100, "n": summary["n"]})


def band_frame(table: BandTable, devices: Sequence[str] | None = None) -> pd.DataFrame:
    """The error bands estimates use (:mod:`validation.bands`), one row per (device, op kind):
    ``e_low``/``e_high`` (5th/95th percentile of the signed errors, fractions) and the factors
    ``low_factor`` = 1 / (1 + e_high), ``high_factor`` = 1 / (1 + e_low) by which a predicted
    time t turns into the band [low_factor t, high_factor t]; ``n`` cases. Op kinds are named
    as the estimates name them (``gemm`` -> ``matmul``, NCCL ops -> ``collective``)."""
    rows = []
    for device, bands in sorted(table.by_device.items()):
        if devices is not None and device not in devices:
            continue
        for kind, band in sorted(bands.items()):
            rows.append({"device": device, "op_kind": kind, "e_low": band.e_low, "e_high": band.e_high,
                         "low_factor": 1.0 / (1.0 + band.e_high), "high_factor": 1.0 / (1.0 + band.e_low),
                         "mape": band.mape, "n": band.n})
    return pd.DataFrame(rows, columns=["device", "op_kind", "e_low", "e_high", "low_factor", "high_factor", "mape",
                                       "n"])


def estimate_kind(op_kind: str) -> str:
    """The op kind an estimate prices a record's kind as (``validation.bands.KIND_ALIASES``)."""
    return KIND_ALIASES.get(op_kind, op_kind)


def predicted_vs_measured_figure(frame: pd.DataFrame, facet_by_device: bool = True,
                                 max_points: int = 20_000) -> go.Figure:
    """Log-log scatter of predicted vs measured time per case (s), coloured by op kind, one
    panel per device when ``facet_by_device``, with the y = x line (a perfect prediction). More
    than ``max_points`` rows are sampled (seeded) to keep the figure light."""
    shown = frame.sample(max_points, random_state=0) if len(frame) > max_points else frame
    facet = "device" if facet_by_device and shown["device"].nunique() > 1 else None
    figure = px.scatter(shown, x="measured_s", y="predicted_s", color="op_kind", facet_col=facet, facet_col_wrap=3,
                        log_x=True, log_y=True, template=TEMPLATE, render_mode="webgl", opacity=0.6,
                        hover_data=["kernel", "shape", "dtype", "run_id"],
                        labels={"measured_s": "measured (s)", "predicted_s": "predicted (s)", "op_kind": "op kind"})
    if not shown.empty:
        values = pd.concat([shown["measured_s"], shown["predicted_s"]]).to_numpy(dtype=float)
        values = values[np.isfinite(values) & (values > 0)]
        if values.size:
            lo, hi = float(values.min()) / 1.5, float(values.max()) * 1.5
            figure.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="y = x", legendgroup="y = x",
                                        line={"color": "black", "dash": "dash", "width": 1}),
                             row="all", col="all", exclude_empty_subplots=False)
            lines = [t for t in figure.data if t.name == "y = x"]
            for line in lines[1:]:
                line.showlegend = False
    figure.for_each_annotation(lambda a: a.update(text=a.text.split("=", 1)[-1]))
    figure.update_xaxes(exponentformat="SI")
    figure.update_yaxes(exponentformat="SI")
    figure.update_layout(title="Predicted vs measured time per case", height=480)
    return figure


def error_histogram_figure(frame: pd.DataFrame, bins: int = 80) -> go.Figure:
    """Histogram of the signed relative errors (predicted / measured - 1), shown in %, stacked
    by op kind."""
    shown = with_relative_error(frame).assign(rel_error_pct=lambda f: f["rel_error"] * 100)
    figure = px.histogram(shown, x="rel_error_pct", color="op_kind", nbins=bins, template=TEMPLATE, barmode="stack",
                          labels={"rel_error_pct": "relative error, predicted / measured - 1 (%)",
                                  "op_kind": "op kind"})
    figure.add_vline(x=0.0, line_dash="dash", line_color="black")
    figure.update_layout(title="Relative errors", yaxis_title="cases")
    return figure
