"""Data and Plotly figures of one simulated step's timeline for the dashboard's Timeline page: the
tasks in a time window, a Gantt chart with one row per track (unit, device or link), the busy
share of each track and the Chrome/Perfetto trace. Pure functions of a :class:`SimResult` or its
timeline frame (no Streamlit), so they are tested alone. Times are seconds inside; figures show
milliseconds."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from decodex.sim.simulate import SimResult

TEMPLATE = "plotly_white"
MAX_BARS = 5000
"""Most bars a Gantt chart draws (the browser slows down beyond a few thousand)."""
COLOR_FIELDS = {"label": "op", "block": "block", "stream": "stream", "track": "track"}
"""Timeline columns a Gantt chart can colour by, with their display names."""
ROW_MODES = ("track", "track and stream")
"""What a Gantt row is: a track, or a track and stream pair (overlapping streams apart)."""
PALETTE = px.colors.qualitative.Plotly + px.colors.qualitative.D3 + px.colors.qualitative.Dark24

_LAYER_BLOCK = re.compile(r"_layer@(\d+)$")


def layer_of(block: str, repeat: int) -> int | None:
    """The decoder layer a repetition of a block runs: ``block`` named ``<kind>_layer@<first
    layer>`` (``dense_layer@0``, ``moe_layer@3``) at repetition ``repeat`` runs layer first +
    repeat; None for a block that is not a run of layers (``embedding``, ``head``, a stage send
    ``send@16``, a pipeline ``round``)."""
    match = _LAYER_BLOCK.search(block)
    return int(match.group(1)) + int(repeat) if match else None


def task_frame(result: SimResult) -> pd.DataFrame:
    """The simulated tasks of ``result`` (one row per timeline event), ordered by start time:
    track, label, stream, block, repeat, start_s, end_s (s), plus duration_s (s) and layer
    (nullable integer: the decoder layer, see :func:`layer_of`)."""
    frame = result.timeline_frame()
    frame["duration_s"] = frame["end_s"] - frame["start_s"]
    layers = [layer_of(b, r) for b, r in zip(frame["block"], frame["repeat"], strict=True)]
    frame["layer"] = pd.array(layers, dtype="Int64")
    return frame.sort_values(["start_s", "end_s"], kind="stable").reset_index(drop=True)


def track_order(frame: pd.DataFrame) -> list[str]:
    """The tracks of a task frame in order of their first task's start (ties: frame order), so
    that a pipeline reads stage0, link0-1, stage1, ... from the top."""
    if frame.empty:
        return []
    first = frame.groupby("track", sort=False)["start_s"].min()
    return list(first.sort_values(kind="stable").index)


def timeline_span_s(frame: pd.DataFrame) -> tuple[float, float]:
    """(first start, last end) of the tasks, s; (0, 0) for no task."""
    if frame.empty:
        return 0.0, 0.0
    return float(frame["start_s"].min()), float(frame["end_s"].max())


def layer_range(frame: pd.DataFrame) -> tuple[int, int] | None:
    """(lowest, highest) decoder layer simulated, or None when no task belongs to a layer."""
    layers = frame["layer"].dropna() if "layer" in frame else pd.Series(dtype="Int64")
    if layers.empty:
        return None
    return int(layers.min()), int(layers.max())


def layer_window_s(frame: pd.DataFrame, first: int, last: int) -> tuple[float, float]:
    """The time window (start, end), s, from the first start to the last end of the tasks of the
    decoder layers ``first`` to ``last`` (included, all streams); ValueError when none ran."""
    if first > last:
        raise ValueError(f"first layer {first} is after last layer {last}")
    tasks = frame[frame["layer"].between(first, last).fillna(False).astype(bool)]
    if tasks.empty:
        raise ValueError(f"no task of layers {first} to {last} was simulated")
    return float(tasks["start_s"].min()), float(tasks["end_s"].max())


def tasks_in_window(frame: pd.DataFrame, start_s: float, end_s: float) -> pd.DataFrame:
    """The tasks that overlap the window [start_s, end_s] (s), whole (not clipped): a task
    counts when it ends at or after ``start_s`` and starts at or before ``end_s``."""
    if end_s < start_s:
        raise ValueError(f"window end {end_s} s is before its start {start_s} s")
    keep = (frame["end_s"] >= start_s) & (frame["start_s"] <= end_s)
    return frame[keep]


def cap_tasks(frame: pd.DataFrame, max_bars: int = MAX_BARS) -> tuple[pd.DataFrame, int]:
    """At most ``max_bars`` tasks, the earliest by start time (so the drawn part is one
    contiguous stretch of time), and how many were left out."""
    if max_bars < 1:
        raise ValueError(f"max_bars must be >= 1, got {max_bars}")
    if len(frame) <= max_bars:
        return frame, 0
    ordered = frame.sort_values(["start_s", "end_s"], kind="stable")
    return ordered.iloc[:max_bars], len(frame) - max_bars


def _row_names(frame: pd.DataFrame, rows: str) -> pd.Series:
    if rows not in ROW_MODES:
        raise ValueError(f"rows must be one of {', '.join(ROW_MODES)}, got {rows!r}")
    if rows == "track":
        return frame["track"].astype(str)
    return frame["track"].astype(str) + " · " + frame["stream"].astype(str)


def gantt_figure(frame: pd.DataFrame, *, color_by: str = "label", rows: str = "track",
                 window_s: tuple[float, float] | None = None, order: Sequence[str] | None = None,
                 title: str = "") -> go.Figure:
    """A Gantt chart of the tasks in ``frame`` (a :func:`task_frame` or a part of it): one row
    per track (or per track and stream, ``rows``), one horizontal bar per task from its start
    to its end in ms, coloured by ``color_by`` (a key of ``COLOR_FIELDS``); ``window_s`` (s)
    sets the visible x range; ``order`` lists the tracks top to bottom (default: first start).
    Draws every row of ``frame``: cap it first (:func:`cap_tasks`)."""
    if color_by not in COLOR_FIELDS:
        raise ValueError(f"color_by must be one of {', '.join(COLOR_FIELDS)}, got {color_by!r}")
    row = _row_names(frame, rows)
    tracks = list(order) if order is not None else track_order(frame)
    rank = {t: i for i, t in enumerate(tracks)}
    row_order = sorted(set(row), key=lambda r: (rank.get(r.split(" · ")[0], len(rank)), r))
    figure = go.Figure()
    groups = list(dict.fromkeys(frame[color_by].astype(str)))
    for index, group in enumerate(groups):
        part = frame[frame[color_by].astype(str) == group]
        custom = np.column_stack([part["label"].astype(str), part["block"].astype(str), part["repeat"],
                                  part["stream"].astype(str), part["start_s"] * 1e3, part["duration_s"] * 1e3])
        figure.add_trace(go.Bar(
            x=part["duration_s"] * 1e3, base=part["start_s"] * 1e3, y=row[part.index], orientation="h",
            name=group, marker_color=PALETTE[index % len(PALETTE)], customdata=custom,
            hovertemplate="%{customdata[0]}<br>block %{customdata[1]} repeat %{customdata[2]}, "
                          "stream %{customdata[3]}<br>start %{customdata[4]:.4f} ms, "
                          "%{customdata[5]:.4f} ms<extra>%{y}</extra>"))
    legend_lines = math.ceil(len(groups) / 6)  # a horizontal legend under the chart, about 6 entries a line
    figure.update_layout(template=TEMPLATE, barmode="overlay", bargap=0.25, title=title,
                         height=180 + 36 * max(len(row_order), 1) + 22 * legend_lines,
                         legend={"title_text": COLOR_FIELDS[color_by], "orientation": "h", "yanchor": "top",
                                 "y": -0.12 - 0.5 / max(len(row_order), 2)},
                         xaxis_title="time (ms)", yaxis_title=None)
    figure.update_yaxes(categoryorder="array", categoryarray=row_order, autorange="reversed")
    if window_s is not None:
        figure.update_xaxes(range=[window_s[0] * 1e3, window_s[1] * 1e3])
    return figure


def busy_share(frame: pd.DataFrame, start_s: float, end_s: float) -> pd.Series:
    """Per track, the share (0..1) of the window [start_s, end_s] (s) in which the track runs a
    task: the union of its tasks' intervals clipped to the window, over the window length
    (overlapping tasks of one track count once). NaN for an empty window."""
    length = end_s - start_s
    shares: dict[str, float] = {}
    for track, tasks in frame.groupby("track", sort=False):
        if length <= 0:
            shares[str(track)] = float("nan")
            continue
        starts = np.clip(tasks["start_s"].to_numpy(dtype=float), start_s, end_s)
        ends = np.clip(tasks["end_s"].to_numpy(dtype=float), start_s, end_s)
        order = np.argsort(starts, kind="stable")
        busy, reach = 0.0, start_s
        for s, e in zip(starts[order], ends[order], strict=True):
            s = max(s, reach)
            if e > s:
                busy += e - s
                reach = e
        shares[str(track)] = min(busy / length, 1.0)
    return pd.Series(shares, name="busy_share", dtype=float)


def busy_table(result: SimResult, window_share: pd.Series | None = None,
               order: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per track: busy_s (s per step, from the engine, folded repeats extrapolated),
    step_share (busy over the simulated step time; above 1 only where the step time is a
    pipeline's steady-state period) and, with ``window_share`` (:func:`busy_share`), the share
    of the shown window; rows in ``order`` (default: by name)."""
    tracks = list(order) if order is not None else sorted(result.busy_s)
    tracks += [t for t in sorted(result.busy_s) if t not in tracks]
    frame = pd.DataFrame({"track": tracks,
                          "busy_s": [float(result.busy_s.get(t, 0.0)) for t in tracks],
                          "step_share": [float(result.utilization.get(t, math.nan)) for t in tracks]})
    if window_share is not None:
        frame["window_share"] = [float(window_share.get(t, 0.0)) for t in tracks]
    return frame


def busy_figure(table: pd.DataFrame) -> go.Figure:
    """Horizontal bars of each track's busy share in % (of the step, and of the shown window
    when ``table`` has ``window_share``), from a :func:`busy_table`."""
    figure = go.Figure()
    series = [("step_share", "whole step (engine)")]
    if "window_share" in table:
        series.append(("window_share", "shown window (timeline)"))
    for column, name in series:
        figure.add_trace(go.Bar(x=table[column] * 100, y=table["track"], orientation="h", name=name,
                                hovertemplate="%{y}: %{x:.1f}%<extra>" + name + "</extra>"))
    figure.update_layout(template=TEMPLATE, barmode="group", title="Busy share per track",
                         xaxis_title="busy (% of the time)", height=160 + 40 * max(len(table), 1))
    figure.update_yaxes(categoryorder="array", categoryarray=list(table["track"]), autorange="reversed")
    return figure


def step_times(result: SimResult) -> dict[str, float]:
    """The analytical step time (``estimate``: the mapper's sum, overlap credited analytically),
    the simulated one (the engine, folded repeats extrapolated), both s, and the relative change
    simulated / analytical - 1 (NaN when the analytical time is 0)."""
    analytical = float(result.analytical_step_time_s)
    simulated = float(result.step_time_s)
    change = simulated / analytical - 1.0 if analytical > 0 else float("nan")
    return {"analytical_s": analytical, "simulated_s": simulated, "change": change}


def trace_json(result: SimResult) -> bytes:
    """The step's Chrome trace (:meth:`SimResult.chrome_trace`, times in µs) as UTF-8 JSON,
    ready to open in https://ui.perfetto.dev."""
    return json.dumps(result.chrome_trace()).encode()
