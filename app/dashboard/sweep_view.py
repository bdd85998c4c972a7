"""Pure helpers of the Sweep explorer page: example spaces, spaces from uploaded bytes (data only,
size- and point-limited), reading a ``decodex sweep --out DIR`` directory, column choices and
default objective directions, and rows as CSV / Parquet bytes.

Nothing here calls Streamlit; every problem with the user's input is a :class:`DecodexError`
(:class:`SweepInputError`, or the :class:`SpecError` of the space reader naming the field) whose
message is meant for the user."""

from __future__ import annotations

import io
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from decodex.app.dashboard.limits import check_space_sizes
from decodex.app.dashboard.untrusted import check_space, check_sweep_dir
from decodex.app.dashboard.uploads import UploadError, parse_toml_upload
from decodex.core.errors import DecodexError
from decodex.explore.sweep_memory import CHUNK_SIZE
from decodex.explore.sweep_space import POINT_KEYS, PREFIXES, SweepSpace, load_space, point_id, space_from_dict
from decodex.explore.sweep_store import PARTS, SweepStore

DEFAULT_EXAMPLE = "h100-batch-context"
MAX_POINTS: dict[str, int] = {"estimate": 2000, "simulate": 100, "serve": 32}
"""Most points a sweep run inside the dashboard may have, by mode (about a minute of one core at
most); bigger sweeps belong to ``decodex sweep``."""
PROGRESS_STEPS = 20
"""Parts a sweep run in the dashboard is cut into at least (where the mode's chunk size allows),
so that the progress bar moves."""
MAX_PLOT_POINTS = 20_000
"""Most points drawn in the scatter; beyond it the front and a sample of the other rows are drawn."""
MAX_TABLE_ROWS = 10_000
"""Most rows shown in the page's tables (the downloads hold every row)."""
ORDER_LIMIT = 200_000
"""Largest declared space whose points are listed to put a directory's rows in the space's order."""
DEFAULT_AXES = (("tokens_per_s_per_device", "tpot_s"), ("tokens_per_s", "tpot_s"),
                ("goodput_requests_per_s", "ttft_p99_s"))
_MIN_SUFFIXES = ("_s", "_j", "_bytes", "_usd", "_w")
_MIN_WORDS = ("usd", "price", "latency", "energy", "memory", "ttft", "tpot")
_MAX_WORDS = ("per_s", "attainment", "goodput", "throughput", "util.")
_NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?(?![\w.])", re.IGNORECASE)


class SweepInputError(UploadError):
    """A space, an upload or a sweep directory that the dashboard cannot use; the message is for the user."""


@dataclass(frozen=True)
class SweepData:
    """Rows of a sweep and what is known about them.

    ``frame``: one row per point (inputs, ``point_id``, metrics in the units their names carry,
    ``feasible``, ``reason``). ``parameters``: the input columns (the space's fixed settings and
    axes). ``label``: where the rows come from. ``summary``: a sweep directory's ``summary.json``
    (or the same fields for a run here)."""

    frame: pd.DataFrame
    parameters: tuple[str, ...]
    label: str
    name: str = "sweep"
    summary: Mapping[str, Any] = field(default_factory=dict)


def default_example(names: Sequence[str]) -> int:
    """Index of the example selected at first: :data:`DEFAULT_EXAMPLE` (the fastest) when present, else 0."""
    return list(names).index(DEFAULT_EXAMPLE) if DEFAULT_EXAMPLE in names else 0


def count_points(space: SweepSpace) -> int:
    """Points the space declares, without listing them (:meth:`SweepSpace.count_points`)."""
    return space.count_points()


def check_point_count(space: SweepSpace, limits: Mapping[str, int] = MAX_POINTS) -> int:
    """The space's point count; raises SweepInputError when it exceeds the dashboard's limit for its mode."""
    count = count_points(space)
    limit = limits.get(space.mode, min(limits.values()))
    if count > limit:
        raise SweepInputError(
            f"{space.name}: {count:,} points is more than the {limit:,} points a {space.mode} sweep may have here; "
            f"run bigger sweeps with `decodex sweep SPACE.toml --out DIR` and open DIR below "
            f"(source 'Open a sweep directory')")
    return count


def parse_space_bytes(data: bytes, filename: str = "space.toml") -> SweepSpace:
    """A SweepSpace from the bytes of a space TOML file, read as data only (``tomllib``); at most
    :data:`~app.dashboard.uploads.MAX_UPLOAD_BYTES` bytes, UTF-8, naming catalog entries only, never a
    file on the server (:func:`~app.dashboard.untrusted.check_space`: models, systems, datasets,
    device names reached through ``spec.system.*`` overrides), each point within the dashboard's size
    bounds (:func:`~app.dashboard.limits.check_space_sizes`). Raises UploadError (size, encoding, TOML
    syntax, nesting), UntrustedInputError (a value that is not a catalog name), SpecError (a field) or
    ArgumentError (a point too big to run here)."""
    parsed = parse_toml_upload(data, filename)
    if not isinstance(parsed.get("sweep"), Mapping):
        raise SweepInputError(f"{filename}: expected a [sweep] table (with [sweep.fixed] and [sweep.axes])")
    space = space_from_dict(parsed, filename)
    check_space(space)
    check_space_sizes(space)
    return space


def progress_chunk_size(points: int, mode: str) -> int:
    """Points per part for a run here: the mode's usual chunk size, smaller so that a sweep of
    ``points`` points gives about :data:`PROGRESS_STEPS` parts."""
    return max(1, min(CHUNK_SIZE.get(mode, 1), math.ceil(points / PROGRESS_STEPS)))


def parameter_columns(frame: pd.DataFrame, parameters: Sequence[str] | None = None) -> list[str]:
    """The input columns of ``frame``: ``parameters`` where given (those present), else every
    column that is a sweep parameter name (``POINT_KEYS``, ``mapper.*``, ``spec.*``)."""
    if parameters:
        return [c for c in parameters if c in frame.columns]
    return [c for c in frame.columns if c in POINT_KEYS or str(c).startswith(PREFIXES)]


def numeric_columns(frame: pd.DataFrame, parameters: Sequence[str] = ()) -> list[str]:
    """Columns that can be an axis or an objective: numeric (not boolean) with at least one finite
    value; the metrics first, then the numeric inputs, each in frame order."""
    numeric = []
    for column in frame.columns:
        series = frame[column]
        if pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(series):
            continue
        values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        if bool(np.isfinite(values).any()):
            numeric.append(str(column))
    inputs = set(parameters)
    return [c for c in numeric if c not in inputs] + [c for c in numeric if c in inputs]


def default_axes(columns: Sequence[str]) -> tuple[str, str]:
    """(x, y) shown at first: the first pair of :data:`DEFAULT_AXES` present (throughput against a
    latency), else the first two columns. Needs at least two columns."""
    if len(columns) < 2:
        raise SweepInputError(f"need at least two numeric columns to plot, got {list(columns)}")
    for x, y in DEFAULT_AXES:
        if x in columns and y in columns:
            return x, y
    return columns[0], columns[1]


def default_direction(column: str) -> str:
    """``"max"`` or ``"min"``: better high for rates (``per_s``), attainment, goodput and
    utilization; better low for times (``_s``), energy (``_j``), memory (``_bytes``) and money; else ``"max"``."""
    name = column.lower()
    if any(word in name for word in _MAX_WORDS):
        return "max"
    if name.endswith(_MIN_SUFFIXES) or any(word in name for word in _MIN_WORDS):
        return "min"
    return "max"


def feasible_mask(frame: pd.DataFrame) -> pd.Series:
    """Boolean per row: True unless the row's ``feasible`` is False (all True without that column)."""
    if "feasible" not in frame.columns:
        return pd.Series(True, index=frame.index)
    return ~frame["feasible"].eq(False)


def infeasible_rows(frame: pd.DataFrame, parameters: Sequence[str] = ()) -> pd.DataFrame:
    """The infeasible rows: their input columns and ``reason`` (empty frame when all are feasible)."""
    rows = frame[~feasible_mask(frame).to_numpy()]
    columns = [*parameter_columns(frame, parameters), *(["reason"] if "reason" in frame.columns else [])]
    return rows[columns] if columns else rows


def reason_counts(frame: pd.DataFrame) -> pd.DataFrame:
    """Infeasible rows counted by kind of reason (the reason with its numbers written ``#``),
    most frequent first; columns ``reason`` and ``points``."""
    rows = frame[~feasible_mask(frame).to_numpy()]
    if rows.empty or "reason" not in rows.columns:
        return pd.DataFrame({"reason": pd.Series(dtype=str), "points": pd.Series(dtype=int)})
    kinds = rows["reason"].fillna("").astype(str).map(lambda r: _NUMBER.sub("#", r) or "(no reason given)")
    counts = kinds.value_counts()
    return pd.DataFrame({"reason": counts.index.astype(str), "points": counts.to_numpy(dtype=int)})


def ordered_columns(frame: pd.DataFrame, first: Sequence[str]) -> list[str]:
    """Frame columns with ``first`` (those present, once each) in front and ``point_id`` last."""
    head = [c for c in dict.fromkeys(first) if c in frame.columns]
    tail = [c for c in frame.columns if c not in head and c != "point_id"]
    return [*head, *tail, *(["point_id"] if "point_id" in frame.columns and "point_id" not in head else [])]


def plot_rows(frame: pd.DataFrame, front: pd.DataFrame, limit: int = MAX_PLOT_POINTS, seed: int = 0) -> pd.DataFrame:
    """The rows to draw: all of ``frame`` when it has at most ``limit`` rows, else every row of
    ``front`` plus a seeded sample of the others (``limit`` rows in all, at least the front). The
    Pareto front of the result is ``front``: each dropped row is dominated by a front row."""
    if len(frame) <= limit:
        return frame
    others = frame.drop(index=front.index.intersection(frame.index))
    sample = others.sample(n=max(0, min(len(others), limit - len(front))), random_state=seed)
    return frame.loc[frame.index.isin(front.index) | frame.index.isin(sample.index)]


def _plain(frame: pd.DataFrame) -> pd.DataFrame:
    """Object columns holding values of more than one type as text (what Parquet can store)."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object and out[column].map(type).nunique() > 1:
            out[column] = out[column].astype(str)
    return out


def frame_to_csv_bytes(frame: pd.DataFrame) -> bytes:
    """The rows as UTF-8 CSV bytes (header, no index; values in the units their column names carry)."""
    return frame.to_csv(index=False).encode("utf-8")


def frame_to_parquet_bytes(frame: pd.DataFrame) -> bytes:
    """The rows as the bytes of one Parquet file (no index; mixed-type columns as text)."""
    buffer = io.BytesIO()
    _plain(frame).to_parquet(buffer, index=False)
    return buffer.getvalue()


def sweep_dir_fingerprint(directory: str | Path) -> tuple[tuple[str, int, int], ...]:
    """(name, size in B, mtime in ns) of a sweep directory's parts and JSON files: a cache key that
    changes when the sweep writes more; () when the directory cannot be listed. The page passes a
    directory already checked by :func:`open_sweep_dir_path`."""
    root = Path(directory).expanduser()
    try:
        paths = [*sorted((root / PARTS).glob("part-*.parquet")), root / "summary.json", root / "space.json"]
        return tuple((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in paths if p.is_file())
    except OSError:
        return ()


MAX_JSON_BYTES = 16 * 1024 * 1024
"""Largest ``space.json`` / ``summary.json`` of a sweep directory read, bytes (they hold a few kB)."""


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; {} when absent, larger than :data:`MAX_JSON_BYTES`, nested
    too deep or not a JSON object."""
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            return {}
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):  # JSONDecodeError is a ValueError
        return {}
    return data if isinstance(data, dict) else {}


def open_sweep_dir_path(text: str) -> tuple[Path, str]:
    """(directory, as shown) of the sweep directory typed on the page: under the sweeps root, ``..``
    and symlinks resolved (:func:`~app.dashboard.untrusted.check_sweep_dir`); UntrustedInputError
    otherwise, before anything outside the root is touched."""
    return check_sweep_dir(text)


def read_sweep_dir(directory: str | Path, shown: str | None = None) -> SweepData:
    """The rows of a directory written by ``decodex sweep --out DIR`` (``DIR/parts/*.parquet``), in
    the space's point order where ``DIR/space.json`` declares a space of at most :data:`ORDER_LIMIT`
    points. ``shown``: how messages and the label name the directory (default: as given; the page
    passes the path relative to the sweeps root of a directory checked by
    :func:`open_sweep_dir_path`). Raises SweepInputError saying what is missing or unreadable;
    creates nothing."""
    text = str(directory).strip()
    if not text:
        raise SweepInputError("give the path of a directory written by `decodex sweep SPACE.toml --out DIR`")
    name_shown = text if shown is None else shown
    root = Path(text).expanduser()
    if not root.exists():
        raise SweepInputError(f"{name_shown}: no such directory")
    if not root.is_dir():
        raise SweepInputError(f"{name_shown}: not a directory (give the DIR of `decodex sweep --out DIR`)")
    if not (root / PARTS).is_dir() or not any((root / PARTS).glob("part-*.parquet")):
        raise SweepInputError(f"{name_shown}: no {PARTS}/part-*.parquet files; not a directory written by "
                              "`decodex sweep --out DIR`, or the sweep has not finished a part yet")
    space_data = _read_json(root / "space.json")
    space: SweepSpace | None = None
    if space_data:
        try:
            space = load_space(space_data)
        except (DecodexError, ValueError, TypeError, AttributeError):
            space = None
    try:
        store = SweepStore(root)  # the parts folder exists: nothing is created
        ids = None
        if space is not None and count_points(space) <= ORDER_LIMIT:
            ids = [point_id(p) for p in space.points()]
        frame = store.read(ids)
        if ids is not None and frame.empty:  # rows of another space: show them all, as written
            frame = store.read()
    except (OSError, ValueError, pa.ArrowException) as err:
        reason = " ".join(str(err).replace(str(root), name_shown).split())
        raise SweepInputError(f"{name_shown}: cannot read the Parquet parts ({type(err).__name__}: {reason})") \
            from None
    if frame.empty:
        raise SweepInputError(f"{name_shown}: the Parquet parts hold no rows")
    summary = _read_json(root / "summary.json")
    name = str(summary.get("name") or (space.name if space is not None else root.name))
    parameters = tuple(parameter_columns(frame, space.parameters if space is not None else None))
    return SweepData(frame=frame, parameters=parameters, label=f"{name}: {len(frame):,} rows from {name_shown}",
                     name=name, summary=summary)
