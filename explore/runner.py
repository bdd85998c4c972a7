"""Run a sweep: its points in chunks, locally (processes) or on a Dask cluster, written as they finish.

``run_sweep(space, mode=..., out=DIR, workers=N, scheduler=ADDRESS, fresh=False)``:

- the space (:mod:`explore.sweep_space`) gives the points; with ``out`` the points already in
  ``DIR`` are skipped (:mod:`explore.sweep_store`), so an interrupted sweep resumes. ``DIR``
  keeps the sweep's identity (space content, mode, Decodex version) in ``DIR/sweep.json``: a run
  of another identity is refused (:class:`explore.sweep_store.SweepDirError`) unless ``fresh``,
  which removes the sweep's old files first;
- points are evaluated without the constraints, and the constraints are applied to the rows
  afterwards (:func:`explore.sweep_identity.apply_constraints`; on reading ``DIR``), so a rerun with
  other constraints reuses every row and still reports the right feasible count;
- points are dealt into chunks; in ``estimate`` mode the points that differ only in batch and
  context stay together so the vectorized path prices them at once (:mod:`explore.points`);
- chunks run in this process (``workers = 1``), in ``workers`` processes, or, with a
  ``scheduler`` address (or ``DASK_SCHEDULER_ADDRESS``), on a Dask distributed cluster;
- each finished chunk is written as one Parquet part at once; ``summary.json`` says how far the
  sweep got. The result is one DataFrame row per point of the space, in the space's order.

Faults (docs/explore.md, "Faults, locks and limits"): a point that raises is a row with its
reason (:func:`explore.points.evaluate_point`); a worker process that dies loses only its chunk,
which is rerun once alone in a fresh pool and otherwise written as rows whose reason starts with
:data:`explore.sweep_store.RETRY_REASON` (retried by the next run); a run holds ``DIR/.lock``; an
interrupt (KeyboardInterrupt, or :class:`Terminated` from SIGTERM) terminates the worker
processes and keeps the parts written; ``time_limit_s`` stops submitting chunks after that many
seconds; ``max_memory_bytes`` refuses a sweep whose estimated memory
(:func:`explore.sweep_memory.estimate_memory_bytes`) is above it. The returned frame's ``attrs["sweep"]`` says whether
the sweep is complete, why it stopped and the part files skipped.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from decodex.core.errors import ArgumentError
from decodex.core.run_limits import check_time_limit, default_memory_limit, parse_bytes, si_bytes
from decodex.explore.chunk_runs import Chunk, Deadline, dask_rows, local_rows
from decodex.explore.dask_scheduler import connect_scheduler
from decodex.explore.points import group_key
from decodex.explore.sweep_identity import apply_constraints, identity_difference, sweep_identity
from decodex.explore.sweep_memory import CHUNK_SIZE, estimate_memory_bytes
from decodex.explore.sweep_space import MODES, SweepSpace, check_constraints, load_space, point_id
from decodex.explore.sweep_store import SweepDirReadOnlyError, SweepStore

SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised by the sweep command's signal handler: it takes the interrupt's path (worker
    processes terminated, parts written so far kept)."""


def _chunks(points: Sequence[Mapping[str, Any]], mode: str, size: int) -> list[Chunk]:
    """Points dealt into chunks of at most ``size``; estimate keeps batch/context groups together."""
    if mode == "estimate":
        key = {i: group_key(p) for i, p in enumerate(points)}
        order = sorted(range(len(points)), key=lambda i: (key[i], i))
    else:
        order = list(range(len(points)))
    return [[dict(points[i]) for i in order[start:start + size]] for start in range(0, len(order), size)]


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


def _check_arguments(out: str | Path | None, workers: int, time_limit_s: float | None,
                     chunk_size: int | None) -> None:
    if out is not None and not str(out).strip():
        raise ArgumentError("--out (out): an empty path; give a folder name (or out=None to keep the rows in memory)")
    if not 1 <= workers <= 1024:
        raise ArgumentError(f"--workers (workers): {workers} outside [1, 1024]")
    check_time_limit(time_limit_s, "--time-limit (time_limit_s)")
    if chunk_size is not None and not 1 <= chunk_size <= 10_000_000:
        raise ArgumentError(f"chunk_size: {chunk_size} outside [1, 10000000]")


def run_sweep(space: str | Path | Mapping[str, Any] | SweepSpace, *, mode: str | None = None,
              out: str | Path | None = None, workers: int = 1, scheduler: str | None = None,
              progress: bool = False, chunk_size: int | None = None, vectorize: bool = True,
              on_part: Callable[[int], None] | None = None, fresh: bool = False,
              time_limit_s: float | None = None, max_memory_bytes: float | str | None = None) -> pd.DataFrame:
    """Run every point of ``space`` and return one row per point (module docstring).

    ``mode``: ``estimate``, ``simulate`` or ``serve`` (default: the space's). ``out``: directory
    for the Parquet parts and summary (resumable; a directory holding another sweep, or locked by
    another run, raises :class:`explore.sweep_store.SweepDirError`; a read-only one holding this
    whole sweep is only read). ``fresh``: with ``out``, remove the files of the sweep already
    there and start over. ``workers``: local processes. ``scheduler``: a Dask scheduler address
    (default ``$DASK_SCHEDULER_ADDRESS`` when set and ``workers`` is 1). ``chunk_size``: points
    per chunk (default by mode). ``vectorize``: use the vectorized estimate path where it
    applies. ``on_part``: called with the number of parts written so far after each one (e.g. a
    progress display). ``time_limit_s``: seconds after which no new chunk starts (the chunks
    running finish and are written; the rows so far are returned). ``max_memory_bytes``: refuse
    (ArgumentError) a sweep whose :func:`estimate_memory_bytes` is above it (bytes, or text such
    as ``8G``; default half the physical memory). The frame's ``attrs["sweep"]`` holds
    ``points``, ``finished``, ``complete``, ``left`` (points not run), ``stopped`` (why it
    stopped early, '' when it did not) and ``problems`` (part files skipped, one line each).
    """
    spec = load_space(space)
    mode = mode or spec.mode
    if mode not in MODES:
        raise ArgumentError(f"--mode (mode): {mode!r} not one of {', '.join(MODES)}")
    check_constraints(spec, mode)
    _check_arguments(out, workers, time_limit_s, chunk_size)
    flag = "--scheduler"
    if not scheduler and workers == 1 and os.environ.get(SCHEDULER_ENV):
        scheduler, flag = os.environ[SCHEDULER_ENV], f"--scheduler (${SCHEDULER_ENV})"
    limit = default_memory_limit() if max_memory_bytes is None else parse_bytes(max_memory_bytes)
    need = estimate_memory_bytes(spec, mode, 1 if scheduler else workers, chunk_size)
    if need > limit:
        raise ArgumentError(
            f"--max-memory (max_memory_bytes): this sweep needs about {si_bytes(need)} ({spec.count_points():,} "
            f"{mode} points{'' if scheduler else f', {workers} worker(s)'}), above the limit of {si_bytes(limit)}; "
            "raise --max-memory, use fewer --workers or split the space")
    with contextlib.ExitStack() as stack:
        client = stack.enter_context(connect_scheduler(scheduler, flag)) if scheduler else None
        points = spec.points()
        ids = [point_id(p) for p in points]
        store = SweepStore(out) if out is not None else None
        if store is not None:
            held = stack.enter_context(contextlib.ExitStack())
            try:
                held.enter_context(store.lock())
                store.prepare(sweep_identity(spec, mode), spec.constraints, fresh=fresh, name=spec.name)
            except SweepDirReadOnlyError as err:  # the lock file or the manifest cannot be written
                held.close()
                return _read_only_rows(store, spec, mode, ids, fresh, err)
        done = store.finished_ids(ids) if store is not None else set()
        pending = [p for p, pid in zip(points, ids, strict=True) if pid not in done]
        started = time.time()
        summary: dict[str, Any] = {"name": spec.name, "description": spec.description, "mode": mode,
                                   "sampling": spec.sampling, "points": len(points), "started_unix_s": started,
                                   "workers": workers, "scheduler": scheduler or "local"}
        if store is not None:
            store.write_json("space.json", spec.to_dict())
            store.write_json("summary.json", {**summary, "finished": len(points) - len(pending), "complete": False})
        chunks = _chunks(pending, mode, chunk_size or CHUNK_SIZE[mode])
        deadline = Deadline(time_limit_s)
        results = (dask_rows(chunks, mode, client, vectorize, deadline) if client is not None
                   else local_rows(chunks, mode, workers, vectorize, deadline))
        rows: list[dict[str, Any]] = []
        bar = _Progress(len(points), len(points) - len(pending), progress)
        parts = produced = 0
        try:
            for chunk_rows in results:
                if store is not None:
                    store.write_part(chunk_rows)
                else:
                    rows.extend(chunk_rows)
                parts += 1
                produced += len(chunk_rows)
                bar.update(len(chunk_rows))
                if on_part is not None:
                    on_part(parts)
        except BaseException as err:
            if store is not None:
                with contextlib.suppress(Exception):
                    store.write_json("summary.json", {
                        **summary, "finished": len(points) - len(pending) + produced, "complete": False,
                        "stopped": f"interrupted ({type(err).__name__})", "elapsed_s": time.time() - started})
            raise
        finally:
            results.close()  # a pool left early terminates its processes
            bar.close()
        left = len(pending) - produced
        stopped = f"time limit of {time_limit_s:g} s reached" if left > 0 else ""
        frame = store.read(ids) if store is not None else apply_constraints(_ordered(rows, ids), spec.constraints)
        if store is not None:
            feasible = int(frame["feasible"].sum()) if "feasible" in frame else 0
            store.write_json("summary.json", {
                **summary, "finished": len(frame), "complete": len(frame) == len(points) and not stopped,
                "feasible": feasible, "infeasible": len(frame) - feasible, "elapsed_s": time.time() - started,
                "parts": len(store.part_files()), "columns": list(frame.columns),
                **({"stopped": stopped, "left": left} if stopped else {})})
        frame.attrs["sweep"] = {"points": len(points), "finished": len(frame),
                                "complete": len(frame) == len(points) and not stopped, "left": left,
                                "stopped": stopped, "problems": list(store.problems) if store is not None else []}
        return frame


def _read_only_rows(store: SweepStore, spec: SweepSpace, mode: str, ids: Sequence[str], fresh: bool,
                    error: SweepDirReadOnlyError) -> pd.DataFrame:
    """The rows of a directory that cannot be written, when it holds this whole sweep (same
    identity, every point finished); otherwise ``error`` saying how much it holds."""
    def refused(what: str) -> SweepDirReadOnlyError:
        return SweepDirReadOnlyError(f"{store.directory} cannot be written ({error.reason or error}) and {what}: "
                                     "make it writable or use another --out", error.reason)

    if fresh:
        raise refused("--fresh (fresh=True) would remove its files")
    try:
        held = store.manifest()
    except (OSError, ValueError):
        held = {}
    identity = held.get("identity") if isinstance(held, dict) else None
    same = isinstance(identity, dict) and not identity_difference(identity, sweep_identity(spec, mode))
    finished = store.finished_ids(ids) if same else set()
    if not same or len(finished) < len(set(ids)):
        raise refused(f"holds {len(finished)} of the {len(set(ids))} points of this sweep" if same
                      else "does not hold this sweep (another space, mode or version, or none)")
    frame = store.read(ids, constraints=spec.constraints)
    frame.attrs["sweep"] = {"points": len(ids), "finished": len(frame), "complete": len(frame) == len(ids),
                            "left": 0, "stopped": "", "problems": list(store.problems)}
    return frame


def _ordered(rows: Sequence[Mapping[str, Any]], ids: Sequence[str]) -> pd.DataFrame:
    by_id = {row["point_id"]: row for row in rows}
    return pd.DataFrame([by_id[i] for i in dict.fromkeys(ids) if i in by_id])
