"""Entry script of the Decodex dashboard (``decodex app``, or ``streamlit run`` on this file):
the page frame and the navigation between the views in ``app/dashboard/views/``."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from decodex.app.dashboard.guard import page_errors

VIEWS = Path(__file__).resolve().parent / "views"

PAGES = [
    st.Page(VIEWS / "design_point.py", title="Design point", icon=":material/tune:", default=True),
    st.Page(VIEWS / "timeline.py", url_path="timeline", title="Timeline", icon=":material/view_timeline:"),
    st.Page(VIEWS / "serving.py", url_path="serving", title="Serving", icon=":material/query_stats:"),
    st.Page(VIEWS / "systems_compared.py", url_path="systems", title="Systems compared", icon=":material/compare:"),
    st.Page(VIEWS / "speculative.py", url_path="speculative", title="Speculative decoding",
            icon=":material/fast_forward:"),
    st.Page(VIEWS / "sweep_explorer.py", url_path="sweeps", title="Sweep explorer", icon=":material/scatter_plot:"),
    st.Page(VIEWS / "validation_records.py", url_path="validation", title="Validation", icon=":material/fact_check:"),
]

st.set_page_config(page_title="Decodex", page_icon=":material/memory:", layout="wide")
with page_errors():  # each view has its own; this one holds errors of the frame itself
    st.navigation(PAGES).run()
