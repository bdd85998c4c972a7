"""Design point: one model on one system at one batch: step time with its validation band,
tokens/s, energy per token, memory, the per-op breakdown and the roofline."""

from __future__ import annotations

import streamlit as st

from decodex.app.dashboard.charts import op_breakdown_figure, roofline_with_band
from decodex.app.dashboard.design import cached_estimate, design_point_inputs, run_or_report
from decodex.app.dashboard.guard import page_errors
from decodex.app.dashboard.tables import number_config, ops_display
from decodex.app.formatting import band_text, overlap_note

with page_errors():  # any error ends the page in one message, never a traceback
    st.title("Design point")
    point = design_point_inputs("design")
    if point is None:
        st.stop()
    st.caption(point.label())
    result = run_or_report(cached_estimate, point)
    if result is None:
        st.stop()

    band = band_text(result.band_low_s, result.band_high_s)
    cols = st.columns(4)
    cols[0].metric("Step time", f"{result.step_time_s * 1e3:.3f} ms",
                   help=f"measured step time likely in: {band} ({result.band_source or 'no records'})")
    cols[1].metric("Output tokens/s", f"{result.tokens_per_s:,.0f}",
                   help=f"{result.tokens_per_s / result.devices:,.0f} per device on {result.devices} devices")
    cols[2].metric("Energy per token", f"{result.energy_per_token_j * 1e3:.1f} mJ")
    cols[3].metric("Memory per device", f"{result.memory_required_bytes / 1e9:.1f} GB",
                   help=f"of {result.memory_capacity_bytes / 1e9:.1f} GB; weights {result.weight_bytes / 1e9:.1f} GB, "
                        f"KV {result.kv_bytes / 1e9:.1f} GB")
    st.caption(f"Measured step time likely in: {band} ({result.band_source or 'no validation records'}).")
    if not result.fits:
        st.warning(f"Does not fit: {result.reason}")
    if result.warnings:  # one box for all of them, not a stack of boxes
        with st.expander(f"{len(result.warnings)} note{'s' if len(result.warnings) > 1 else ''} on what was validated",
                         expanded=False):
            st.markdown("\n".join(f"- {warning}" for warning in result.warnings))

    stack_by = st.radio("Stack the breakdown by", ["name", "unit", "bound"], horizontal=True, key="design.stack_by",
                        format_func={"name": "op", "unit": "unit", "bound": "bound"}.get)
    left, right = st.columns(2)
    left.plotly_chart(op_breakdown_figure(result, stack_by=stack_by), key="design.breakdown")
    right.plotly_chart(roofline_with_band(result), key="design.roofline")
    overlap = overlap_note(result)
    if overlap:
        st.caption(f"Overlap: {overlap}; the bars stack each op's own time.")

    ops = result.ops
    st.subheader("Operators")
    shown = ops_display(ops)
    st.dataframe(shown, hide_index=True, key="design.ops", column_config=number_config(shown))
    st.caption("Per op: FLOP and bytes it moves on one device, its time, and × per step (layers); time per step = "
               "time × count; share of the step. The CSV holds the same in SI units (FLOP, B, s).")
    st.download_button("Download ops (CSV)", ops.to_csv(index=False).encode(), file_name="ops.csv", mime="text/csv")
