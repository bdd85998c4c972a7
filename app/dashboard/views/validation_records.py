"""Validation: predicted vs measured times from the committed records (``validation/records/``),
the error summary per device and op kind, the distribution of errors, and the error bands that
every estimate carries (``validation/bands.py``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from decodex.app.dashboard.compare import (
    band_frame,
    error_histogram_figure,
    filter_records,
    predicted_vs_measured_figure,
    summary_display,
    summary_frame,
    with_relative_error,
)
from decodex.app.dashboard.guard import page_errors
from decodex.app.dashboard.validation_e2e import e2e_display, e2e_figure
from decodex.validation.bands import HIGH_Q, LOW_Q, band_table
from decodex.validation.records import RECORDS_DIR, load_records, mape


def _records_stamp() -> tuple[tuple[str, float], ...]:
    """Record files and their modification times: a cache key that changes with them."""
    return tuple((str(p), p.stat().st_mtime) for p in sorted(Path(RECORDS_DIR).glob("*/*")) if p.is_file())


@st.cache_data(max_entries=4, show_spinner=False)
def cached_records(stamp: tuple[tuple[str, float], ...]) -> pd.DataFrame:
    """Every record case (:func:`validation.records.load_records`; times in s), re-read when a
    record file changes (``stamp``)."""
    del stamp  # the cache key only
    return load_records()


@st.cache_data(max_entries=4, show_spinner=False)
def cached_e2e(stamp: tuple[tuple[str, float], ...]) -> pd.DataFrame:
    """The committed end-to-end GPU decode steps compared with estimate (s), re-read when a
    record file changes (``stamp``)."""
    del stamp  # the cache key only
    from decodex.validation.e2e_decode import compare_e2e, load_e2e_records

    return compare_e2e(load_e2e_records())


def _e2e_section(compared: pd.DataFrame) -> None:
    st.subheader("Decode steps on a real GPU")
    if compared.empty:
        st.info("No end-to-end records yet; a GPU session writes them (docs/validation-gpu.md).")
        return
    st.caption("One decode step of a Llama model in PyTorch (bf16, random weights, pre-filled KV cache, one CUDA "
               "graph) timed on the GPU, next to `estimate` on that GPU's catalog spec. No spec field was fitted on "
               "these rows. Attention and projections are timed as graphs of their own; the rest is the step minus "
               "both (norms, RoPE, residual adds: unfused in PyTorch, fused in the kernels Decodex prices). "
               "Details: docs/validation-gpu.md; `decodex validate e2e` prints the same.")
    errors = compared["error"].abs()
    cols = st.columns(3)
    cols[0].metric("Points", f"{len(compared)}")
    cols[1].metric("Step MAPE", f"{100 * errors.mean():.1f} %", help="mean |predicted / measured − 1|; goal 15 %")
    cols[2].metric("Worst", f"{100 * errors.max():.1f} %")
    st.plotly_chart(e2e_figure(compared), key="validation.e2e_scatter")
    st.dataframe(e2e_display(compared), hide_index=True, key="validation.e2e_table", column_config={
        name: st.column_config.NumberColumn(format="%+.1f" if name == "error (%)" else "%.2f")
        for name in e2e_display(compared).columns if "(ms)" in name or name == "error (%)"})


def _multiselect(label: str, values: pd.Series, key: str) -> list[str]:
    options = sorted(values.astype(str).unique())
    return st.sidebar.multiselect(label, options, default=options, key=key)


with page_errors():  # any error ends the page in one message, never a traceback
    st.title("Validation")
    st.caption("Each record is one kernel or operator timed on a real machine next to what Decodex predicts for it on "
               "that machine's catalog spec (written only by `decodex validate …`; see docs/validation.md).")
    records = cached_records(_records_stamp())
    if records.empty:
        st.info(f"No records under {RECORDS_DIR}; `decodex validate cpu` writes this machine's.")
        st.stop()

    st.sidebar.header("Filters")
    devices = _multiselect("Device", records["device"], "validation.device")
    kinds = _multiselect("Op kind", records["op_kind"], "validation.op_kind")
    runs = _multiselect("Run", records["run_id"], "validation.run")
    frame = filter_records(records, devices, kinds, runs)
    if frame.empty:
        st.info("No record matches the filters.")
        st.stop()

    cols = st.columns(4)
    cols[0].metric("Cases", f"{len(frame):,}")
    cols[1].metric("MAPE", f"{100 * mape(frame['measured_s'].to_numpy(), frame['predicted_s'].to_numpy()):.1f} %",
                   help="mean |predicted / measured − 1| over the filtered cases")
    cols[2].metric("Devices", f"{frame['device'].nunique()}")
    cols[3].metric("Runs", f"{frame['run_id'].nunique()}")

    facet = st.checkbox("One panel per device", value=True, key="validation.facet")
    st.plotly_chart(predicted_vs_measured_figure(frame, facet_by_device=facet), key="validation.scatter")
    st.caption("Log-log; on the dashed line the prediction equals the measurement, above it the prediction is slower "
               "than the machine.")

    st.subheader("Error per device and op kind")
    st.dataframe(summary_display(summary_frame(frame)), hide_index=True, key="validation.summary", column_config={
        "MAPE (%)": st.column_config.NumberColumn(format="%.1f"),
        "max error (%)": st.column_config.NumberColumn(format="%.1f"),
        "bias, median (%)": st.column_config.NumberColumn(format="%.1f"),
    })
    st.caption("MAPE: mean |predicted / measured − 1|; max error: the largest |predicted / measured − 1|; bias: the "
               "median signed error (negative: the prediction is faster than the measurement).")

    st.plotly_chart(error_histogram_figure(frame), key="validation.histogram")

    st.subheader("Error band of the estimates")
    st.caption(
        f"Every `estimate` and `simulate` carries a band from these records (validation/bands.py). For each device and "
        f"op kind, e₅ and e₉₅ are the {100 * LOW_Q:.0f}th and {100 * HIGH_Q:.0f}th percentiles of the signed errors "
        "e = predicted / measured − 1; an op predicted at t was then measured within [t / (1 + e₉₅), t / (1 + e₅)] "
        "in 90 % of the validated cases, and a step's band adds its ops' bands (errors taken to go the same way: a "
        "conservative band). A device without records borrows those of its kind (GPU, CPU) and says so; an op kind "
        "without records, or a dtype or size outside the validated range, adds a warning. The table below is the band "
        "of all committed records (the filters above select the devices only); op kinds are named as estimates name "
        "them (gemm → matmul, NCCL operators → collective).")
    bands = band_frame(band_table(), devices)
    st.dataframe(bands.rename(columns={"op_kind": "op kind", "e_low": "e₅", "e_high": "e₉₅",
                                       "low_factor": "band low (× t)", "high_factor": "band high (× t)"}),
                 hide_index=True, key="validation.bands", column_config={
                     "e₅": st.column_config.NumberColumn(format="%+.3f"),
                     "e₉₅": st.column_config.NumberColumn(format="%+.3f"),
                     "band low (× t)": st.column_config.NumberColumn(format="%.3f"),
                     "band high (× t)": st.column_config.NumberColumn(format="%.3f"),
                     "mape": st.column_config.NumberColumn("MAPE", format="%.3f"),
                 })

    _e2e_section(cached_e2e(_records_stamp()))

    st.subheader("Cases")
    shown = with_relative_error(frame)
    st.download_button("Download the filtered cases (CSV)", shown.to_csv(index=False).encode(),
                       file_name="validation-records.csv", mime="text/csv", key="validation.download")
    st.dataframe(shown, hide_index=True, key="validation.cases", height=300)
