"""Running the chunks of a sweep: in this process, in local worker processes, or on a Dask cluster.

Each function yields the raw rows (no constraints applied) of one chunk at a time and never
raises for a point or a chunk: a chunk that raises is retried point by point, a chunk lost with
a dead worker process is rerun alone in a fresh pool, and what still fails becomes rows whose
reason starts with :data:`explore.sweep_store.RETRY_REASON` (retried by the next run). No chunk
is started once the :class:`Deadline` has passed. Leaving early terminates the worker processes.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from decodex.explore.points import evaluate_point, evaluate_points, failure_reason
from decodex.explore.sweep_space import point_id
from decodex.explore.sweep_store import RETRY_REASON

TERMINATE_WAIT_S = 2.0  # how long a terminated worker process may take to end before it is killed

Chunk = list[dict[str, Any]]


def run_chunk(chunk: Chunk, mode: str, constraints: Sequence[Any], vectorize: bool = True) -> list[dict[str, Any]]:
    """Rows of one chunk (what a worker runs)."""
    return evaluate_points(chunk, mode, constraints, vectorize)


def failed_rows(chunk: Sequence[Mapping[str, Any]], reason: str) -> list[dict[str, Any]]:
    """Rows saying that the points of ``chunk`` could not be evaluated, and why."""
    return [{"point_id": point_id(p), **p, "feasible": False, "reason": reason} for p in chunk]


def chunk_rows(chunk: Chunk, mode: str, vectorize: bool) -> list[dict[str, Any]]:
    """Rows of ``chunk`` that never raise for a point: :func:`run_chunk`, else point by point, else
    rows with the reason (what this process, a worker process or a Dask worker runs)."""
    try:
        return run_chunk(chunk, mode, (), vectorize)
    except Exception:  # e.g. MemoryError building the chunk's frame: try the points one by one
        pass
    try:
        return [evaluate_point(p, mode) for p in chunk]
    except Exception as err:
        return failed_rows(chunk, RETRY_REASON + failure_reason(err))


def _worker_init() -> None:
    """In a worker process: leave SIGINT to the parent (which terminates the workers), take SIGTERM's
    default action, and (Linux) get SIGTERM when the parent dies, even killed."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG


def _new_pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=workers, initializer=_worker_init)


def terminate_pool(pool: ProcessPoolExecutor, futures: Sequence[Future[Any]] = ()) -> None:
    """Stop ``pool`` now: cancel what has not started, terminate its processes (kill those that
    do not end within TERMINATE_WAIT_S) and reap them."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for future in futures:
        future.cancel()
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        with contextlib.suppress(Exception):
            process.terminate()
    end = time.monotonic() + TERMINATE_WAIT_S
    for process in processes:
        with contextlib.suppress(Exception):
            process.join(max(0.0, end - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(1.0)


class Deadline:
    """When to stop submitting chunks (never without a limit)."""

    clock: Callable[[], float] = time.monotonic  # seconds (a test may replace it)

    def __init__(self, limit_s: float | None) -> None:
        self.limit_s = limit_s
        self.started = self.clock()

    def passed(self) -> bool:
        return self.limit_s is not None and self.clock() - self.started >= self.limit_s


def local_rows(chunks: Sequence[Chunk], mode: str, workers: int, vectorize: bool,
           deadline: Deadline) -> Iterator[list[dict[str, Any]]]:
    """Raw rows (no constraints applied) of each chunk, in this process or in ``workers`` processes;
    no chunk is started once ``deadline`` has passed."""
    if workers <= 1:
        for chunk in chunks:
            if deadline.passed():
                return
            yield chunk_rows(chunk, mode, vectorize)
        return
    yield from pool_rows(chunks, mode, workers, vectorize, deadline)


def pool_rows(chunks: Sequence[Chunk], mode: str, workers: int, vectorize: bool,
               deadline: Deadline) -> Iterator[list[dict[str, Any]]]:
    """Rows of each chunk from ``workers`` processes, at most ``workers`` chunks in flight. When a
    worker dies (the pool breaks), every chunk in flight is lost: each is rerun alone in a fresh
    pool, and one that breaks it again becomes rows with the reason. Leaving early (an exception,
    or the consumer closing this generator) terminates the worker processes."""
    queue: deque[Chunk] = deque(chunks)
    suspects: deque[Chunk] = deque()  # chunks lost with a dead worker: rerun one at a time
    running: dict[Future[list[dict[str, Any]]], tuple[Chunk, bool]] = {}  # future -> (chunk, a rerun)
    pool = _new_pool(workers)
    finished = False
    try:
        while True:
            refused = False  # the pool broke before a submit: it is replaced below
            while not deadline.passed():
                if suspects:
                    if running:
                        break
                    chunk, rerun = suspects.popleft(), True
                elif queue and len(running) < workers:
                    chunk, rerun = queue.popleft(), False
                else:
                    break
                try:
                    running[pool.submit(chunk_rows, chunk, mode, vectorize)] = (chunk, rerun)
                except BrokenProcessPool:
                    (suspects if rerun else queue).appendleft(chunk)
                    refused = True
                    break
                if rerun:
                    break
            if not running:
                if not refused:
                    break
                terminate_pool(pool)
                pool = _new_pool(workers)
                continue
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            broken = any(isinstance(f.exception(), BrokenProcessPool) for f in done)
            if broken:
                wait(running)  # every chunk in flight fails with the pool
                done = set(running)
            for future in [f for f in running if f in done]:
                chunk, rerun = running.pop(future)
                error = future.exception()
                if error is None:
                    yield future.result()
                elif isinstance(error, BrokenProcessPool) and not rerun:
                    suspects.append(chunk)
                elif isinstance(error, BrokenProcessPool):
                    yield failed_rows(chunk, f"{RETRY_REASON}a worker process died running this point's chunk "
                                              f"of {len(chunk)} (twice; killed, or out of memory?)")
                else:
                    yield failed_rows(chunk, RETRY_REASON + failure_reason(error))
            if broken:
                terminate_pool(pool)
                pool = _new_pool(workers)
        finished = True
    finally:
        if finished:
            pool.shutdown(wait=True)
        else:
            terminate_pool(pool, list(running))


def dask_rows(chunks: Sequence[Chunk], mode: str, client: Any, vectorize: bool,
          deadline: Deadline) -> Iterator[list[dict[str, Any]]]:
    """Raw rows (no constraints applied) of each chunk, on the Dask cluster of ``client``; a chunk
    whose task fails becomes rows with the reason; no chunk is submitted once ``deadline`` has passed."""
    from distributed import as_completed as dask_completed

    threads = sum(client.nthreads().values()) or 1
    window = max(2, 2 * threads)
    queue: deque[Chunk] = deque(chunks)
    running: dict[str, tuple[Any, Chunk]] = {}
    completed = dask_completed()

    def submit() -> None:
        while queue and len(running) < window and not deadline.passed():
            chunk = queue.popleft()
            future = client.submit(chunk_rows, chunk, mode, vectorize, pure=False)
            running[future.key] = (future, chunk)
            completed.add(future)

    submit()
    try:
        for future in completed:
            _, chunk = running.pop(future.key)
            try:
                rows = future.result()
            except Exception as err:
                rows = failed_rows(chunk, RETRY_REASON + failure_reason(err))
            yield rows
            submit()
    except BaseException:
        with contextlib.suppress(Exception):
            client.cancel([f for f, _ in running.values()])
        raise
