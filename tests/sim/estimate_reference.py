"""The reference numbers of ``decodex.estimate`` and ``serve`` that the fast paths must keep: every result field
that is a number, for a grid of points over every mapper, written by the code as it stood before
the scalar estimate was made faster (issue [perf], commit 777ae42) and checked by
``tests/sim/test_fast_paths.py`` to 1e-12.

    python tests/sim/estimate_reference.py   # rewrites tests/sim/data/estimate_reference.json
                                             # and serve_reference.json (serving summaries)
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

REFERENCE = Path(__file__).resolve().parent / "data" / "estimate_reference.json"
SERVE_REFERENCE = Path(__file__).resolve().parent / "data" / "serve_reference.json"
SERVE_RUNS = (("deepseek-v3", "deepseek-ep32-h800", "fp8"), ("step3", "step3-2a2f-h800", "fp8"),
              ("mixtral-8x7b", "4x-h100-sxm", "fp8"), ("llama3-8b", "h100-sxm", "bf16"))
FIELDS = ("step_time_s", "tokens_per_s", "energy_j", "flops", "bytes", "weight_bytes", "kv_bytes",
          "memory_required_bytes", "band_low_s", "band_high_s")
LLAMAS = ("llama2-7b", "llama3-8b", "llama2-13b", "llama3-70b")


def points() -> list[dict[str, Any]]:
    """The grid: the peers benchmark's Llama points, and every other mapper's systems."""
    grid: list[dict[str, Any]] = [
        {"model": m, "system": s, "batch": b, "context": c, "tp": 8 if m.endswith("70b") else 1}
        for m in LLAMAS for s in ("h100-sxm", "a100-80g") for b in (1, 8, 32, 64) for c in (512, 2048, 4000)]
    for system, model in (("neupims", "gpt3-7b"), ("npu-pim-naive", "gpt3-7b"), ("8x-duplex", "mixtral-8x7b"),
                          ("4x-duplex", "mixtral-8x7b"), ("8x-h100-sxm", "mixtral-8x7b"), ("h200", "llama3-8b"),
                          ("step3-2a2f-h800", "step3"), ("deepseek-ep32-h800", "deepseek-v3"),
                          ("cpu-host", "llama3-8b"), ("h20", "qwen3-235b-a22b")):
        for batch in (1, 16, 128):
            grid.append({"model": model, "system": system, "batch": batch, "context": 1536, "tp": None,
                         "precision": "fp16" if "pim" in system else "bf16"})
    grid += [{"model": "llama3-8b", "system": "h100-sxm", "batch": 8, "context": 1024, "tp": None,
              "precision": p} for p in ("fp8", "w4a16", "int8")]
    return grid


def run(point: dict[str, Any]) -> dict[str, Any]:
    """``decodex.estimate`` (with its band) at ``point``: the numeric fields, or the error."""
    from decodex import api
    from decodex.workloads.parallelism import Parallelism

    kwargs: dict[str, Any] = {"context": point["context"], "precision": point.get("precision", "bf16")}
    if point["tp"]:
        kwargs["parallelism"] = Parallelism(tp=point["tp"])
    try:
        result = api.estimate(point["model"], point["system"], point["batch"], **kwargs)
    except Exception as exc:  # an infeasible point is part of the reference
        return {"error": f"{type(exc).__name__}: {exc}"}
    out: dict[str, Any] = {name: float(getattr(result, name)) for name in FIELDS}
    out["op_times_s"] = [r.time_s for r in result.records]
    out["fits"], out["reason"], out["warnings"] = result.fits, result.reason, list(result.warnings)
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}


def serve_summary(model: str, system: str, precision: str) -> dict[str, Any]:
    """The numeric and text fields of ``serve``'s summary: 300 ShareGPT-like requests at 20/s, seed 1."""
    from decodex.sim.serving import Workload, serve

    result = serve(model, system, Workload.preset("sharegpt", rate=20.0), requests=300, precision=precision, seed=1)
    return {k: v for k, v in result.summary().items() if isinstance(v, int | float | str)}


if __name__ == "__main__":
    rows = [{"point": p, "result": run(p)} for p in points()]
    REFERENCE.write_text(json.dumps(rows, indent=1) + "\n")
    print(f"{len(rows)} points -> {REFERENCE}")
    served = {system: serve_summary(model, system, precision) for model, system, precision in SERVE_RUNS}
    SERVE_REFERENCE.write_text(json.dumps(served, indent=1, sort_keys=True) + "\n")
    print(f"{len(served)} serving runs -> {SERVE_REFERENCE}")
