"""Benchmark: wall time of one ``estimate`` call (llama3-70b, batch 64, h100-sxm, tp 8).

Goal (issue [core]): <= 1 ms per call on a 2-core machine. Writes its figures to
``benchmarks/results/estimate.json`` (and prints them).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from report import write_report  # noqa: E402

from decodex.sim.estimate import estimate  # noqa: E402
from decodex.workloads.parallelism import Parallelism  # noqa: E402

GOAL_S = 1e-3


def main() -> dict[str, object]:
    args = ("llama3-70b", "h100-sxm", 64)
    kwargs = {"context": 2048, "parallelism": Parallelism(tp=8)}
    estimate(*args, **kwargs)  # warm: loads and caches the spec files
    samples = []
    for _ in range(30):
        start = time.perf_counter()
        for _ in range(100):
            estimate(*args, **kwargs)
        samples.append((time.perf_counter() - start) / 100)
    median = statistics.median(samples)
    report = {
        "benchmark": "estimate llama3-70b batch 64 context 2048 on h100-sxm tp 8",
        "median_s_per_call": median,
        "min_s_per_call": min(samples),
        "p90_s_per_call": sorted(samples)[int(0.9 * len(samples))],
        "goal_s_per_call": GOAL_S,
        "meets_goal": median <= GOAL_S,
    }
    return write_report("estimate", report)


if __name__ == "__main__":
    main()
