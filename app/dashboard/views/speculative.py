"""Speculative decoding: a design point with a draft, by draft length and acceptance: speedup,
tokens/s, time per token and the verify's Op/B, against plain decode."""

from __future__ import annotations

import streamlit as st

from decodex.app.dashboard.design import DesignPoint, design_point_inputs, run_or_report, selectable_systems
from decodex.app.dashboard.guard import page_errors
from decodex.app.dashboard.speculative_view import (
    MAX_DRAFT_LENGTH,
    SpeculativeChoice,
    cached_parts,
    intensity_figure,
    speedup_figure,
    steps_table,
)
from decodex.app.dashboard.tables import number_config
from decodex.workloads.catalog import list_models

DRAFT_KINDS = {"self": "the target's first layers", "heads": "decoding heads (Medusa-style)",
               "model": "a draft model", "free": "free (an upper bound)"}

with page_errors():  # any error ends the page in one message, never a traceback
    st.title("Speculative decoding")
    point = design_point_inputs("spec", default=DesignPoint(model="llama3-8b", batch=8, tp=1))
    if point is None:
        st.stop()
    bar = st.sidebar
    bar.header("Draft")
    kind = bar.selectbox("Drafted by", list(DRAFT_KINDS), format_func=DRAFT_KINDS.get, key="spec.kind")
    if kind == "self":
        draft = f"self:{int(bar.number_input('Layers of the target', 1, 512, 4, key='spec.layers'))}"
        if bar.checkbox("With Kangaroo's adapter", False, key="spec.adapter",
                        help="One attention layer and two norms between the early exit and the LM head"):
            draft += "+adapter"
    elif kind == "heads":
        draft = f"heads:{int(bar.number_input('Heads', 1, MAX_DRAFT_LENGTH, 5, key='spec.heads'))}"
    elif kind == "model":
        models = list_models()
        name = bar.selectbox("Draft model", models, index=models.index("llama3.2-1b") if "llama3.2-1b" in models
                             else 0, key="spec.draft_model")
        places = ["(the target's system)", *selectable_systems()]
        where = bar.selectbox("Draft runs on", places, key="spec.draft_system",
                              help="Another system drafts while the target's waits (no overlap within a step)")
        draft = f"model:{name}" + ("" if where == places[0] else f"@{where}")
    else:
        draft = "free"
    longest = int(bar.slider("Longest draft (tokens)", 1, MAX_DRAFT_LENGTH, 8, key="spec.longest"))
    acceptance = float(bar.slider("Acceptance per drafted position", 0.0, 1.0, 0.7, 0.05, key="spec.acceptance",
                                  help="The chance each drafted token is accepted once those before it are "
                                       "(one rate: tokens per step = (1 - a^(k+1)) / (1 - a))."))
    if kind == "heads":
        longest = min(longest, int(draft.split(":")[1]))  # k heads draft at most k tokens
    choice = SpeculativeChoice(draft, longest, acceptance)
    st.caption(f"{point.label()}; draft {draft}")
    parts = run_or_report(cached_parts, point, choice)
    if parts is None:
        st.stop()
    table = steps_table(parts, acceptance)
    best = table[table["fits"]].sort_values("tokens_per_s", ascending=False).head(1)
    cols = st.columns(4)
    cols[0].metric("Plain decode", f"{parts.plain.step_time_s * 1e3:.3f} ms per token")
    if not best.empty:
        row = best.iloc[0]
        cols[1].metric("Best draft length", f"{int(row['draft_length'])}")
        cols[2].metric("Speedup", f"{row['speedup']:.2f}x")
        cols[3].metric("Time per token", f"{row['time_per_token_s'] * 1e3:.3f} ms",
                       help=f"{row['tokens_per_s']:,.0f} tokens/s for the batch")
    if not table["fits"].all():
        st.warning(f"Some draft lengths do not fit: {table.loc[~table['fits'], 'reason'].iloc[0]}")
    left, right = st.columns(2)
    left.plotly_chart(speedup_figure(parts, acceptance), key="spec.speedup")
    right.plotly_chart(intensity_figure(parts, acceptance), key="spec.intensity")
    st.subheader("Steps by draft length")
    st.dataframe(table, hide_index=True, key="spec.table", column_config=number_config(table))
    st.caption("Per draft length k at the chosen acceptance: tokens each request emits per step, the draft's and "
               "the verify's time, time per emitted token, tokens/s of the batch, speedup over plain decode, and the "
               "verify's FLOP per byte (plain decode's times about k + 1 while weights dominate). Times in s.")
    st.download_button("Download (CSV)", table.to_csv(index=False).encode(), file_name="speculative.csv",
                       mime="text/csv")
