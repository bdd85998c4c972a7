"""End-to-end serving throughput against TensorRT-LLM's published table (``decodex validate published``).

``validation/data/published-gpu/trtllm_perf_overview_v0.17.csv`` holds 131 rows of NVIDIA's
TensorRT-LLM 0.17 performance overview: output tokens/s of ``trtllm-bench`` in max-throughput
mode (every request submitted at once, fixed prompt and output lengths, ``num_requests``
requests) for Llama-3.1 8B/70B/405B on H100 SXM, H200 and A100 at the listed tensor-parallel
size and precision. Each row is run through :func:`sim.serving.api.serve` the same way: the
same requests all arriving at 0 s, the ``trtllm`` serving software (in-flight batching, the whole
request's KV blocks reserved at admission as TensorRT-LLM's ``GUARANTEED_NO_EVICT``, KV cache a
fraction of the memory weights and activations leave, its host time per iteration), the row's
tensor-parallel size on the catalog's 8-GPU system of that GPU, and the maximum batch size and
token budget that trtllm-bench's build heuristic picks for the row (:func:`trtllm_bench_limits`).
Predicted throughput = output tokens / makespan.

Rows are split by a rule fixed before any fit: the nine (input, output) length pairs in order of
input then output length alternate ``fit`` / ``check`` (the first is ``fit``), so both halves hold
every GPU, model and parallel degree. The host time per iteration of ``trtllm.toml`` is fitted on
the ``fit`` rows only (:func:`fit_host_overhead`); the ``check`` rows say how well it holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from decodex.core.errors import ArgumentError, DecodexError
from decodex.sim.serving.api import serve
from decodex.sim.serving.software import ServingSoftware, load_software
from decodex.sim.serving.workload import Lengths, Workload
from decodex.validation.published_gpu import DATA_DIR, error_stats, read_published_csv
from decodex.workloads.catalog import load_model
from decodex.workloads.parallelism import Parallelism

TRTLLM_FILE = "trtllm_perf_overview_v0.17.csv"
TRTLLM_MODELS = {"llama-3.1-8b": "llama3.1-8b", "llama-3.1-70b": "llama3.1-70b", "llama-3.1-405b": "llama3.1-405b"}
TRTLLM_SYSTEMS = {"H100": "8x-h100-sxm", "H200": "8x-h200", "A100": "8x-a100-80g"}
# the table's precisions as TensorRT-LLM builds them: "fp8" = `--quantization FP8` through NVIDIA
# ModelOpt, FP8 weights, activations and KV cache (build.py sets kv_cache_quant_algo = FP8) with the
# LM head left out of the quantization ("*lm_head*" disabled in _default_disabled_quantizer_cfg,
# NVIDIA/TensorRT-Model-Optimizer modelopt/torch/quantization/config.py @ 103b1bb) and the
# embedding table unquantized; "fp16": everything in fp16
TRTLLM_PRECISIONS = {"fp8": "w=fp8,a=fp8,kv=fp8,head=bf16", "fp16": "fp16"}
TRTLLM_COLUMNS = ("model", "gpu", "tp", "precision", "isl", "osl", "num_requests", "measured_output_tok_s",
                  "repo", "commit", "path")
SOFTWARE = "trtllm"
MEMORY_TIGHT = 0.8  # a row is memory-tight when the weights take more than this share of the memory

# trtllm-bench sizes each engine from the GPU's NVML total memory (nvidia-smi's, in MiB): H100 80GB
# HBM3 81559 MiB (NVIDIA/nccl issue #1264), H200 143771 MiB (sgl-project/sglang issue #3196),
# A100-SXM4-80GB 81920 MiB (modal-labs/modal-client PR #2797)
NVML_TOTAL_MIB = {"H100": 81559, "H200": 143771, "A100": 81920}
# tensorrt_llm/bench/build/tuning.py (v0.17 era): bytes per weight of the engine, its caps and fraction
ENGINE_BYTES_PER_PARAM = {"fp8": 1.0, "fp16": 2.0, "bf16": 2.0}
TUNING_MAX_BATCH = 4096
TUNING_MAX_TOKENS = 32768
TUNING_KV_FRACTION = 0.95


# tuning.py's rounding: (below this value, round up to a multiple of this step, at least this)
BATCH_STEPS = ((256, 32, 64), (1024, 128, 0), (float("inf"), 256, 0))
TOKEN_STEPS = ((4096, 256, 2048), (8192, 512, 0), (float("inf"), 1024, 0))


def _bucket(value: float, steps: tuple[tuple[float, int, int], ...]) -> int:
    """``value`` rounded up as trtllm-bench's heuristic rounds it (:data:`BATCH_STEPS`)."""
    limit, step, floor = next(s for s in steps if value < s[0])
    del limit
    return max(floor, int(step * np.ceil(value / step)))


def trtllm_bench_limits(model: str, gpu: str, tp: int, precision: str, isl: int, osl: int) -> tuple[int, int]:
    """``(max_batch_size, max_num_tokens)`` that trtllm-bench's build heuristic picks for a row
    (``finetune_setting`` of tensorrt_llm/bench/build/tuning.py, v0.17 era): the requests whose
    whole sequences fit in 0.95 of the memory the weights leave (NVML total, GiB; FP8 KV cache
    with FP8 weights), at most 4096; tokens = batch x (1 + isl/osl), at most 32768; both rounded
    up to its steps."""
    config = load_model(TRTLLM_MODELS[model])
    gib = 1024.0 ** 3
    engine = config.parameter_count() * ENGINE_BYTES_PER_PARAM[precision] / gib
    total = NVML_TOTAL_MIB[gpu] * 1024.0 ** 2 / gib * tp
    kv_element = 1.0 if precision == "fp8" else 2.0
    attention = config.attention
    per_token = 2 * config.num_layers * max(tp, attention.num_kv_heads) * attention.head_dim * kv_element / gib
    requests = (total - engine) * TUNING_KV_FRACTION / per_token / (isl + osl)
    raw_batch = min(requests, TUNING_MAX_BATCH)
    raw_tokens = min(raw_batch * (1 + isl / osl), TUNING_MAX_TOKENS)
    batch = _bucket(raw_batch, BATCH_STEPS)
    tokens = _bucket(raw_tokens, TOKEN_STEPS)
    return batch, tokens


def load_trtllm_rows(data_dir: Path = DATA_DIR) -> pd.DataFrame:
    """The TensorRT-LLM rows with ``split`` (``fit``/``check``, see the module docstring);
    ArgumentError naming the file when it is missing or malformed."""
    frame = read_published_csv(data_dir, TRTLLM_FILE, TRTLLM_COLUMNS)
    pairs = sorted({(int(i), int(o)) for i, o in zip(frame["isl"], frame["osl"], strict=True)})
    fit_pairs = set(pairs[::2])
    split = ["fit" if (int(i), int(o)) in fit_pairs else "check"
             for i, o in zip(frame["isl"], frame["osl"], strict=True)]
    return frame.assign(split=split)


def host_throughput(output_tokens: Any, device_s: Any, iterations: Any, request_iterations: Any,
                    iteration_s: float, request_s: float) -> Any:
    """Output tokens/s of a run whose requests all arrive at 0 s, with host time ``iteration_s``
    per iteration and ``request_s`` per request in an iteration (s): the schedule does not depend
    on them, so the makespan is the device time plus the host time (scalars or arrays)."""
    return output_tokens / (device_s + iteration_s * iterations + request_s * request_iterations)


@dataclass(frozen=True)
class ServingRun:
    """What one row's simulated run gives: output tokens, the makespan without host time (s), the
    iterations and the requests summed over iterations, the KV blocks and the weights' share."""

    output_tokens: float
    device_s: float
    iterations: int
    request_iterations: float
    kv_blocks: int
    weight_share: float

    def throughput(self, iteration_s: float, request_s: float) -> float:
        """Output tokens/s with host time ``iteration_s`` per iteration and ``request_s`` per
        request in an iteration (s): :func:`host_throughput`."""
        return host_throughput(self.output_tokens, self.device_s, self.iterations, self.request_iterations,
                               iteration_s, request_s)


def run_row(row: Any, software: ServingSoftware) -> ServingRun:
    """Serve one table row with ``software`` whose host times are set to zero (they are added back
    by :meth:`ServingRun.throughput`); DecodexError when the model cannot run there."""
    bare = replace(software, iteration_host_overhead_s=0.0, request_host_overhead_s=0.0)
    workload = Workload(arrival="all-at-once", input_lengths=Lengths.fixed(int(row.isl)),
                        output_lengths=Lengths.fixed(int(row.osl)), name="trtllm-bench")
    max_batch, max_tokens = trtllm_bench_limits(str(row.model), str(row.gpu), int(row.tp), str(row.precision),
                                                int(row.isl), int(row.osl))
    result = serve(TRTLLM_MODELS[row.model], TRTLLM_SYSTEMS[row.gpu], workload, requests=int(row.num_requests),
                   software=bare, precision=TRTLLM_PRECISIONS[str(row.precision)],
                   parallelism=Parallelism(tp=int(row.tp)),
                   max_batch=max_batch, chunk=max_tokens)
    batch = result.iteration_decodes + result.iteration_prefills
    return ServingRun(output_tokens=float(result.total_output_tokens), device_s=float(result.makespan_s),
                      iterations=int(result.iteration_duration_s.size), request_iterations=float(batch.sum()),
                      kv_blocks=int(result.kv.total_blocks),
                      weight_share=float(result.kv.weight_bytes / result.kv.capacity_bytes))


RUN_COLUMNS = ("output_tokens", "device_s", "iterations", "request_iterations", "kv_blocks", "weight_share")


def simulate_trtllm(rows: pd.DataFrame, software: str | ServingSoftware = SOFTWARE) -> pd.DataFrame:
    """``rows`` with their runs (:data:`RUN_COLUMNS` of :class:`ServingRun`, NaN when a row could not
    run), ``reason`` (why not, else empty) and ``memory_tight`` (weights above MEMORY_TIGHT of the
    memory)."""
    spec = load_software(software)
    values: dict[str, list[float]] = {column: [] for column in RUN_COLUMNS}
    reasons: list[str] = []
    for row in rows.itertuples(index=False):
        try:
            run = run_row(row, spec)
            reasons.append("")
        except DecodexError as error:
            run = None
            reasons.append(str(error))
        for column in RUN_COLUMNS:
            values[column].append(float("nan") if run is None else float(getattr(run, column)))
    out = rows.assign(**values, reason=reasons)
    return out.assign(memory_tight=out["weight_share"] > MEMORY_TIGHT)


def _throughput(frame: pd.DataFrame, iteration_s: float, request_s: float) -> np.ndarray:
    """Output tokens/s of simulated rows with those host times (:func:`host_throughput`)."""
    return np.asarray(host_throughput(*(frame[c].to_numpy(dtype=float) for c in RUN_COLUMNS[:4]),
                                      iteration_s, request_s), dtype=float)


def predict_trtllm(simulated: pd.DataFrame, software: str | ServingSoftware = SOFTWARE) -> pd.DataFrame:
    """``simulated`` with ``predicted_output_tok_s`` and ``error`` (predicted / measured - 1) at the
    host times of ``software``; NaN for rows that could not run."""
    spec = load_software(software)
    out = simulated.assign(predicted_output_tok_s=_throughput(simulated, spec.iteration_host_overhead_s,
                                                              spec.request_host_overhead_s))
    return out.assign(error=out["predicted_output_tok_s"] / out["measured_output_tok_s"] - 1.0)


def fit_host_overhead(simulated: pd.DataFrame) -> dict[str, float]:
    """Host time per iteration and per request in an iteration (s, both >= 0) that minimize the
    mean squared log error of throughput over the ``fit`` rows of ``simulated`` (a
    :func:`simulate_trtllm` or :func:`validate_trtllm` frame)."""
    from scipy.optimize import least_squares

    fit = simulated[(simulated["split"] == "fit") & simulated["device_s"].notna()]
    if fit.empty:
        raise ArgumentError("no fit rows ran; nothing to fit the host time on")
    measured = np.log(fit["measured_output_tok_s"].to_numpy(dtype=float))

    def residuals(x: np.ndarray) -> np.ndarray:
        return np.log(_throughput(fit, x[0] * 1e-3, x[1] * 1e-6)) - measured

    solution = least_squares(residuals, [0.5, 1.0], bounds=([0.0, 0.0], [100.0, 1000.0]))
    return {"iteration_host_overhead_s": float(f"{solution.x[0] * 1e-3:.4g}"),
            "request_host_overhead_s": float(f"{solution.x[1] * 1e-6:.4g}"),
            "rows": len(fit), "msle": float(np.mean(solution.fun ** 2))}


def trtllm_summary(compared: pd.DataFrame) -> dict[str, Any]:
    """MAPE, median and largest error overall, by split, GPU, model and memory-tightness; the rows
    that could not run with their reasons."""
    ran = compared[compared["reason"] == ""]
    summary: dict[str, Any] = {"all": error_stats(ran["error"])}
    for column in ("split", "gpu", "model", "memory_tight"):
        summary[f"by_{column}"] = {str(k): error_stats(g["error"]) for k, g in ran.groupby(column, sort=False)}
    summary["host_time_fit"] = "iteration and request host times of trtllm.toml fitted on the fit rows"
    summary["not_run"] = [{"model": r.model, "gpu": r.gpu, "tp": int(r.tp), "isl": int(r.isl), "osl": int(r.osl),
                           "reason": r.reason} for r in compared[compared["reason"] != ""].itertuples(index=False)]
    return summary


def trtllm_table(compared: pd.DataFrame) -> pd.DataFrame:
    """One line per row: the row's setting, measured and predicted tokens/s, error, split, and the
    run's figures (:data:`RUN_COLUMNS`, from which :func:`fit_host_overhead` refits)."""
    columns = ["model", "gpu", "tp", "precision", "isl", "osl", "num_requests", "measured_output_tok_s",
               "predicted_output_tok_s", "error", "split", "memory_tight", "reason", *RUN_COLUMNS]
    return compared[columns].reset_index(drop=True)


def validate_trtllm(data_dir: Path = DATA_DIR, *, rows: pd.DataFrame | None = None,
                    software: str | ServingSoftware = SOFTWARE) -> tuple[pd.DataFrame, Mapping[str, Any]]:
    """Run and compare the TensorRT-LLM rows (all, or ``rows``): the table and its summary."""
    simulated = simulate_trtllm(load_trtllm_rows(data_dir) if rows is None else rows, software)
    compared = predict_trtllm(simulated, software)
    return trtllm_table(compared), trtllm_summary(compared)
