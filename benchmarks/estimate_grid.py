"""Benchmark: design points per second of ``estimate_grid`` (llama3-70b, h100-sxm, tp 8).

A 100 x 100 grid of batch sizes (4 ... 400) x contexts (0 ... 8000 tokens): 10,000 decode
points per call. The first call, which extracts and verifies the polynomial form (cached
afterwards), is timed on its own; the throughput figures exclude it. Goal: >= 10,000 points/s on
one core, for ``estimate_grid`` and for the whole sweep path (``explore.runner.run_sweep``: points,
chunks, rows). Writes its figures to ``benchmarks/results/estimate_grid.json`` (and prints them).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from report import write_report  # noqa: E402

from decodex.explore.runner import run_sweep  # noqa: E402
from decodex.sim.grid_extract import grid_form as _grid_form  # noqa: E402
from decodex.sim.vector_estimate import estimate_grid  # noqa: E402
from decodex.workloads.parallelism import Parallelism  # noqa: E402

GOAL_POINTS_PER_S = 10_000.0
SIDE = 100


def main() -> dict[str, object]:
    batch, context = np.meshgrid(np.arange(1, SIDE + 1) * 4, np.linspace(0, 8000, SIDE).astype(np.int64),
                                 indexing="ij")
    batches, contexts = batch.ravel(), context.ravel()
    args = ("llama3-70b", "h100-sxm", batches, contexts)
    kwargs = {"parallelism": Parallelism(tp=8)}
    _grid_form.cache_clear()
    start = time.perf_counter()
    frame = estimate_grid(*args, **kwargs)  # extracts and caches the form
    first_s = time.perf_counter() - start
    samples = []
    for _ in range(30):
        start = time.perf_counter()
        estimate_grid(*args, **kwargs)
        samples.append(time.perf_counter() - start)
    median = statistics.median(samples)
    points = batches.size
    space = {"name": "bench", "fixed": {"model": "llama3-70b", "system": "h100-sxm", "tp": 8},
             "axes": {"batch": [int(b) for b in np.arange(1, SIDE + 1) * 4],
                      "context": [int(c) for c in np.linspace(0, 8000, SIDE).astype(np.int64)]}}
    start = time.perf_counter()
    rows = run_sweep(space)  # the whole sweep path: points, chunks, vectorized pricing, rows
    sweep_s = time.perf_counter() - start
    report = {
        "benchmark": f"estimate_grid llama3-70b on h100-sxm tp 8, {SIDE} batches x {SIDE} contexts",
        "points_per_call": points,
        "first_call_s": first_s,
        "first_call_points_per_s": points / first_s,
        "median_s_per_call": median,
        "min_s_per_call": min(samples),
        "points_per_s": points / median,
        "goal_points_per_s": GOAL_POINTS_PER_S,
        "meets_goal": points / median >= GOAL_POINTS_PER_S,
        "points_not_fitting": int((~frame["fits"]).sum()),
        "sweep_points": len(rows),
        "sweep_s": sweep_s,
        "sweep_points_per_s": len(rows) / sweep_s,
        "sweep_meets_goal": len(rows) / sweep_s >= GOAL_POINTS_PER_S,
    }
    return write_report("estimate_grid", report)


if __name__ == "__main__":
    main()
