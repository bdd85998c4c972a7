"""Benchmark: large systems (issue [perf] #25, part 3).

- ``simulate`` of one decode step of DeepSeek-V3 on ``deepseek-ep128-h800`` (128 devices, expert
  parallel, batch 256 x 2048 tokens, fp8) and of Step-3 on ``step3-2a2f-h800`` (attention-FFN
  disaggregation, batch 256 x 4096 tokens, fp8): from a cold ``decodex simulate ... --json``
  process and in-process after a first call (goal: <= 1 s each).
- ``serve`` of ``--requests`` ShareGPT-like requests (default 100,000) on the 128-device
  ``deepseek-ep128-h800`` (goal: <= 60 s for 100,000).

Writes ``benchmarks/results/large_systems.json``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from report import write_report  # noqa: E402

from decodex.sim import simulate  # noqa: E402
from decodex.sim.serving import Workload, serve  # noqa: E402

STEPS = (("deepseek-v3", "deepseek-ep128-h800", 256, 2048), ("step3", "step3-2a2f-h800", 256, 4096))
SIMULATE_GOAL_S = 1.0
SERVE_GOAL_S = 60.0
SERVE_SYSTEM = ("deepseek-v3", "deepseek-ep128-h800")


def _simulate_figures(model: str, system: str, batch: int, context: int) -> dict[str, object]:
    """Cold CLI wall time and in-process time (first and median of 5 more calls) of one step, s."""
    argv = [sys.executable, "-m", "decodex.app.cli", "simulate", "--model", model, "--system", system,
            "--batch", str(batch), "--context", str(context), "--precision", "fp8", "--json"]
    cold = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        cold.append(time.perf_counter() - start)
    start = time.perf_counter()
    simulate(model, system, batch, context=context, precision="fp8")
    first = time.perf_counter() - start
    again = []
    for _ in range(5):
        start = time.perf_counter()
        simulate(model, system, batch, context=context, precision="fp8")
        again.append(time.perf_counter() - start)
    cli = statistics.median(cold)
    return {"model": model, "system": system, "batch": batch, "context": context, "cli_cold_median_s": cli,
            "in_process_first_s": first, "in_process_median_s": statistics.median(again),
            "goal_s": SIMULATE_GOAL_S, "meets_goal": cli <= SIMULATE_GOAL_S}


def _serve_figures(requests: int, rate: float) -> dict[str, object]:
    """Wall time of one serving run of ``requests`` on the 128-device system, s."""
    model, system = SERVE_SYSTEM
    workload = Workload.preset("sharegpt", rate=rate)
    start = time.perf_counter()
    result = serve(model, system, workload, requests=requests, precision="fp8", seed=0)
    wall = time.perf_counter() - start
    summary = result.summary()
    goal = SERVE_GOAL_S * requests / 100_000
    return {"model": model, "system": system, "requests": requests, "rate_requests_per_s": rate, "wall_s": wall,
            "iterations": summary["iterations"], "devices": summary["devices"],
            "throughput_tokens_per_s": summary["throughput_tokens_per_s"],
            "goal_s": goal, "meets_goal": wall <= goal}


def main(argv: list[str] | None = None) -> dict[str, object]:
    """Run both parts and write the report (times in s)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=100_000, help="serving requests (default 100,000)")
    parser.add_argument("--rate", type=float, default=50.0, help="arrival rate, requests/s (default 50)")
    args = parser.parse_args(argv)
    steps = [_simulate_figures(*step) for step in STEPS]
    served = _serve_figures(args.requests, args.rate)
    return write_report("large_systems", {"benchmark": "simulate on 128/32-device systems; serve on 128 devices",
                                          "simulate": steps, "serve": served})


if __name__ == "__main__":
    main()
