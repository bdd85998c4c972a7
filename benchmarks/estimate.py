"""Benchmark: wall time of one ``estimate`` call (llama3-70b, batch 64, h100-sxm, tp 8).

Goal (issue [core]): <= 1 ms per call on a 2-core machine. Writes its figures to
``benchmarks/results/estimate.json`` (and prints them).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sim.estimate import estimate  # noqa: E402
from workloads.parallelism import Parallelism  # noqa: E402

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
        "python": platform.python_version(),
        "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    out = ROOT / "benchmarks" / "results" / "estimate.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
