"""Benchmark: wall time of one discrete-event decode step of gpt3-175b on 8 devices (tp 8,
batch 256). Goal (issue [engine]): <= 100 ms on a 2-core machine. Writes
``benchmarks/results/simulate.json``."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from report import write_report  # noqa: E402

from decodex.sim.simulate import simulate  # noqa: E402
from decodex.workloads.parallelism import Parallelism  # noqa: E402

GOAL_S = 0.1


def main() -> dict[str, object]:
    kwargs = {"context": 1024, "parallelism": Parallelism(tp=8)}
    simulate("gpt3-175b", "8x-h100-sxm", 256, **kwargs)  # warm the spec caches
    samples = []
    for _ in range(20):
        start = time.perf_counter()
        result = simulate("gpt3-175b", "8x-h100-sxm", 256, **kwargs)
        samples.append(time.perf_counter() - start)
    start = time.perf_counter()
    unfolded = simulate("gpt3-175b", "8x-h100-sxm", 256, fold=False, **kwargs)
    unfolded_s = time.perf_counter() - start
    report = {
        "benchmark": "simulate gpt3-175b batch 256 context 1024 on 8x-h100-sxm tp 8 (one decode step)",
        "median_s": statistics.median(samples),
        "max_s": max(samples),
        "unfolded_s": unfolded_s,
        "step_time_s": result.step_time_s,
        "unfolded_step_time_s": unfolded.step_time_s,
        "timeline_events": len(result.timeline),
        "unfolded_timeline_events": len(unfolded.timeline),
        "goal_s": GOAL_S,
        "meets_goal": statistics.median(samples) <= GOAL_S,
    }
    return write_report("simulate", report)


if __name__ == "__main__":
    main()
