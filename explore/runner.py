"""Run a sweep: its points in chunks, locally (processes) or on a Dask cluster, written as they finish.

``run_sweep(space, mode=..., out=DIR, workers=N, scheduler=ADDRESS, fresh=False)``:

- the space (:mod:`explore.sweep_space`) gives the points; with ``out`` the points already in
  ``DIR`` are skipped (:mod:`explore.sweep_store`), so an interrupted sweep resumes. ``DIR``
  keeps the sweep's identity (space content, mode, Decodex version) in ``DIR/sweep.json``: a run
  of another identity is refused (:class:`explore.sweep_store.SweepDirError`) unless ``fresh``,
  which removes the sweep's old files first;
- points are evaluated without the constraints, and the constraints are applied to the rows
  afterwards (:func:`explore.sweep_store.apply_constraints`; on reading ``DIR``), so a rerun with
  other constraints reuses every row and still reports the right feasible count;
- points are dealt into chunks; in ``estimate`` mode the points that differ only in batch and
  context stay together so the vectorized path prices them at once (:mod:`explore.points`);
- chunks run in this process (``workers = 1``), in ``workers`` processes, or, with a
  ``scheduler`` address (or ``DASK_SCHEDULER_ADDRESS``), on a Dask distributed cluster;
- each finished chunk is written as one Parquet part at once; ``summary.json`` says how far the
  sweep got. The result is one DataFrame row per point of the space, in the space's order.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import pandas as pd

from decodex.core.errors import ArgumentError
from decodex.explore.points import evaluate_points, group_key
from decodex.explore.sweep_space import MODES, SweepSpace, load_space, point_id
from decodex.explore.sweep_store import SweepStore, apply_constraints, sweep_identity

CHUNK_SIZE = {"estimate": 2048, "simulate": 16, "serve": 2}  # points per chunk by mode
SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"

Chunk = list[dict[str, Any]]


def _chunks(points: Sequence[Mapping[str, Any]], mode: str, size: int) -> list[Chunk]:
    """Points dealt into chunks of at most ``size``; estimate keeps batch/context groups together."""
    if mode == "estimate":
        key = {i: group_key(p) for i, p in enumerate(points)}
        order = sorted(range(len(points)), key=lambda i: (key[i], i))
    else:
        order = list(range(len(points)))
    return [[dict(points[i]) for i in order[start:start + size]] for start in range(0, len(order), size)]


def run_chunk(chunk: Chunk, mode: str, constraints: Sequence[Any], vectorize: bool = True) -> list[dict[str, Any]]:
    """Rows of one chunk (what a worker runs)."""
    return evaluate_points(chunk, mode, constraints, vectorize)


class _Progress:
    """Points done out of the total, on stderr (a bar when tqdm is installed)."""

    def __init__(self, total: int, done: int, enabled: bool) -> None:
        self.bar: Any = None
        self.enabled = enabled
        self.total, self.done = total, done
        if enabled:
            try:
                from tqdm import tqdm
                self.bar = tqdm(total=total, initial=done, unit="pt", file=sys.stderr)
            except ImportError:
                self.bar = None

    def update(self, count: int) -> None:
        self.done += count
        if self.bar is not None:
            self.bar.update(count)
        elif self.enabled:
            print(f"\rsweep: {self.done}/{self.total} points", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled:
            print(file=sys.stderr)


def _local(chunks: Sequence[Chunk], mode: str, workers: int, vectorize: bool) -> Iterator[list[dict[str, Any]]]:
    """Raw rows (no constraints applied) of each chunk, in this process or in ``workers`` processes."""
    if workers <= 1:
        for chunk in chunks:
            yield run_chunk(chunk, mode, (), vectorize)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(run_chunk, chunk, mode, (), vectorize) for chunk in chunks]
        for future in as_completed(futures):
            yield future.result()


def _dask(chunks: Sequence[Chunk], mode: str, scheduler: str, vectorize: bool) -> Iterator[list[dict[str, Any]]]:
    """Raw rows (no constraints applied) of each chunk, on the Dask cluster at ``scheduler``."""
    try:
        from distributed import Client
        from distributed import as_completed as dask_completed
    except ImportError:
        raise ArgumentError("scheduler: Dask is not installed (pip install 'decodex[cluster]')") from None
    with Client(scheduler) as client:
        futures = [client.submit(run_chunk, chunk, mode, (), vectorize, pure=False) for chunk in chunks]
        for future in dask_completed(futures):
            yield future.result()


def run_sweep(space: str | Path | Mapping[str, Any] | SweepSpace, *, mode: str | None = None,
              out: str | Path | None = None, workers: int = 1, scheduler: str | None = None,
              progress: bool = False, chunk_size: int | None = None, vectorize: bool = True,
              on_part: Callable[[int], None] | None = None, fresh: bool = False) -> pd.DataFrame:
    """Run every point of ``space`` and return one row per point (module docstring).

    ``mode``: ``estimate``, ``simulate`` or ``serve`` (default: the space's). ``out``: directory
    for the Parquet parts and summary (resumable; a directory holding another sweep raises
    :class:`explore.sweep_store.SweepDirError`). ``fresh``: with ``out``, remove the files of the
    sweep already there and start over. ``workers``: local processes. ``scheduler``:
    a Dask scheduler address (default ``$DASK_SCHEDULER_ADDRESS`` when set and ``workers`` is 1).
    ``chunk_size``: points per chunk (default by mode). ``vectorize``: use the vectorized
    estimate path where it applies. ``on_part``: called with the number of parts written so far
    after each one (e.g. a progress display).
    """
    spec = load_space(space)
    mode = mode or spec.mode
    if mode not in MODES:
        raise ArgumentError(f"mode: {mode!r} not one of {', '.join(MODES)}")
    if not 1 <= workers <= 1024:
        raise ArgumentError(f"workers: {workers} outside [1, 1024]")
    scheduler = scheduler or (os.environ.get(SCHEDULER_ENV) if workers == 1 else None)
    points = spec.points()
    ids = [point_id(p) for p in points]
    store = SweepStore(out) if out is not None else None
    if store is not None:
        store.prepare(sweep_identity(spec, mode), spec.constraints, fresh=fresh, name=spec.name)
    done = store.finished_ids() if store is not None else set()
    pending = [p for p, pid in zip(points, ids, strict=True) if pid not in done]
    started = time.time()
    summary: dict[str, Any] = {"name": spec.name, "description": spec.description, "mode": mode,
                               "sampling": spec.sampling, "points": len(points), "started_unix_s": started,
                               "workers": workers, "scheduler": scheduler or "local"}
    if store is not None:
        store.write_json("space.json", spec.to_dict())
        store.write_json("summary.json", {**summary, "finished": len(points) - len(pending), "complete": False})
    chunks = _chunks(pending, mode, chunk_size or CHUNK_SIZE[mode])
    results = (_dask(chunks, mode, scheduler, vectorize) if scheduler
               else _local(chunks, mode, workers, vectorize))
    rows: list[dict[str, Any]] = []
    bar = _Progress(len(points), len(points) - len(pending), progress)
    parts = 0
    try:
        for chunk_rows in results:
            if store is not None:
                store.write_part(chunk_rows)
            else:
                rows.extend(chunk_rows)
            parts += 1
            bar.update(len(chunk_rows))
            if on_part is not None:
                on_part(parts)
    finally:
        bar.close()
    frame = store.read(ids) if store is not None else apply_constraints(_ordered(rows, ids), spec.constraints)
    if store is not None:
        feasible = int(frame["feasible"].sum()) if "feasible" in frame else 0
        store.write_json("summary.json", {
            **summary, "finished": len(frame), "complete": len(frame) == len(points), "feasible": feasible,
            "infeasible": len(frame) - feasible, "elapsed_s": time.time() - started,
            "parts": len(store.part_files()), "columns": list(frame.columns)})
    return frame


def _ordered(rows: Sequence[Mapping[str, Any]], ids: Sequence[str]) -> pd.DataFrame:
    by_id = {row["point_id"]: row for row in rows}
    return pd.DataFrame([by_id[i] for i in dict.fromkeys(ids) if i in by_id])
