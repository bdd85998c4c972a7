"""How much memory a sweep needs, and sizes given with units (``--max-memory 8G``).

:func:`estimate_memory_bytes` is what ``run_sweep(max_memory_bytes=...)`` compares with its
limit before it starts; the constants below were measured as their comments say.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from decodex.explore.sweep_space import SweepSpace, load_space

CHUNK_SIZE = {"estimate": 2048, "simulate": 16, "serve": 2}  # points per chunk by mode

# Memory a sweep needs (estimate_memory_bytes), bytes. Measured with tracemalloc (peak of the
# traced Python allocations; CPython 3.11, pandas 2, pyarrow; llama3-8b on h100-sxm unless said)
# and rounded up by about a quarter:
# - ROW_BYTES, per point, held by the process running the sweep (its point dict, its row while
#   collected, then the returned DataFrame, read back from the parts with ``out``): estimate,
#   run_sweep of 4096 points: 2.0 kB per point in memory, 1.6 kB with out; simulate, the growth
#   from 256 to 1024 points: 2.2 kB; serve, from 64 to 256 points (4 requests each): 2.8 kB.
# - CHUNK_BYTES, working memory of one chunk running, besides its rows, including the caches a
#   process builds on its first point of a model: estimate, a 2048-point chunk on the vectorized
#   path: 2.7 MB; simulate, one cold point of examples/sweeps/afd-network: 10 MB (llama3-70b tp 8:
#   0.15 MB); serve, the first point of mixtral-8x7b (200 sharegpt requests): 43 MB, a warm one
#   2.1 MB plus its requests.
# - REQUEST_BYTES, serve only, per request of one run: (peak at 800 requests - peak at 100) / 700
#   = 16 kB (llama3-8b, sharegpt; 13 kB for mixtral-8x7b and llama3-70b).
# - WORKER_BYTES, a worker process (workers > 1) with NumPy, pandas and Decodex imported:
#   resident set size after its first chunk (psutil): 129 MB.
ROW_BYTES = {"estimate": 2_500, "simulate": 3_000, "serve": 3_500}
CHUNK_BYTES = {"estimate": 4_000_000, "simulate": 12_000_000, "serve": 55_000_000}
REQUEST_BYTES = 20_000
SERVE_DEFAULT_REQUESTS = 200  # evaluate_point's default ``requests``
WORKER_BYTES = 160_000_000

def _largest_requests(space: SweepSpace) -> float:
    """The largest ``requests`` of the space's points (serve; the default when not set)."""
    values: list[Any] = [space.fixed["requests"]] if "requests" in space.fixed else []
    for axis in space.axes:
        if axis.name == "requests":
            values += list(axis.values) if axis.values is not None else [axis.high]
    numbers = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    return max(numbers, default=SERVE_DEFAULT_REQUESTS)


def estimate_memory_bytes(space: str | Path | Mapping[str, Any] | SweepSpace, mode: str | None = None,
                          workers: int = 1, chunk_size: int | None = None) -> float:
    """The memory a sweep of ``space`` in ``mode`` with ``workers`` local processes needs, bytes:
    ``points x ROW_BYTES[mode]`` held by this process, plus, per chunk running at once (at most
    ``workers``), ``chunk x ROW_BYTES + CHUNK_BYTES[mode]`` (serve: ``+ requests x REQUEST_BYTES``)
    and, when ``workers > 1``, ``WORKER_BYTES`` per process. The constants and how they were
    measured are in this module's source."""
    spec = load_space(space)
    mode = mode or spec.mode
    points = spec.count_points()
    size = min(chunk_size or CHUNK_SIZE[mode], max(points, 1))
    running = min(max(workers, 1), max(1, math.ceil(points / size)))
    chunk = size * ROW_BYTES[mode] + CHUNK_BYTES[mode]
    if mode == "serve":
        chunk += _largest_requests(spec) * REQUEST_BYTES
    return points * ROW_BYTES[mode] + running * (chunk + (WORKER_BYTES if workers > 1 else 0))
