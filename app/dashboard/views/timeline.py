"""Timeline: one step through the discrete-event engine: a Gantt chart of every unit, device and
link, the busy share of each, the analytical against the simulated step time, and the trace to
open in Perfetto."""

from __future__ import annotations

import math

import streamlit as st

from decodex.api import simulate
from decodex.app.dashboard.design import DesignPoint, cached_simulate, design_point_inputs, run_or_report
from decodex.app.dashboard.guard import page_errors
from decodex.app.dashboard.tables import number_config, scaled_column
from decodex.app.dashboard.timeline_charts import (
    COLOR_FIELDS,
    MAX_BARS,
    ROW_MODES,
    busy_figure,
    busy_share,
    busy_table,
    cap_tasks,
    gantt_figure,
    layer_range,
    layer_window_s,
    step_times,
    task_frame,
    tasks_in_window,
    timeline_span_s,
    trace_json,
    track_order,
)
from decodex.sim.simulate import SimResult

# NeuPIMs at batch 256 (fits its 32 GiB per device at tp 4): two sub-batches, one's GEMMs on the systolic NPU
# while the other's attention runs in the PIM banks
DEFAULT_POINT = DesignPoint(model="gpt3-7b", system="neupims", precision="fp16", batch=256, context=512, tp=4)


@st.cache_data(max_entries=16, show_spinner=False)
def simulate_unfolded(point: DesignPoint) -> SimResult:
    """``sim.simulate`` of ``point`` with every repetition of every block simulated (``fold=False``),
    so that the timeline covers the whole step (cached per design point; times in s); bounded
    first (:meth:`DesignPoint.check_size`)."""
    point.check_size(simulated=True)
    return simulate(point.model_config(), point.system_spec(), point.batch, fold=False, **point.step_kwargs())


with page_errors():  # any error ends the page in one message, never a traceback
    st.title("Timeline")
    point = design_point_inputs("timeline", default=DEFAULT_POINT, simulated=True)
    if point is None:
        st.stop()
    st.sidebar.header("Timeline")
    unfold = st.sidebar.checkbox(
        "Simulate every layer", value=True, key="timeline.unfold",
        help="Run every repetition of every block. Off: the engine runs a few repetitions of each long block and "
             "extrapolates the step from their steady state (same step time, shorter timeline).")
    st.caption(point.label())
    with st.spinner("Simulating..."):
        result = run_or_report(simulate_unfolded if unfold else cached_simulate, point)
    if result is None:
        st.stop()

    times = step_times(result)
    frame = task_frame(result)
    repeats = ", ".join(f"{block} x{n}" for block, n in result.simulated_repeats.items())
    cols = st.columns(4)
    cols[0].metric("Simulated step time", f"{times['simulated_s'] * 1e3:.3f} ms",
                   help="From the discrete-event engine: contention and overlap between streams are played out.")
    cols[1].metric("Analytical step time", f"{times['analytical_s'] * 1e3:.3f} ms",
                   help="From sim.estimate: the mapper's closed-form sum of op times.")
    change = "n/a" if math.isnan(times["change"]) else f"{round(times['change'] * 100, 1) + 0.0:+.1f}%"
    cols[2].metric("Simulated vs analytical", change,
                   help="Simulated / analytical - 1: negative where the engine overlaps work that the closed form "
                        "adds up.")
    cols[3].metric("Tasks simulated", f"{len(frame):,}", help=f"Repetitions simulated: {repeats}.")
    if not unfold:
        st.caption(f"Folded run: the timeline shows the repetitions simulated ({repeats}); the step time extrapolates "
                   "the rest from their steady state.")
    if result.step_time_s < timeline_span_s(frame)[1] * (1 - 1e-9):
        st.caption("The step time is the steady-state period of the repeated block (a pipeline round), shorter than "
                   "the timeline, which also holds the fill and drain.")
    if not result.fits:
        st.warning(f"Does not fit: {result.reason}")

    if frame.empty:
        st.info("The engine recorded no task for this design point.")
        st.stop()

    st.subheader("Gantt chart")
    span = timeline_span_s(frame)
    layers = layer_range(frame)
    controls = st.columns([2, 3, 2, 2])
    modes = ["time", "layers"] if layers is not None and layers[1] > layers[0] else ["time"]
    by = controls[0].radio("Window by", modes, index=len(modes) - 1, horizontal=True, key="timeline.window_by",
                           help="A time window, or the span of a few decoder layers (every stream included).")
    if by == "layers" and layers is not None:
        first, last = controls[1].slider("Layers", layers[0], layers[1], (layers[0], min(layers[0] + 1, layers[1])),
                                         key="timeline.layers",
                                         help="Shows the time from the first task of the first layer to the last task "
                                              "of the last one, every stream included.")
        window = layer_window_s(frame, first, last)
    elif span[1] > 0:
        span_ms = span[1] * 1e3
        low_ms, high_ms = controls[1].slider("Time window (ms)", 0.0, span_ms, (0.0, span_ms),
                                             step=max(span_ms / 1000, 1e-6), format="%.4f", key="timeline.window")
        window = (low_ms / 1e3, high_ms / 1e3)
    else:
        window = span
    color_by = controls[2].selectbox("Colour by", list(COLOR_FIELDS), format_func=COLOR_FIELDS.get,
                                     key="timeline.color_by")
    rows = controls[3].selectbox("Rows", ROW_MODES, key="timeline.rows")

    order = track_order(frame)
    shown = tasks_in_window(frame, *window)
    drawn, left_out = cap_tasks(shown, MAX_BARS)
    if left_out:
        st.warning(f"{len(shown):,} tasks fall in the window; drawing the first {MAX_BARS:,} (up to "
                   f"{drawn['end_s'].max() * 1e3:.3f} ms). Narrow the window to see the rest.")
    st.plotly_chart(gantt_figure(drawn, color_by=color_by, rows=rows, window_s=window, order=order,
                                 title=f"{result.model} on {result.system}: {len(drawn):,} tasks, "
                                       f"{window[0] * 1e3:.3f} to {window[1] * 1e3:.3f} ms"),
                    key="timeline.gantt")

    st.subheader("Busy share")
    table = busy_table(result, busy_share(frame, *window), order=order)
    left, right = st.columns([3, 2])
    left.plotly_chart(busy_figure(table), key="timeline.busy")
    metric_cols = right.columns(2)
    for index, row in enumerate(table.itertuples(index=False)):
        metric_cols[index % 2].metric(f"{row.track} busy", f"{row.step_share * 100:.1f}%",
                                      help=f"{row.busy_s * 1e3:.3f} ms busy per step; {row.window_share * 100:.1f}% "
                                           "of the shown window")

    with st.expander(f"Tasks in the window ({len(shown):,})"):
        view = shown[["track", "label", "stream", "block", "repeat", "layer"]].copy()
        for column, name in (("start_s", "start"), ("duration_s", "duration")):
            label, values = scaled_column(shown[column], "s", name)
            view[label] = values
        st.dataframe(view, hide_index=True, key="timeline.tasks", column_config=number_config(view))

    st.download_button("Download the trace (Chrome/Perfetto JSON)", trace_json(result),
                       file_name=f"{result.model}_{result.system}_trace.json".replace("/", "_"),
                       mime="application/json", key="timeline.trace")
    st.caption("Open the trace in https://ui.perfetto.dev (Open trace file): one track per unit or link, every task "
               "of the simulated timeline with its stream, block and repeat.")
