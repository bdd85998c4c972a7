"""Writing benchmark figures: one JSON file per benchmark under ``benchmarks/results/``."""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def write_report(name: str, report: dict[str, object]) -> dict[str, object]:
    """Add the machine (Python, processor, cores) and the date to ``report``, write it to
    ``benchmarks/results/NAME.json`` and print it; returns the completed report."""
    report = {**report, "python": platform.python_version(), "machine": platform.processor() or platform.machine(),
              "cpu_count": os.cpu_count(), "date": datetime.now(UTC).isoformat(timespec="seconds")}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return report
