"""Benchmark: wall time of ``decodex estimate ... --json`` from a cold process, and of its import.

Goal (issue [perf] #25, CLI start): <= 0.5 s wall on a 2-core machine. Each sample is a fresh
``python -m decodex.app.cli estimate --model llama3-8b --system h100-sxm --json`` (interpreter
start, imports, the estimate with its error band, the JSON written), timed from outside with
``time.perf_counter``; the import of ``decodex.app.cli`` alone is timed the same way. Also records
which heavy libraries the run loaded. Writes ``benchmarks/results/cli_start.json``.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from report import write_report  # noqa: E402

GOAL_S = 0.5
COMMAND = ["estimate", "--model", "llama3-8b", "--system", "h100-sxm", "--json"]
HEAVY = ("pandas", "plotly", "streamlit", "dask", "numba", "scipy", "simpy", "pyarrow", "decodex.sim.serving")
RUNS = 9


def _wall_s(argv: list[str]) -> float:
    """Seconds of one cold process running ``argv`` (must exit 0)."""
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> dict[str, object]:
    """Time the cold CLI run and the import ``RUNS`` times each; write and return the figures (s)."""
    cli = [sys.executable, "-m", "decodex.app.cli", *COMMAND]
    importing = [sys.executable, "-c", "import decodex.app.cli"]
    _wall_s(cli)  # warm the file cache and Python's bytecode cache
    runs = [_wall_s(cli) for _ in range(RUNS)]
    imports = [_wall_s(importing) for _ in range(RUNS)]
    bare = [_wall_s([sys.executable, "-c", "pass"]) for _ in range(RUNS)]
    probe = ("import io, contextlib, json, sys\nfrom decodex.app.cli import main\n"
             f"with contextlib.redirect_stdout(io.StringIO()):\n    main({COMMAND!r})\n"
             f"print(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True,
                                       text=True).stdout.strip().splitlines()[-1])
    median = statistics.median(runs)
    return write_report("cli_start", {
        "benchmark": "decodex estimate --json from a cold process", "command": "decodex " + " ".join(COMMAND),
        "runs": RUNS, "median_s": median, "min_s": min(runs), "max_s": max(runs),
        "import_cli_median_s": statistics.median(imports), "python_start_median_s": statistics.median(bare),
        "heavy_modules_loaded": loaded, "goal_s": GOAL_S, "meets_goal": median <= GOAL_S})


if __name__ == "__main__":
    main()
