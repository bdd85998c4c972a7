"""Runners of the FlightLLM reproduction (FPGA 2024): batch-1 decode on FPGAs against GPUs.

A *run* is one system serving one request at a time (batch 1) with a precision and mapper
options, over (input, output) length pairs. For a pair, the decode time is the sum of the step
times at contexts input .. input + output - 1, integrated from ``DECODE_SAMPLES`` evenly spaced
steps by the trapezoid rule (batch-1 decode step time is piecewise affine in the context: on the
FPGA the attention phases switch from stream- to MAC-bound and the scores gain an MV tile every
512 keys; against the sum of every step the rule is within 0.03 % on the catalog FPGAs,
tests/validation/test_flightllm_reproduction.py), and the prefill time is one step that
prefills the prompt.

- ``decode`` throughput = output tokens / decode time (the U280 demo's measure: step times at
  growing KV lengths);
- ``end_to_end`` throughput = output tokens / (prefill + decode time) (the artifact's
  ``profile/run.py`` table, which the VHK158-vs-GPU comparison comes from);
- energy per token = (prefill + decode energy) / output tokens, each step's energy from the step
  model (idle power over its time plus dynamic energy);
- cost efficiency = throughput / the device's ``purchase_usd``;
- HBM utilization = bytes the compute units move to or from HBM (weights, KV, activations when
  they go there) / decode time / peak bandwidth.

Values are means over the pairs. Runner configs name a ``run`` and a ``baseline`` as tables:
``{system, precision, options, mode}`` (``system``: a catalog name, or a SystemSpec from Python).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import numpy as np

from decodex.core.errors import ArgumentError
from decodex.hw_models.fpga import FpgaUnit
from decodex.hw_models.system import SystemSpec, load_system
from decodex.sim.estimate import evaluate, plan_step
from decodex.validation.reproduce import register_runner
from decodex.workloads.batch import Batch

DECODE_SAMPLES = 9
METRICS = ("throughput", "tokens_per_joule", "tokens_per_s_per_usd")


def _step(model: str, system: str | SystemSpec, precision: str, options: tuple[tuple[str, Any], ...], context: int,
          prefill: int) -> tuple[float, float, float, float]:
    """(time s, energy J, HBM bytes moved, peak HBM B/s) of a batch-1 decode step at ``context``
    cached tokens, or of prefilling ``prefill`` prompt tokens when ``prefill`` > 0 (cached for
    catalog systems)."""
    if isinstance(system, str):
        return _cached_step(model, system, precision, options, context, prefill)
    return _price_step(model, system, precision, options, context, prefill)


@lru_cache(maxsize=2048)
def _cached_step(model: str, system: str, precision: str, options: tuple[tuple[str, Any], ...], context: int,
                 prefill: int) -> tuple[float, float, float, float]:
    return _price_step(model, system, precision, options, context, prefill)


def _price_step(model: str, system: str | SystemSpec, precision: str, options: tuple[tuple[str, Any], ...],
                context: int, prefill: int) -> tuple[float, float, float, float]:
    batch = Batch.mixed([], [prefill]) if prefill else Batch.decode(1, context)
    plan = plan_step(model, system, batch, precision=precision, **dict(options))
    result = evaluate(plan)
    main = plan.system.primary_device.main_memory
    moved = 0.0
    for placement in plan.placements:
        if placement.unit is None:
            continue
        unit = placement.device.units[placement.unit]
        if placement.device.memories[unit.memory] is not main and unit.memory != "hbm":
            continue
        per_op = unit.moved_bytes(placement.op) if isinstance(unit, FpgaUnit) else placement.op.bytes
        moved += per_op * placement.template.repeat
    return result.step_time_s, result.energy_j, moved, main.bandwidth_bytes_per_s


def pair_figures(run: Mapping[str, Any], model: str, input_len: int, output_len: int) -> dict[str, float]:
    """Prefill and decode time (s) and energy (J), decode HBM bytes and the peak, for one pair."""
    system = run["system"] if isinstance(run["system"], SystemSpec) else str(run["system"])
    precision = str(run.get("precision", "fp16"))
    options = tuple(sorted(dict(run.get("options", {})).items()))
    contexts = np.linspace(input_len, input_len + output_len - 1, DECODE_SAMPLES).round().astype(int)
    steps = np.array([_step(model, system, precision, options, int(c), 0) for c in contexts])
    span = contexts[-1] - contexts[0]
    mean = np.trapezoid(steps[:, :3], contexts, axis=0) / span if span > 0 else steps[0, :3]
    prefill = _step(model, system, precision, options, 0, input_len)
    return {"decode_s": float(mean[0] * output_len), "decode_j": float(mean[1] * output_len),
            "decode_bytes": float(mean[2] * output_len), "peak_bytes_per_s": float(steps[0, 3]),
            "prefill_s": prefill[0], "prefill_j": prefill[1], "output": float(output_len)}


def run_metrics(run: Mapping[str, Any], model: str, pairs: list[list[int]]) -> dict[str, float]:
    """Mean over ``pairs`` of throughput (tokens/s, by the run's ``mode``), tokens per joule,
    tokens/s per purchase dollar and decode HBM utilization (fraction of peak)."""
    mode = str(run.get("mode", "decode"))
    if mode not in ("decode", "end_to_end"):
        raise ArgumentError(f"mode: {mode!r} not one of decode, end_to_end")
    price = load_system(run["system"]).primary_device.purchase_usd
    rows = []
    for input_len, output_len in pairs:
        f = pair_figures(run, model, int(input_len), int(output_len))
        seconds = f["decode_s"] + (f["prefill_s"] if mode == "end_to_end" else 0.0)
        joules = f["decode_j"] + (f["prefill_j"] if mode == "end_to_end" else 0.0)
        throughput = f["output"] / seconds
        rows.append({"throughput": throughput, "tokens_per_joule": f["output"] / joules,
                     "tokens_per_s_per_usd": throughput / price if price > 0 else float("nan"),
                     "hbm_utilization": f["decode_bytes"] / f["decode_s"] / f["peak_bytes_per_s"]})
    return {key: float(np.mean([r[key] for r in rows])) for key in rows[0]}


@register_runner("flightllm_value")
def flightllm_value(config: Mapping[str, Any]) -> float:
    """``metric`` (throughput, tokens_per_joule, tokens_per_s_per_usd, hbm_utilization) of ``run``
    on ``model`` over ``pairs``."""
    return run_metrics(config["run"], str(config["model"]), config["pairs"])[str(config.get("metric", "throughput"))]


@register_runner("flightllm_ratio")
def flightllm_ratio(config: Mapping[str, Any]) -> float:
    """``metric`` of ``run`` over the same metric of ``baseline`` (each a run table)."""
    metric = str(config.get("metric", "throughput"))
    if metric not in (*METRICS, "hbm_utilization"):
        raise ArgumentError(f"metric: {metric!r} not one of {', '.join((*METRICS, 'hbm_utilization'))}")
    ours = run_metrics(config["run"], str(config["model"]), config["pairs"])[metric]
    theirs = run_metrics(config["baseline"], str(config["model"]), config["pairs"])[metric]
    return ours / theirs
