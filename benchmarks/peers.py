"""Benchmark: Decodex's scalar ``estimate`` against two peer tools, timed in one run.

The peers are GenZ (PyPI ``genz-llm``, ``GenZ.decode_moddeling``) and llm-analysis (PyPI
``llm-analysis``, ``llm_analysis.analysis.infer``); ``pip install -e '.[bench]'`` installs both. Each
predicts the time of one decode step from its own built-in model configs and GPU presets:

* Decodex: ``decodex.sim.estimate`` (the raw simulator, no error band) and, timed separately as
  ``decodex_band``, ``decodex.api.estimate`` (the same prediction plus the validation records' band);
  ``step_time_s``.
* GenZ: ``decode_moddeling(model, batch_size, input_tokens=context, output_tokens=1, Bb=1,
  system_name, bits="bf16", tensor_parallel)``; ``Latency`` (ms). ``Bb=1``: plain decoding (its
  default of 4 models beam search); ``output_tokens=1``: the step attends to context + 1 tokens, as
  Decodex's does. GenZ writes two CSV files per call under ``/tmp/genz/data/model`` (its own doing).
* llm-analysis: ``infer(model_name, gpu_name, "w16a16e16", batch_size_per_gpu=batch, tp_size,
  seq_len=context, num_tokens_to_generate=1)``; ``decode_latency`` (s). Its default efficiencies (1.0).
  A model without a built-in config is not looked up on the Hugging Face Hub: the point is recorded
  as failed.

Grid: 4 Llama models x {H100 SXM, A100 80GB} x batch {1, 8, 32, 64} x context {512, 2048, 8192},
bf16, tensor parallel 8 for the 70B model and 1 otherwise (96 points). Llama-3.1-8B stands for
Llama 3 8B: it is the config GenZ ships (Llama-3-8B's layers, 128k positions), and llm-analysis
ships no Llama 3 at all. Points a tool refuses (context beyond the model's positions, memory that
does not fit) are recorded with the tool's error and left out of its timing summary.

Timing: each tool is warmed once on every (model, system) pair; then, for ``--rounds`` rounds
(default 5), every point in order, the tools one after another on that point (decodex,
decodex_band, genz, llm-analysis in a seeded random order drawn anew at each point and round, so
that no tool always runs right after the same one: after GenZ's 90 ms call the CPU caches are
cold for whatever follows, and ``decodex_band`` right after ``decodex`` would find them warm),
each call timed with ``time.perf_counter``, so that machine noise hits all tools alike (the heap
left by imports and warm-up is frozen out of the garbage collector's scans, ``gc.freeze``). Per
point and tool: the median over rounds. Per tool: the median and
p90 over points of those medians (ms per point), and the ratio peer time / decodex time.

Then each tool warm, still side by side (``warm_ms`` per point, ``warm_median_ms_per_point`` per
tool): 2 rounds in which each tool, at each point and in a random order, is called 3 times in a
row and the last 2 calls are timed. Set against the interleaved times, it shows what the other
tools' work (their use of the CPU's caches) costs each call; it is what back-to-back calls, a
sweep, see. The goal of issue #25 (``goal``): ``decodex_band`` at least 2.5x faster than
llm-analysis on the points both predict, as the ratio of their medians and as the median of the
per-point ratios, interleaved (``met``) and warm.

Agreement: per point, each tool's predicted step time (s), decodex / peer, and the
memory-bandwidth floor (Decodex's weight + KV bytes read per device per step over the nominal HBM
bandwidth, 3.35e12 B/s H100 SXM, 2.039e12 B/s A100 80GB); a prediction below it is flagged
``below_floor``. Writes ``benchmarks/results/peers.json`` (atomically) and prints a short table.
``--quick``: 1 round on 8 points (batch 8, context 2048).

This script is longer than the project's 420-line module rule: it is one file a reader runs, with
the three tools' adapters, the timing loop and the report side by side.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.metadata
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from report import RESULTS  # noqa: E402

from decodex.api import estimate as banded_estimate  # noqa: E402
from decodex.sim import estimate  # noqa: E402
from decodex.workloads.catalog import load_model, model_reaching  # noqa: E402
from decodex.workloads.parallelism import Parallelism  # noqa: E402

PRECISION = "bf16"
BATCHES = (1, 8, 32, 64)
CONTEXTS = (512, 2048, 8192)
QUICK_BATCHES = (8,)
QUICK_CONTEXTS = (2048,)
ROUNDS = 5
WARM_ROUNDS = 2  # rounds of the warm pass (_timed_warm)
WARM_CALLS = 3  # calls per tool and point in a turn of the warm pass; the first is not counted
GOAL_RATIO = 2.5  # issue #25: the estimate with its band at least this much faster than llm-analysis
ORDER_SEED = 20261204  # the tools' order at each point and round (numpy.random.default_rng)


@dataclass(frozen=True)
class ModelNames:
    """One model as each tool names it (``None``: the tool ships no config for it) and its tensor
    parallel degree in the grid."""

    decodex: str
    genz: str | None
    llm_analysis: str | None
    tp: int


@dataclass(frozen=True)
class SystemNames:
    """One GPU as each tool names its preset, and its nominal HBM bandwidth in B/s (for the floor)."""

    decodex: str
    genz: str
    llm_analysis: str
    hbm_bytes_per_s: float


MODELS: dict[str, ModelNames] = {
    "Llama-2-7B": ModelNames("llama2-7b", "meta-llama/Llama-2-7B", "NousResearch_Llama-2-7b-hf", 1),
    # llm-analysis ships no Llama-2-13B; LLaMA-1 13B has the same layers (but 2,048 positions)
    "Llama-2-13B": ModelNames("llama2-13b", "meta-llama/Llama-2-13B", "decapoda-research_llama-13b-hf", 1),
    "Llama-2-70B": ModelNames("llama2-70b", "meta-llama/Llama-2-70B", "upstage_Llama-2-70b-instruct-v2", 8),
    "Llama-3.1-8B": ModelNames("llama3.1-8b", "meta-llama/Llama-3.1-8B", None, 1),
}

SYSTEMS: dict[str, SystemNames] = {
    "H100-SXM": SystemNames("h100-sxm", "H100_GPU", "h100-sxm-80gb", 3.35e12),
    "A100-80G": SystemNames("a100-80g", "A100_80GB_GPU", "a100-sxm-80gb", 2.039e12),
}


@dataclass(frozen=True)
class Point:
    """One design point: model and system (keys of MODELS and SYSTEMS), batch size (requests),
    context (tokens cached per request) and tensor parallel degree."""

    model: str
    system: str
    batch: int
    context: int
    tp: int


# what a tool returns for a point: the step time in s and facts to keep with the point
Prediction = tuple[float, dict[str, Any]]


@dataclass
class Tool:
    """A timed tool: ``predict`` gives one decode step's time (s) at a point; ``available`` is false
    (and ``predict`` None) when its package is missing, ``note`` then says why. ``compared``: whether
    its prediction is set against Decodex's (not for decodex itself or decodex_band)."""

    name: str
    package: str
    available: bool
    version: str | None
    predict: Callable[[Point], Prediction] | None = None
    note: str = ""
    compared: bool = True


def grid(quick: bool = False) -> list[Point]:
    """The benchmark's points in timing order: models x systems x batch sizes x contexts (tokens);
    ``quick``: one batch size and one context (8 points)."""
    batches, contexts = (QUICK_BATCHES, QUICK_CONTEXTS) if quick else (BATCHES, CONTEXTS)
    return [Point(model, system, batch, context, names.tp)
            for model, names in MODELS.items() for system in SYSTEMS
            for batch in batches for context in contexts]


def package_version(package: str) -> str | None:
    """The installed version of the distribution ``package``, or None when it is not installed."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _decodex_predict(func: Callable[..., Any]) -> Callable[[Point], Prediction]:
    """A Decodex ``estimate`` (raw or banded) as a predictor: step time in s, plus the weight and
    KV bytes it reads per device per step (B) and whether the point fits in memory. A point past
    the model's position limit (Llama-2 at 8,192 tokens) is priced with the limit raised
    (:func:`decodex.workloads.catalog.model_reaching`), as the peers do; the catalog name otherwise."""

    beyond: dict[tuple[str, int], Any] = {}  # models whose window the point passes, raised once

    def model_for(point: Point) -> Any:
        name = MODELS[point.model].decodex
        if (name, point.context) not in beyond:
            model = model_reaching(name, point.context + 1)
            beyond[(name, point.context)] = name if model is load_model(name) else model
        return beyond[(name, point.context)]

    def predict(point: Point) -> Prediction:
        result = func(model_for(point), SYSTEMS[point.system].decodex, point.batch,
                      context=point.context, precision=PRECISION, parallelism=Parallelism(tp=point.tp))
        return result.step_time_s, {"weight_bytes": result.weight_bytes, "kv_bytes": result.kv_bytes,
                                    "fits": result.fits, "reason": result.reason}

    return predict


def decodex_tools() -> list[Tool]:
    """Decodex's two entry points: the raw simulator (``decodex``, the reference of every ratio) and
    ``decodex.api.estimate`` with the error band (``decodex_band``); times in s."""
    version = package_version("decodex")
    return [Tool("decodex", "decodex", True, version, _decodex_predict(estimate), "decodex.sim.estimate", False),
            Tool("decodex_band", "decodex", True, version, _decodex_predict(banded_estimate),
                 "decodex.api.estimate (with the error band)", False)]


def _import_failure(package: str, exc: Exception) -> str:
    """Why ``package`` cannot be used, from the exception its import raised."""
    if isinstance(exc, ModuleNotFoundError) and package_version(package) is None:
        return f"{package} is not installed"
    return f"{package} failed to import ({_error(exc)})"


def unavailable(name: str, package: str, reason: str) -> Tool:
    """A peer that cannot be timed (``reason``: why); prints so in one line."""
    print(f"{name}: {reason}; not timed (pip install -e '.[bench]')")
    return Tool(name, package, False, package_version(package), None, reason)


def genz_tool() -> Tool:
    """GenZ's ``decode_moddeling`` as a predictor (its ``Latency`` is in ms; returned in s), or an
    unavailable tool when ``genz-llm`` is missing or fails to import."""
    try:
        from GenZ import decode_moddeling
    except Exception as exc:  # a missing package, or one that breaks on import
        return unavailable("genz", "genz-llm", _import_failure("genz-llm", exc))

    def predict(point: Point) -> Prediction:
        name = MODELS[point.model].genz
        if name is None:
            raise LookupError(f"{point.model}: GenZ ships no config for it")
        out = decode_moddeling(model=name, batch_size=point.batch, input_tokens=point.context, output_tokens=1,
                               Bb=1, system_name=SYSTEMS[point.system].genz, bits=PRECISION,
                               tensor_parallel=point.tp)
        return out["Latency"] * 1e-3, {}

    return Tool("genz", "genz-llm", True, package_version("genz-llm"), predict,
                "GenZ.decode_moddeling(Bb=1, output_tokens=1)")


def llm_analysis_tool() -> Tool:
    """llm-analysis's ``infer`` as a predictor (``decode_latency``, s), or an unavailable tool when
    ``llm-analysis`` is missing or fails to import. Models without a built-in config fail at once
    (no Hugging Face Hub look-up)."""
    try:
        from llm_analysis import config as la_config
        from llm_analysis.analysis import infer
    except Exception as exc:  # a missing package, or one that breaks on import
        return unavailable("llm_analysis", "llm-analysis", _import_failure("llm-analysis", exc))

    def predict(point: Point) -> Prediction:
        name = MODELS[point.model].llm_analysis
        if name is None or name not in la_config.model_configs:
            raise LookupError(f"{point.model}: no built-in llm-analysis model config (a Hub look-up is not tried)")
        out = infer(model_name=name, gpu_name=SYSTEMS[point.system].llm_analysis, dtype_name="w16a16e16",
                    log_level="ERROR", batch_size_per_gpu=point.batch, tp_size=point.tp, seq_len=point.context,
                    num_tokens_to_generate=1)
        return float(out["decode_latency"]), {}

    return Tool("llm_analysis", "llm-analysis", True, package_version("llm-analysis"), predict,
                "llm_analysis.analysis.infer(num_tokens_to_generate=1) decode_latency")


def all_tools() -> list[Tool]:
    """Decodex's two entry points, then GenZ and llm-analysis (unavailable ones included)."""
    return [*decodex_tools(), genz_tool(), llm_analysis_tool()]


def _error(exc: BaseException) -> str:
    """An exception as one line of at most 300 characters."""
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:300]


def time_tools(points: Sequence[Point], tools: Sequence[Tool], rounds: int,
               progress: bool = True) -> dict[str, list[dict[str, Any]]]:
    """Time every available tool on every point, ``rounds`` times, interleaved point by point.

    Returns, per tool name, one entry per point: ``seconds`` (the call's wall time in each round, s),
    ``step_time_s`` and ``extra`` (the prediction, from the first round) or ``error`` (the first
    failure's message; a point that fails in any round counts as failed).
    """
    live = [tool for tool in tools if tool.available and tool.predict is not None]
    warmed: set[tuple[str, str]] = set()
    for point in points:  # first calls load configs: once per tool and (model, system)
        if (point.model, point.system) in warmed:
            continue
        warmed.add((point.model, point.system))
        for tool in live:
            with contextlib.suppress(Exception):  # a failure: the timed calls record it
                tool.predict(point)
    runs: dict[str, list[dict[str, Any]]] = {
        tool.name: [{"seconds": [], "step_time_s": None, "extra": {}, "error": None} for _ in points] for tool in live}
    # the heap left by the imports and warm-up (pandas, the peers' modules: ~10^5 objects) goes to the
    # permanent generation, so that a full collection set off by one tool's garbage does not charge
    # whichever call it lands in with rescanning it (~0.1 s); each tool's own garbage is still collected
    gc.collect()
    gc.freeze()
    try:
        _timed_rounds(points, live, rounds, runs, progress)
        _timed_warm(points, live, runs)
    finally:
        gc.unfreeze()
    return runs


def _timed_warm(points: Sequence[Point], live: Sequence[Tool], runs: dict[str, list[dict[str, Any]]]) -> None:
    """Each tool warm, still side by side: :data:`WARM_ROUNDS` rounds over the points; at each point
    the tools in a seeded random order, each called :data:`WARM_CALLS` times in a row on it and the
    calls after the first timed (``warm_seconds``, s). The first call of a turn follows another
    tool and pays for refilling the CPU's caches (GenZ's 80 ms call leaves them cold); the next ones
    show the tool's own speed, as a sweep's back-to-back calls see it, under the same machine
    conditions as the other tools' (unlike a pass of each tool on its own, one after another, which
    a change of load on the machine between the passes would tilt)."""
    order = np.random.default_rng(ORDER_SEED + 1)
    for _ in range(WARM_ROUNDS):
        for index, point in enumerate(points):
            for position in order.permutation(len(live)):
                tool = live[position]
                entry = runs[tool.name][index]
                if entry["error"] is not None:  # failed in the interleaved rounds: already recorded
                    continue
                for call in range(WARM_CALLS):
                    start = time.perf_counter()
                    try:
                        tool.predict(point)
                    except Exception:  # a failure here is not a timing
                        break
                    if call:
                        entry.setdefault("warm_seconds", []).append(time.perf_counter() - start)


def _timed_rounds(points: Sequence[Point], live: Sequence[Tool], rounds: int, runs: dict[str, list[dict[str, Any]]],
                  progress: bool) -> None:
    """The timed part of ``time_tools``: fills ``runs`` (call times in s)."""
    order = np.random.default_rng(ORDER_SEED)
    for round_index in range(rounds):
        round_start = time.perf_counter()
        for index, point in enumerate(points):
            for position in order.permutation(len(live)):  # no tool always follows the same one
                tool = live[position]
                start = time.perf_counter()
                try:
                    outcome: Prediction | Exception = tool.predict(point)
                except Exception as exc:  # a peer's refusal or bug: recorded, never fatal
                    outcome = exc
                elapsed = time.perf_counter() - start
                entry = runs[tool.name][index]
                entry["seconds"].append(elapsed)
                if isinstance(outcome, Exception):
                    entry["error"] = entry["error"] or _error(outcome)
                elif entry["step_time_s"] is None:
                    entry["step_time_s"], entry["extra"] = float(outcome[0]), outcome[1]
        if progress:
            took = time.perf_counter() - round_start
            print(f"round {round_index + 1}/{rounds}: {len(points)} points in {took:.1f} s", flush=True)


def _p90(values: Sequence[float]) -> float:
    """The 90th percentile of ``values`` (nearest rank, as benchmarks/estimate.py takes it)."""
    ordered = sorted(values)
    return ordered[min(int(0.9 * len(ordered)), len(ordered) - 1)]


def _median_or_none(values: Sequence[float]) -> float | None:
    """The median of ``values``, or None when there are none."""
    return statistics.median(values) if values else None


def build_report(points: Sequence[Point], tools: Sequence[Tool], runs: dict[str, list[dict[str, Any]]],
                 rounds: int) -> dict[str, Any]:
    """The JSON report from ``time_tools``'s runs: grid, per-tool summary (ms per point), timing
    ratios (peer time / decodex time), agreement (decodex / peer step time) and one entry per point
    (step times and floor in s, call times in ms)."""
    per_point: list[dict[str, Any]] = []
    for index, point in enumerate(points):
        reference = runs.get("decodex", [{}] * len(points))[index]
        extra = reference.get("extra") or {}
        floor = None
        if reference.get("error") is None and "weight_bytes" in extra:
            floor = (extra["weight_bytes"] + extra["kv_bytes"]) / SYSTEMS[point.system].hbm_bytes_per_s
        decodex_s = reference.get("step_time_s") if reference.get("error") is None else None
        entry: dict[str, Any] = {
            "model": point.model, "system": point.system, "batch": point.batch, "context": point.context,
            "tp": point.tp, "floor_s": floor, "weight_bytes": extra.get("weight_bytes"),
            "kv_bytes": extra.get("kv_bytes"), "decodex_fits": extra.get("fits"), "tools": {}}
        for tool in tools:
            if tool.name not in runs:
                entry["tools"][tool.name] = {"ok": False, "step_time_s": None, "ms": None,
                                             "error": f"not available: {tool.note}"}
                continue
            run = runs[tool.name][index]
            ok = run["error"] is None
            result: dict[str, Any] = {
                "ok": ok, "step_time_s": run["step_time_s"] if ok else None,
                "ms": 1e3 * statistics.median(run["seconds"]) if ok and run["seconds"] else None,
                "warm_ms": 1e3 * statistics.median(run["warm_seconds"]) if ok and run.get("warm_seconds")
                else None,
                "error": run["error"]}
            if tool.compared:
                both = ok and decodex_s is not None and run["step_time_s"]
                result["decodex_over_peer"] = decodex_s / run["step_time_s"] if both else None
                result["below_floor"] = (run["step_time_s"] < floor) if ok and floor is not None else None
            entry["tools"][tool.name] = result
        per_point.append(entry)

    summary: dict[str, Any] = {}
    for tool in tools:
        times = [p["tools"][tool.name]["ms"] for p in per_point if p["tools"][tool.name]["ok"]]
        warm = [p["tools"][tool.name]["warm_ms"] for p in per_point if p["tools"][tool.name].get("warm_ms")]
        summary[tool.name] = {
            "available": tool.available, "package": tool.package, "version": tool.version, "call": tool.note,
            "median_ms_per_point": _median_or_none(times), "p90_ms_per_point": _p90(times) if times else None,
            "warm_median_ms_per_point": _median_or_none(warm),
            "points_ok": len(times), "points_failed": len(per_point) - len(times)}

    ratios: dict[str, Any] = {}
    agreement: dict[str, Any] = {}
    base = summary.get("decodex", {}).get("median_ms_per_point")
    base_warm = summary.get("decodex", {}).get("warm_median_ms_per_point")
    for tool in tools:
        if tool.name == "decodex":
            continue
        paired = [p["tools"][tool.name]["ms"] / p["tools"]["decodex"]["ms"] for p in per_point
                  if p["tools"][tool.name]["ok"] and p["tools"].get("decodex", {}).get("ok")]
        own = summary[tool.name]["median_ms_per_point"]
        own_warm = summary[tool.name]["warm_median_ms_per_point"]
        ratios[tool.name] = {
            "median_ms_over_decodex": own / base if own is not None and base else None,
            "warm_median_ms_over_decodex": own_warm / base_warm if own_warm is not None and base_warm else None,
            "median_per_point_ratio": _median_or_none(paired), "points": len(paired)}
        if not tool.compared:
            continue
        values = [p["tools"][tool.name]["decodex_over_peer"] for p in per_point
                  if p["tools"][tool.name].get("decodex_over_peer") is not None]
        flags = [p["tools"][tool.name]["below_floor"] for p in per_point
                 if p["tools"][tool.name].get("below_floor") is not None]
        agreement[tool.name] = {
            "median_decodex_over_peer": _median_or_none(values), "min_decodex_over_peer": min(values, default=None),
            "max_decodex_over_peer": max(values, default=None), "points_compared": len(values),
            "points_below_floor": sum(flags), "points_with_floor": len(flags)}

    return {
        "benchmark": "decode step time: decodex estimate vs GenZ and llm-analysis, interleaved point by point",
        "goal": speed_goal(per_point),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "python": platform.python_version()},
        "versions": {"decodex": package_version("decodex"), "genz-llm": package_version("genz-llm"),
                     "llm-analysis": package_version("llm-analysis")},
        "rounds": rounds,
        "grid": {"models": {label: vars(names) for label, names in MODELS.items()},
                 "systems": {label: vars(names) for label, names in SYSTEMS.items()},
                 "batch": sorted({p.batch for p in points}), "context": sorted({p.context for p in points}),
                 "precision": PRECISION, "points": len(points)},
        "summary": summary,
        "ratios": ratios,
        "agreement": agreement,
        "points": per_point,
    }


def speed_goal(per_point: Sequence[dict[str, Any]], peer: str = "llm_analysis", ours: str = "decodex_band",
               target: float = GOAL_RATIO) -> dict[str, Any]:
    """Issue #25's goal: ``ours`` (the estimate with its error band) at least ``target`` times
    faster than ``peer``, on the points both predicted: the ratio of their median ms per point and
    the median of the per-point ratios, interleaved and warm; ``met`` when both interleaved
    figures reach ``target`` (the stricter reading)."""
    both = [p["tools"] for p in per_point if p["tools"].get(peer, {}).get("ok") and p["tools"].get(ours, {}).get("ok")]

    def ratios(key: str) -> tuple[float | None, float | None]:
        pairs = [(t[peer][key], t[ours][key]) for t in both if t[peer].get(key) and t[ours].get(key)]
        if not pairs:
            return None, None
        of_medians = statistics.median(a for a, _ in pairs) / statistics.median(b for _, b in pairs)
        return of_medians, statistics.median(a / b for a, b in pairs)

    interleaved, interleaved_per_point = ratios("ms")
    warm, warm_per_point = ratios("warm_ms")
    met = None if interleaved is None else bool(interleaved >= target and interleaved_per_point >= target)
    return {"statement": f"{ours} at least {target}x faster than {peer}, side by side, on the points both predict",
            "target_ratio": target, "points": len(both), "interleaved_ratio": interleaved,
            "interleaved_ratio_per_point": interleaved_per_point, "warm_ratio": warm,
            "warm_ratio_per_point": warm_per_point, "met": met}


def write_json(report: dict[str, Any], path: Path) -> Path:
    """Write ``report`` to ``path`` atomically (a ``.tmp`` file beside it, then ``os.replace``);
    returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(temporary, path)
    return path


def _fmt(value: float | None, width: int, digits: int) -> str:
    """``value`` with ``digits`` decimals, right-aligned in ``width`` characters; ``-`` for None."""
    return ("-" if value is None else f"{value:.{digits}f}").rjust(width)


def table(report: dict[str, Any]) -> str:
    """A short text table of the report: per tool, ms per point (median, p90), points ok/failed,
    time over decodex's, and the median decodex / peer step time with the points below the floor."""
    lines = [f"{'tool':<13} {'version':<8} {'ms/pt':>8} {'p90':>8} {'warm':>8} {'ok':>4} {'fail':>4} "
             f"{'x decodex':>9} {'dx/peer':>8} {'<floor':>7}"]
    for name, row in report["summary"].items():
        ratio = report["ratios"].get(name, {}).get("median_ms_over_decodex")
        agree = report["agreement"].get(name, {})
        floor = f"{agree['points_below_floor']}/{agree['points_with_floor']}" if agree else "-"
        if not row["available"]:
            lines.append(f"{name:<13} {'-':<8} not available: {row['call']}")
            continue
        lines.append(f"{name:<13} {row['version'] or '-':<8} {_fmt(row['median_ms_per_point'], 8, 3)} "
                     f"{_fmt(row['p90_ms_per_point'], 8, 3)} {_fmt(row['warm_median_ms_per_point'], 8, 3)} "
                     f"{row['points_ok']:>4} {row['points_failed']:>4} "
                     f"{_fmt(ratio, 9, 2)} {_fmt(agree.get('median_decodex_over_peer'), 8, 3)} {floor:>7}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark (``--rounds``, ``--quick``, ``--out``), write the JSON report, print the
    table; returns the report (times in ms per point, step times in s)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=None, help=f"timing rounds (default {ROUNDS}; --quick: 1)")
    parser.add_argument("--quick", action="store_true", help="1 round on 8 points (batch 8, context 2048)")
    parser.add_argument("--out", type=Path, default=RESULTS / "peers.json", help="the JSON report's path")
    args = parser.parse_args(argv)
    rounds = args.rounds if args.rounds is not None else (1 if args.quick else ROUNDS)
    if rounds < 1:
        parser.error("--rounds: at least 1")
    points = grid(quick=args.quick)
    tools = all_tools()
    runs = time_tools(points, tools, rounds)
    report = build_report(points, tools, runs, rounds)
    path = write_json(report, args.out)
    print(table(report))
    goal = report["goal"]
    if goal["interleaved_ratio"] is not None:
        print(f"goal ({goal['statement']}): interleaved {goal['interleaved_ratio']:.2f}x "
              f"(per point {goal['interleaved_ratio_per_point']:.2f}x), warm {goal['warm_ratio']:.2f}x "
              f"(per point {goal['warm_ratio_per_point']:.2f}x) on {goal['points']} points: "
              f"{'met' if goal['met'] else 'not met'}")
    print(f"wrote {path}")
    return report


if __name__ == "__main__":
    main()
