"""Batch-1 decode against published measurements (``decodex validate published``).

``validation/data/published-gpu/batch1_decode.csv`` holds the tokens/s of gpt-fast
(pytorch-labs/gpt-fast README, BSD-3): Llama-2 7B/70B and Llama-3.1 8B/70B/405B at batch 1 on
A100-80GB SXM (power-limited to 330 W, hybrid cube mesh), decode compiled with CUDA graphs,
a 5-token prompt and 200 new tokens, in bf16, int8 weight-only and int4 weight-only (groups of 32,
bf16 scale and zero per group), on 1-8 GPUs with tensor parallelism. The tensor-parallel rows
were measured twice: with PyTorch's intra-node all-reduce (one-shot/two-shot kernels over
NVLink, ``allreduce = custom``; README at 32971d3) and, earlier, with NCCL (``nccl``; README at
d2c5d82). Two more rows are NVIDIA NIM's published inter-token latency of Llama-3.3-70B (the
Llama-3.1-70B architecture) in FP8 on 2x H100 at concurrency 1 (tokens/s = 1 / ITL).

Each row is compared with ``estimate`` for the same model, one request at the row's mean
context (gpt-fast: 5 + 200/2 tokens; NIM: prompt + half the output), the precision and the
tensor-parallel degree on the catalog's 8-GPU system of that GPU; NCCL rows on the same system
with its one-/two-shot all-reduce removed (the ring only). Predicted tokens/s = 1 / step time
(gpt-fast's 5-token prefill is one step among 200).

Split, fixed before any fit: the Llama-2-7B rows of the current README (``custom``/``none``)
are ``fit`` rows: its int8 and int4 rows fit ``weight_only_efficiency`` of the A100's tensor unit
(:func:`fit_decode_fields`). Every other row is ``check``; the tensor-parallel rows check the
one-/two-shot all-reduce latencies (taken from a kernel measurement, not fitted here) and the NCCL
rows the ring fitted on Vidur's all-reduce profiles.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from decodex.core.dtypes import DType
from decodex.hw_models.device import DeviceSpec
from decodex.hw_models.roofline import RooflineUnit
from decodex.hw_models.system import SystemSpec, load_system
from decodex.sim.estimate import estimate
from decodex.validation.published_gpu import DATA_DIR, error_stats, read_published_csv
from decodex.workloads.parallelism import Parallelism
from decodex.workloads.precision import Precision

GPT_FAST_FILE = "batch1_decode.csv"
GPT_FAST_COLUMNS = ("model", "gpu", "gpus", "precision", "allreduce", "context", "tok_s", "repo", "commit", "path")
GPT_FAST_MODELS = {"llama-2-7b": "llama2-7b", "llama-2-70b": "llama2-70b", "llama-3.1-8b": "llama3.1-8b",
                   "llama-3.1-70b": "llama3.1-70b", "llama-3.1-405b": "llama3.1-405b",
                   "llama-3.3-70b": "llama3.1-70b"}  # Llama-3.3-70B has Llama-3.1-70B's shapes
GPT_FAST_SYSTEM = "8x-a100-80g"
SYSTEMS = {"A100-80GB-330W": "8x-a100-80g", "H100": "8x-h100-sxm"}
# gpt-fast's formats: int8 weight-only with per-channel scales; int4 in groups of 32 with a bf16
# scale and zero per group: 4 + 2 x 16 / 32 = 5 stored bits per weight. NIM's FP8 profile is a
# TensorRT-LLM engine quantized with ModelOpt: the LM head stays 16-bit (as published_serving)
GPT_FAST_PRECISIONS = {"bf16": "bf16", "int8": "w8a16", "int4-g32": "w=int4,a=bf16,kv=bf16,wbits=5",
                       "fp8": "w=fp8,a=fp8,kv=fp8,head=bf16"}
PROMPT_TOKENS = 5
NEW_TOKENS = 200
MEAN_CONTEXT = PROMPT_TOKENS + NEW_TOKENS // 2  # gpt-fast rows
FIT_MODEL = "llama-2-7b"


def load_gpt_fast_rows(data_dir: Path = DATA_DIR) -> pd.DataFrame:
    """The gpt-fast rows with ``split`` (see the module docstring); ArgumentError naming the file
    when it is missing or malformed."""
    frame = read_published_csv(data_dir, GPT_FAST_FILE, GPT_FAST_COLUMNS)
    fit = (frame["model"] == FIT_MODEL) & (frame["allreduce"] != "nccl")
    return frame.assign(split=np.where(fit, "fit", "check"))


def _with_device(system: SystemSpec, device: DeviceSpec) -> SystemSpec:
    groups = tuple(dataclasses.replace(g, device=device) for g in system.groups)
    return dataclasses.replace(system, groups=groups)


def ring_only(system: SystemSpec) -> SystemSpec:
    """``system`` whose links offer no one-/two-shot all-reduce (every all-reduce an NCCL ring)."""
    device = system.primary_device
    links = {name: dataclasses.replace(link, custom_allreduce_latency_s=None) for name, link in device.links.items()}
    return _with_device(system, dataclasses.replace(device, links=links))


def with_decode_fields(system: SystemSpec, *, weight_only: Mapping[DType, float] | None = None,
                       custom_latency_s: float | None = None, custom_peer_latency_s: float | None = None) -> SystemSpec:
    """``system`` with the tensor unit's ``weight_only_efficiency`` and/or the NVLink one-/two-shot
    latencies replaced (the fields :func:`fit_decode_fields` fits)."""
    device = system.primary_device
    units = dict(device.units)
    if weight_only is not None:
        tensor = units["tensor"]
        assert isinstance(tensor, RooflineUnit)
        units["tensor"] = dataclasses.replace(tensor, weight_only_efficiency=dict(weight_only))
    links = dict(device.links)
    if custom_latency_s is not None or custom_peer_latency_s is not None:
        link = links["nvlink"]
        links["nvlink"] = dataclasses.replace(
            link, custom_allreduce_latency_s=custom_latency_s if custom_latency_s is not None
            else link.custom_allreduce_latency_s,
            custom_allreduce_peer_latency_s=custom_peer_latency_s if custom_peer_latency_s is not None
            else link.custom_allreduce_peer_latency_s)
    return _with_device(system, dataclasses.replace(device, units=units, links=links))


def predict_row(row: Any, system: SystemSpec) -> float:
    """Predicted tokens/s of one row on ``system`` (1 / decode step time)."""
    target = ring_only(system) if row.allreduce == "nccl" else system
    result = estimate(GPT_FAST_MODELS[row.model], target, 1, context=int(row.context),
                      precision=Precision.parse(GPT_FAST_PRECISIONS[row.precision]),
                      parallelism=Parallelism(tp=int(row.gpus)))
    if not result.fits:
        return float("nan")
    return 1.0 / result.step_time_s


def predict_gpt_fast(rows: pd.DataFrame, system: SystemSpec | None = None) -> pd.DataFrame:
    """``rows`` with ``predicted_tok_s`` and ``error`` (predicted / measured - 1); on ``system``, or
    on each row's GPU's catalog system."""
    predicted = [predict_row(row, system or load_system(SYSTEMS[row.gpu])) for row in rows.itertuples(index=False)]
    out = rows.assign(predicted_tok_s=predicted)
    return out.assign(error=out["predicted_tok_s"] / out["tok_s"] - 1.0)


def fit_decode_fields(rows: pd.DataFrame) -> dict[str, float]:
    """Fit ``weight_only_efficiency`` of int8 and int4 on the one-GPU ``fit`` rows of those formats:
    the fraction in (0, 1] at which the prediction matches the measured tokens/s (1 when the
    prediction is already slower). The one-/two-shot all-reduce latencies are not fitted here:
    they come from a kernel measurement (hw_models/catalog/SOURCES.md) and the tensor-parallel
    rows check them."""
    from scipy.optimize import brentq

    base = load_system(GPT_FAST_SYSTEM)
    fit = rows[(rows["split"] == "fit") & (rows["gpus"] == 1)]
    factors: dict[DType, float] = {}
    for label, dtype in (("int8", DType.INT8), ("int4-g32", DType.INT4)):
        row = next(fit[fit["precision"] == label].itertuples(index=False))

        def gap(factor: float, row: Any = row, dtype: DType = dtype) -> float:
            system = with_decode_fields(base, weight_only={**factors, dtype: factor})
            return float(np.log(predict_row(row, system) / row.tok_s))

        factors[dtype] = 1.0 if gap(1.0) <= 0 else float(f"{brentq(gap, 0.05, 1.0, xtol=1e-6):.4g}")
    return {"int8": factors[DType.INT8], "int4": factors[DType.INT4]}


def gpt_fast_summary(compared: pd.DataFrame) -> dict[str, Any]:
    """MAPE, median and largest error overall, by split, tensor-parallel degree, precision and
    all-reduce; the rows that do not fit in memory."""
    ran = compared[compared["predicted_tok_s"].notna()]
    summary: dict[str, Any] = {"all": error_stats(ran["error"])}
    for column in ("split", "gpus", "precision", "allreduce"):
        summary[f"by_{column}"] = {str(k): error_stats(g["error"]) for k, g in ran.groupby(column, sort=False)}
    summary["tp_2_to_8"] = error_stats(ran.loc[ran["gpus"] > 1, "error"])
    summary["by_gpu"] = {str(k): error_stats(g["error"]) for k, g in ran.groupby("gpu", sort=False)}
    summary["not_run"] = [f"{r.model} {r.precision} x{r.gpus}: does not fit"
                          for r in compared[compared["predicted_tok_s"].isna()].itertuples(index=False)]
    return summary


def validate_gpt_fast(data_dir: Path = DATA_DIR) -> tuple[pd.DataFrame, Mapping[str, Any]]:
    """Every gpt-fast row compared: the table and its summary."""
    compared = predict_gpt_fast(load_gpt_fast_rows(data_dir))
    columns = ["model", "gpu", "gpus", "precision", "allreduce", "context", "tok_s", "predicted_tok_s", "error",
               "split"]
    return compared[columns].reset_index(drop=True), gpt_fast_summary(compared)
