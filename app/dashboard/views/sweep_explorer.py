"""Sweep explorer: run a small design-space sweep here (an example space, or a pasted or uploaded
space TOML) or open a directory written by ``decodex sweep --out DIR``; then pick two columns and
their objectives and see the Pareto front (hover: the design point's inputs), the Pareto-optimal
rows, the infeasible points with their reasons, and download the rows as CSV or Parquet."""

from __future__ import annotations

import functools
import math
import re
import time

import pandas as pd
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from decodex.app.dashboard.guard import page_errors, report
from decodex.app.dashboard.sweep_view import (
    MAX_PLOT_POINTS,
    MAX_POINTS,
    MAX_TABLE_ROWS,
    SweepData,
    check_point_count,
    default_axes,
    default_direction,
    default_example,
    feasible_mask,
    frame_to_csv_bytes,
    frame_to_parquet_bytes,
    infeasible_rows,
    numeric_columns,
    open_sweep_dir_path,
    ordered_columns,
    parameter_columns,
    parse_space_bytes,
    plot_rows,
    progress_chunk_size,
    read_sweep_dir,
    reason_counts,
    sweep_dir_fingerprint,
)
from decodex.app.dashboard.tables import labelled_config
from decodex.app.dashboard.uploads import MAX_UPLOAD_BYTES
from decodex.core.errors import DecodexError
from decodex.examples import list_examples
from decodex.explore.figures import pareto_figure
from decodex.explore.metric_labels import axis_title, metric_label
from decodex.explore.pareto import pareto_front
from decodex.explore.runner import run_sweep
from decodex.explore.sweep_space import SweepSpace

RUN, OPEN = "Run a small sweep", "Open a sweep directory"
EXAMPLE, OWN = "Example space", "Paste or upload a space TOML"
RESULT = "sweep.result"  # session state: the SweepData of the last run here
NO_COLOR = "(none)"
DIRECTIONS = ["min", "max"]
PLACEHOLDER = """[sweep]
name = "my-sweep"
mode = "estimate"
sampling = "grid"

[sweep.fixed]
model = "llama3-8b"
system = "h100-sxm"

[sweep.axes]
batch = [1, 8, 32, 128]
context = [1024, 4096]"""


@st.cache_data(max_entries=8, show_spinner="Reading the sweep directory")
def _read_dir(directory: str, shown: str, fingerprint: tuple[tuple[str, int, int], ...]) -> SweepData:
    """``read_sweep_dir`` of a directory checked to lie under the sweeps root (named ``shown`` on
    the page), cached per directory and the state of its files (``fingerprint``)."""
    del fingerprint  # part of the cache key only: a sweep that wrote more parts is read again
    return read_sweep_dir(directory, shown)


def _space_input() -> tuple[SweepSpace, int] | None:
    """The space chosen or given and its point count; None (with a message) when there is none to run."""
    kind = st.radio("Space", [EXAMPLE, OWN], horizontal=True, key="sweep.space_kind")
    if kind == EXAMPLE:
        examples = list_examples()
        if not examples:
            st.error("No example spaces found (examples/sweeps/*.toml); paste or upload a space TOML instead.")
            return None
        names = list(examples)
        name = st.selectbox("Example space", names, index=default_example(names), key="sweep.example")
        data, filename = examples[name].read_bytes(), examples[name].name
        with st.expander(f"{filename}"):
            st.code(data.decode("utf-8", errors="replace"), language="toml")
    else:
        uploaded = st.file_uploader("Space TOML file", type=["toml"], key="sweep.toml_file",
                                    help="A [sweep] table with [sweep.fixed], [sweep.axes] and optional "
                                         f"[[sweep.constraints]] (docs/explore.md); read as data only, at most "
                                         f"{MAX_UPLOAD_BYTES // 1024} kB.")
        text = st.text_area("or paste a space TOML", key="sweep.toml_text", height=260, placeholder=PLACEHOLDER)
        if uploaded is not None:
            data, filename = uploaded.getvalue(), uploaded.name
        elif text.strip():
            data, filename = text.encode("utf-8"), "pasted.toml"
        else:
            st.info("Upload or paste a space TOML (the greyed text is an example), or pick an example space.")
            return None
    try:
        space = parse_space_bytes(data, filename)
        count = check_point_count(space)
    except DecodexError as err:
        report(err, "Cannot use this space: ")
        return None
    return space, count


def _run(space: SweepSpace, count: int) -> SweepData | None:
    """Run ``space`` in this process with a progress bar; None (with a message) when it cannot run."""
    chunk = progress_chunk_size(count, space.mode)
    parts_total = max(1, math.ceil(count / chunk))
    bar = st.progress(0.0, text=f"0 of {count:,} points")

    def on_part(parts: int) -> None:
        bar.progress(min(1.0, parts / parts_total), text=f"{min(count, parts * chunk):,} of {count:,} points")

    started = time.perf_counter()
    try:
        frame = run_sweep(space, chunk_size=chunk, on_part=on_part)
    except DecodexError as err:
        bar.empty()
        report(err, "The sweep could not run: ")
        return None
    elapsed = time.perf_counter() - started
    bar.empty()
    feasible = int(feasible_mask(frame).sum())
    summary = {"name": space.name, "mode": space.mode, "sampling": space.sampling, "points": count,
               "finished": len(frame), "feasible": feasible, "infeasible": len(frame) - feasible,
               "elapsed_s": elapsed, "complete": len(frame) == count, "space": space.to_dict()}
    return SweepData(frame=frame, parameters=tuple(parameter_columns(frame, space.parameters)),
                     label=f"{space.name}: {len(frame):,} points run here in {elapsed:.1f} s ({space.mode})",
                     name=space.name, summary=summary)


def _run_source() -> SweepData | None:
    """The 'Run a small sweep' source: the space inputs, the run button, and the last run's rows."""
    limits = ", ".join(f"{n:,} ({mode})" for mode, n in MAX_POINTS.items())
    st.caption(f"Runs in this process, at most {limits} points; use `decodex sweep SPACE.toml --out DIR` "
               "for bigger sweeps and open DIR here.")
    picked = _space_input()
    if picked is None:
        return None
    space, count = picked
    about = f" {space.description}" if space.description else ""
    st.markdown(f"**{space.name}**: {count:,} points, mode `{space.mode}`, {space.sampling} sampling.{about}")
    if st.button(f"Run {count:,} points", key="sweep.run", type="primary"):
        result = _run(space, count)
        if result is not None:
            st.session_state[RESULT] = result
    data: SweepData | None = st.session_state.get(RESULT)
    if data is None:
        st.info("Press the button to run the sweep.")
    elif data.summary.get("space") != space.to_dict():
        st.info(f"Showing the last run ({data.name}); press the button to run {space.name}.")
    return data


def _directory_source() -> SweepData | None:
    """The 'Open a sweep directory' source: a path and the rows read from it."""
    path = st.text_input("Sweep directory", key="sweep.dir", placeholder="runs/h100",
                         help="The DIR of `decodex sweep SPACE.toml --out DIR`, relative to the sweeps root on the "
                              "machine running the dashboard (DECODEX_SWEEPS_ROOT, by default the directory it was "
                              "started in); its parts/*.parquet are read (the directory is not changed).").strip()
    if not path:
        st.info("Give the path of a directory written by `decodex sweep SPACE.toml --out DIR`, relative to the "
                "sweeps root.")
        return None
    try:
        directory, shown = open_sweep_dir_path(path)  # under the sweeps root, before anything is touched
    except DecodexError as err:
        report(err)  # names the field itself
        return None
    try:
        data = _read_dir(str(directory), shown, sweep_dir_fingerprint(directory))
    except DecodexError as err:
        report(err, "Cannot open the sweep directory: ")
        return None
    summary = data.summary
    if summary and summary.get("complete") is False:
        finished, points = summary.get("finished", len(data.frame)), summary.get("points", "?")
        st.warning(f"Incomplete sweep: {_count(finished)} of {_count(points)} points written (still running, or "
                   "interrupted; rerun `decodex sweep` into the same directory to finish it).")
    return data


def _count(value: object) -> str:
    """A count from a sweep's summary.json as shown: with thousands separators when it is a number."""
    return f"{value:,}" if isinstance(value, int | float) and not isinstance(value, bool) else str(value)


def _direction(container: DeltaGenerator, column: str) -> str:
    """A min/max choice for ``column`` (its own widget per column, starting at its usual direction)."""
    return container.radio(f"Objective on {metric_label(column)[0]}", DIRECTIONS,
                           index=DIRECTIONS.index(default_direction(column)), horizontal=True,
                           key=f"sweep.objective.{column}",
                           format_func={"min": "minimize", "max": "maximize"}.get)


def _file_stem(name: str) -> str:
    """``name`` as a safe file name stem."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "sweep"


def _table(frame: pd.DataFrame, key: str) -> None:
    """A dataframe shown with at most MAX_TABLE_ROWS rows (the downloads hold all of them)."""
    if len(frame) > MAX_TABLE_ROWS:
        st.caption(f"First {MAX_TABLE_ROWS:,} of {len(frame):,} rows shown; download them all below.")
        frame = frame.head(MAX_TABLE_ROWS)
    st.dataframe(frame, hide_index=True, key=key, column_config=labelled_config(frame))


def _explore(data: SweepData) -> None:
    """Axis and objective choices, the Pareto figure and table, the infeasible points and the downloads."""
    frame = data.frame
    params = parameter_columns(frame, data.parameters)
    ok = feasible_mask(frame)
    st.caption(data.label)
    stats = st.columns(4)
    stats[0].metric("Points", f"{len(frame):,}")
    stats[1].metric("Feasible", f"{int(ok.sum()):,}")
    stats[2].metric("Infeasible", f"{int((~ok).sum()):,}")
    columns = numeric_columns(frame, params)
    front = None
    if len(columns) < 2:
        st.warning(f"The rows have fewer than two numeric columns ({', '.join(columns) or 'none'}): nothing to plot.")
    elif not ok.any():
        st.warning("No point is feasible: there is no Pareto front (the reasons are listed below).")
    else:
        st.subheader("Pareto front")
        x0, y0 = default_axes(columns)
        row = st.columns([3, 2, 1])
        x = row[0].selectbox("x axis", columns, index=columns.index(x0), key="sweep.x", format_func=axis_title)
        x_dir = _direction(row[1], x)
        log_x = row[2].checkbox("log x", key="sweep.log_x")
        row = st.columns([3, 2, 1])
        y = row[0].selectbox("y axis", columns, index=columns.index(y0), key="sweep.y", format_func=axis_title)
        y_dir = _direction(row[1], y) if y != x else x_dir
        log_y = row[2].checkbox("log y", key="sweep.log_y")
        row = st.columns(2)
        colors = [NO_COLOR, *(c for c in frame.columns if c not in ("point_id", "reason"))]
        color = row[0].selectbox("Colour by", colors, key="sweep.color",
                                 format_func=lambda c: c if c == NO_COLOR else axis_title(c))
        more = row[1].multiselect("Further objectives", [c for c in columns if c not in (x, y)],
                                  key="sweep.more_objectives", format_func=axis_title,
                                  help="Columns the front also trades off, besides x and y (points on it may then "
                                       "look dominated in the x-y plane).")
        objectives = {x: x_dir, y: y_dir}
        more = [c for c in more if c not in (x, y)]
        if more:
            row = st.columns(min(3, len(more)))
            for i, column in enumerate(more):
                objectives[column] = _direction(row[i % len(row)], column)
        if x == y:
            st.info("x and y are the same column: pick two columns to see a trade-off.")
        try:
            front = pareto_front(frame, objectives)
            shown = plot_rows(frame, front)
            figure = pareto_figure(shown, x, y, objectives, color=None if color == NO_COLOR else color,
                                   hover=params, log_x=log_x, log_y=log_y)
        except ValueError as err:
            report(err, "Cannot draw the front: ")
            front = None
        else:
            st.plotly_chart(figure, key="sweep.chart")
            wanted = ", ".join(f"{'lowest' if d == 'min' else 'highest'} {metric_label(c)[0]}"
                               for c, d in objectives.items())
            sampled = (f" Drawn: the front and a sample of {len(shown) - len(front):,} other rows "
                       f"(of {len(frame):,}; at most {MAX_PLOT_POINTS:,})." if len(shown) < len(frame) else "")
            st.caption(f"{len(front):,} of {int(ok.sum()):,} feasible points are Pareto-optimal for {wanted}; "
                       f"hover a point for its inputs.{sampled}")
            stats[3].metric("Pareto-optimal", f"{len(front):,}")
            _table(front[ordered_columns(front, [*params, *objectives])], "sweep.front_table")

    bad = infeasible_rows(frame, params)
    st.subheader(f"Infeasible points ({len(bad):,})")
    if bad.empty:
        st.caption("Every point is feasible.")
    else:
        st.dataframe(reason_counts(frame), hide_index=True, key="sweep.reasons",
                     column_config={"reason": st.column_config.TextColumn("reason (numbers as #)")})
        with st.expander(f"The {len(bad):,} infeasible points with their reason"):
            _table(bad, "sweep.infeasible_table")
    with st.expander(f"All {len(frame):,} rows"):
        _table(frame[ordered_columns(frame, params)], "sweep.all_table")

    stem = _file_stem(data.name)
    row = st.columns(3)
    row[0].download_button("Rows (CSV)", functools.partial(frame_to_csv_bytes, frame), file_name=f"{stem}.csv",
                           mime="text/csv", key="sweep.download_csv", on_click="ignore")
    row[1].download_button("Rows (Parquet)", functools.partial(frame_to_parquet_bytes, frame),
                           file_name=f"{stem}.parquet", mime="application/vnd.apache.parquet",
                           key="sweep.download_parquet", on_click="ignore")
    if front is not None:
        row[2].download_button("Pareto front (CSV)", functools.partial(frame_to_csv_bytes, front),
                               file_name=f"{stem}-pareto.csv", mime="text/csv", key="sweep.download_front",
                               on_click="ignore")


with page_errors():  # any error ends the page in one message, never a traceback
    st.title("Sweep explorer")
    st.caption("Design-space sweeps (docs/explore.md): one row per design point with its metrics, or the reason it "
               "cannot run. Pick two metrics and whether each is better low or high to see the Pareto front.")
    source = st.radio("Source", [RUN, OPEN], horizontal=True, key="sweep.source")
    sweep = _run_source() if source == RUN else _directory_source()
    if sweep is None:
        st.stop()
    _explore(sweep)
