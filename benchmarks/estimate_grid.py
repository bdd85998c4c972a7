"""Benchmark: design points per second of ``estimate_grid`` (llama3-70b, h100-sxm, tp 8).

A 100 x 100 grid of batch sizes (4 ... 400) x contexts (0 ... 8000 tokens): 10,000 decode
points per call. The first call, which extracts and verifies the polynomial form (cached
afterwards), is timed on its own; the throughput figures exclude it. Goal: >= 10,000 points/s on
one core. Writes its figures to ``benchmarks/results/estimate_grid.json`` (and prints them).
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

from sim.vector_estimate import _grid_form, estimate_grid  # noqa: E402
from workloads.parallelism import Parallelism  # noqa: E402

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
    }
    return write_report("estimate_grid", report)


if __name__ == "__main__":
    main()
