"""Pure functions of the Validation page's "Decode steps on a real GPU" section (no Streamlit):
the committed end-to-end records compared with ``estimate`` (``validation/e2e_decode.py``), as a
table in ms with labelled columns and as a predicted-vs-measured figure."""

from __future__ import annotations

import math

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from decodex.app.dashboard.charts import TEMPLATE

E2E_GOAL = 0.15
"""The end-to-end goal drawn on the figure: predicted within +-15 % of measured."""


def e2e_display(compared: pd.DataFrame) -> pd.DataFrame:
    """``compared`` (from :func:`validation.e2e_decode.compare_e2e`; s) as shown: times in ms,
    errors in %, one labelled column each."""
    ms = 1e3
    return pd.DataFrame({
        "model": compared["model"], "batch": compared["batch"], "context (tokens)": compared["context"],
        "measured (ms)": compared["measured_s"] * ms, "predicted (ms)": compared["predicted_s"] * ms,
        "error (%)": compared["error"] * 100,
        "attention meas. (ms)": compared["measured_attention_s"] * ms,
        "attention pred. (ms)": compared["predicted_attention_s"] * ms,
        "projections meas. (ms)": compared["measured_projections_s"] * ms,
        "projections pred. (ms)": compared["predicted_projections_s"] * ms,
        "rest meas. (ms)": compared["measured_rest_s"] * ms, "rest pred. (ms)": compared["predicted_rest_s"] * ms,
    })


def e2e_figure(compared: pd.DataFrame) -> go.Figure:
    """Log-log scatter of predicted vs measured step time (ms), coloured by model, with y = x and
    the +-15 % goal."""
    shown = e2e_display(compared)
    figure = px.scatter(shown, x="measured (ms)", y="predicted (ms)", color="model", log_x=True, log_y=True,
                        template=TEMPLATE, hover_data=["batch", "context (tokens)", "error (%)"])
    values = pd.concat([shown["measured (ms)"], shown["predicted (ms)"]])
    lo, hi = float(values.min()) / 1.2, float(values.max()) * 1.2
    for factor, name, dash in ((1.0, "y = x", "dash"), (1 - E2E_GOAL, "-15 %", "dot"), (1 + E2E_GOAL, "+15 %", "dot")):
        figure.add_trace(go.Scatter(x=[lo, hi], y=[lo * factor, hi * factor], mode="lines", name=name,
                                    line={"color": "black" if factor == 1.0 else "gray", "dash": dash, "width": 1}))
    axis = [math.log10(lo), math.log10(hi)]  # the same range on both axes: y = x at 45 degrees
    figure.update_xaxes(range=axis)
    figure.update_yaxes(range=axis, scaleanchor="x", scaleratio=1)
    figure.update_layout(title="One decode step: Decodex estimate vs measured on the GPU", height=480)
    return figure
