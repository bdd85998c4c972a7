"""Benchmark: wall time of ``serve`` for 10,000 ShareGPT-like requests.

llama3-70b on h100-sxm with tensor parallel 8, continuous batching (max batch 256), the
``sharegpt-long`` workload (mean 1730 prompt / 415 output tokens) arriving as a Poisson process
at 10 requests/s, just above what the replica sustains (about 9.5 requests/s), so it runs
full batches throughout and a queue builds slowly.
Goal (issue [serving]): <= 10 s on a 2-core machine. Writes its figures to
``benchmarks/results/serve.json`` (and prints them). ``--profile`` prints a cProfile listing.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from report import write_report  # noqa: E402

from decodex.sim.estimate import estimate  # noqa: E402
from decodex.sim.serving import Workload, serve  # noqa: E402
from decodex.workloads.parallelism import Parallelism  # noqa: E402

GOAL_S = 10.0
REQUESTS = 10_000
RATE = 10.0


def run() -> dict[str, object]:
    """One timed serving run; returns the report dict (times in s)."""
    parallelism = Parallelism(tp=8)
    estimate("llama3-70b", "h100-sxm", 1, parallelism=parallelism)  # warm: loads and caches the spec files
    workload = Workload.preset("sharegpt-long", rate=RATE)
    start = time.perf_counter()
    result = serve("llama3-70b", "h100-sxm", workload, requests=REQUESTS, scheduler="continuous",
                   parallelism=parallelism, seed=0)
    summary = result.summary()
    wall = time.perf_counter() - start
    return {
        "benchmark": "serve 10k sharegpt-long requests, llama3-70b on h100-sxm tp 8, continuous batching",
        "requests": REQUESTS,
        "rate_requests_per_s": RATE,
        "wall_s": wall,
        "goal_s": GOAL_S,
        "meets_goal": wall <= GOAL_S,
        "iterations": summary["iterations"],
        "wall_us_per_iteration": 1e6 * wall / summary["iterations"],
        "step_cache_hits": summary["step_cache_hits"],
        "step_cache_misses": summary["step_cache_misses"],
        "throughput_tokens_per_s": summary["throughput_tokens_per_s"],
        "request_throughput_per_s": summary["request_throughput_per_s"],
        "goodput_requests_per_s": summary["goodput_requests_per_s"],
        "utilization": summary["utilization"],
        "mean_batch_size": summary["mean_batch_size"],
        "simulated_makespan_s": summary["makespan_s"],
        "output_tokens": summary["output_tokens"],
        "preemptions": summary["preemptions"],
        "ttft_s": summary["ttft_s"],
        "tpot_s": summary["tpot_s"],
        "e2e_s": summary["e2e_s"],
        "tbt_s": summary["tbt_s"],
    }


def main(argv: list[str] | None = None) -> dict[str, object]:
    """Run the benchmark, write ``benchmarks/results/serve.json`` and print it."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", action="store_true", help="print the 25 costliest functions")
    args = parser.parse_args(argv)
    if args.profile:
        profiler = cProfile.Profile()
        report = profiler.runcall(run)
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
        return report
    report = run()
    return write_report("serve", report)


if __name__ == "__main__":
    main()
