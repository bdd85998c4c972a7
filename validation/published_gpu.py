"""Predictions against published GPU measurements (``decodex validate published``).

The measurements are copies of public data, with their provenance, in
``validation/data/published-gpu/`` (README.md there):

- ``vidur_attention_decode_a100.csv``: 766 decode-attention kernel times on one A100 (Vidur's
  profiler; Llama-2-7B with FlashAttention, Llama-3-8B with FlashInfer; tp 1-8, contexts 32-16k,
  batch 1-~300). Each row is compared with the ``attention`` operator of ``estimate`` for the same
  model, batch, context and tensor-parallel degree on ``a100-80g`` in fp16 (the kernel's own
  time: the operator's ``time_s`` for one layer).
- ``batch1_decode.csv`` (batch-1 decode, :mod:`validation.published_decode`) and
  ``trtllm_perf_overview_v0.17.csv`` (serving throughput, :mod:`validation.published_serving`);
  :func:`validate_published` runs all three.

Rows are split once, by a rule fixed before any fit: ``fit`` when the batch is odd, ``check`` when
it is even, so both halves span every model, parallel degree and context. A mechanism's data
fields may be fitted on the ``fit`` rows only; the ``check`` rows say how well it generalizes.
Errors are ``predicted / measured - 1``; MAPE is the mean of their absolute values. Size bands
follow the bytes the operator moves on one device (KV cache read plus activations).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from decodex.core.dtypes import DType
from decodex.core.errors import ArgumentError
from decodex.hw_models.decode_attention import DecodeAttentionKernel
from decodex.hw_models.device import DeviceSpec, load_device
from decodex.hw_models.system import DEVICES_DIR
from decodex.sim.estimate import estimate
from decodex.workloads.catalog import load_model
from decodex.workloads.parallelism import Parallelism

DATA_DIR = Path(__file__).resolve().parent / "data" / "published-gpu"
ATTENTION_FILE = "vidur_attention_decode_a100.csv"
MODELS = {"meta-llama/Llama-2-7b-hf": "llama2-7b", "meta-llama/Meta-Llama-3-8B": "llama3-8b"}
DEVICES = {"a100": "a100-80g"}
SIZE_BANDS = ((0.0, 32e6, "< 32 MB"), (32e6, 256e6, "32-256 MB"), (256e6, float("inf"), ">= 256 MB"))
ATTENTION_COLUMNS = ("file_key", "tp", "kv_cache_size", "batch_size", "attn_decode_median_ms", "gpu", "model",
                     "n_q_head", "n_kv_head", "head_dim", "backend", "repo", "commit", "path")


def read_published_csv(data_dir: Path, name: str, columns: tuple[str, ...]) -> pd.DataFrame:
    """The published-measurement file ``name`` under ``data_dir``; ArgumentError naming the file
    when it is missing or lacks one of ``columns``."""
    path = Path(data_dir) / name
    if not path.is_file():
        raise ArgumentError(f"{path}: not found (the published GPU measurements ship with Decodex)")
    frame = pd.read_csv(path)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ArgumentError(f"{path}: columns {missing} missing")
    return frame


def load_attention_rows(data_dir: Path = DATA_DIR) -> pd.DataFrame:
    """The decode-attention measurements, one row per (model, tp, context, batch); the time in
    seconds as ``measured_s``. ArgumentError naming the file when it is missing or malformed."""
    frame = read_published_csv(data_dir, ATTENTION_FILE, ATTENTION_COLUMNS)
    frame = frame.assign(measured_s=frame["attn_decode_median_ms"] * 1e-3)
    return frame.assign(split=np.where(frame["batch_size"] % 2 == 1, "fit", "check"))


def _model(name: str) -> Any:
    """The catalog model of a measured one, its window opened: Vidur profiles contexts beyond a
    model's own window (Llama-3-8B to 16k), and the kernel time does not depend on the window."""
    try:
        model = load_model(MODELS[name])
    except KeyError:
        raise ArgumentError(f"published attention rows: no catalog model for {name!r}") from None
    return dataclasses.replace(model, max_position_embeddings=1 << 20)


def predict_attention(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with ``predicted_s`` (the ``attention`` operator of one layer, s), ``bytes`` (B it
    moves on one device), ``error`` (predicted / measured - 1) and ``band``."""
    models: dict[str, Any] = {}
    predicted, moved = [], []
    for row in rows.itertuples(index=False):
        model = models.setdefault(row.model, _model(row.model))
        result = estimate(model, DEVICES[row.gpu], int(row.batch_size), context=int(row.kv_cache_size),
                          precision="fp16", parallelism=Parallelism(tp=int(row.tp)))
        record = next(r for r in result.records if r.name == "attention")
        predicted.append(record.time_s)
        moved.append(record.bytes)
    out = rows.assign(predicted_s=predicted, bytes=moved)
    out = out.assign(error=out["predicted_s"] / out["measured_s"] - 1.0)
    bands = np.full(len(out), "", dtype=object)
    for low, high, label in SIZE_BANDS:
        bands[(out["bytes"] >= low).to_numpy() & (out["bytes"] < high).to_numpy()] = label
    return out.assign(band=bands)


def error_stats(errors: Iterable[float]) -> dict[str, float]:
    """n, MAPE, median and largest |error| of the finite ``errors`` (fractions; NaN when none)."""
    values = np.asarray([e for e in errors if np.isfinite(e)], dtype=float)
    if not values.size:
        return {"n": 0, "mape": float("nan"), "median_error": float("nan"), "max_abs_error": float("nan")}
    return {"n": int(values.size), "mape": float(np.mean(np.abs(values))),
            "median_error": float(np.median(values)), "max_abs_error": float(np.max(np.abs(values)))}


def attention_summary(compared: pd.DataFrame) -> dict[str, Any]:
    """MAPE, median and largest error overall, by split, by size band and by GPU (fractions)."""
    summary: dict[str, Any] = {"all": error_stats(compared["error"])}
    for column in ("split", "band", "gpu", "model"):
        summary[f"by_{column}"] = {str(k): error_stats(g["error"]) for k, g in compared.groupby(column, sort=False)}
    return summary


PUBLISHED_GROUPS = ("attention", "decode", "serving")


def validate_published(data_dir: Path = DATA_DIR, groups: tuple[str, ...] = PUBLISHED_GROUPS,
                       progress: Any = None) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """The published comparisons of ``groups``: ``attention`` (A100 decode-attention kernels,
    Vidur), ``decode`` (batch-1 decode, gpt-fast on A100; :mod:`validation.published_decode`),
    ``serving`` (TensorRT-LLM 0.17 throughput table; :mod:`validation.published_serving`, minutes).
    Returns the compared rows and the summary per group. ``progress``: called with each group's
    name before it runs."""
    from decodex.validation.published_decode import validate_gpt_fast
    from decodex.validation.published_serving import validate_trtllm

    unknown = [g for g in groups if g not in PUBLISHED_GROUPS]
    if unknown:
        raise ArgumentError(f"groups: {unknown} not among {', '.join(PUBLISHED_GROUPS)}")
    tables: dict[str, pd.DataFrame] = {}
    summary: dict[str, Any] = {}
    for group in groups:
        if progress is not None:
            progress(group)
        if group == "attention":
            tables[group] = predict_attention(load_attention_rows(data_dir))
            summary[group] = attention_summary(tables[group])
        elif group == "decode":
            tables[group], summary[group] = validate_gpt_fast(data_dir)
        else:
            tables[group], summary[group] = validate_trtllm(data_dir)
    return tables, summary


def _catalog_device(name: str) -> DeviceSpec:
    return load_device(DEVICES_DIR / f"{name}.toml")


FIT_START = (12e-6, 3e-6, 1.5, 0.85)  # floor_s, block_overhead_s, block_bandwidth_share, memory_efficiency


def _kernel_times(rows: pd.DataFrame, kernel: DecodeAttentionKernel, bandwidth: float, peak: float) -> np.ndarray:
    """The kernel's time for each row, s: its model's heads on one device, fp16, and per (request,
    KV head) the bytes and FLOP the attention operator counts (workloads/ops.py AttentionOp: K and
    V of the context read, the new token's written, query and output heads)."""
    kv_heads = (rows["n_kv_head"] // rows["tp"]).to_numpy()
    group = (rows["n_q_head"] / rows["n_kv_head"]).to_numpy(dtype=float)
    dim = rows["head_dim"].to_numpy(dtype=float)
    context = rows["kv_cache_size"].to_numpy(dtype=float)
    head_bytes = (context + 2.0) * 2.0 * dim * 2.0 + group * 2.0 * dim * 2.0
    block_flops = 2.0 * group * 2.0 * dim * (context + 1.0)
    return np.array([kernel.time_s(int(b), int(h), hb, f, bandwidth, peak) for b, h, hb, f in
                     zip(rows["batch_size"].to_numpy(), kv_heads, head_bytes, block_flops, strict=True)])


def kernel_mape(rows: pd.DataFrame, kernel: DecodeAttentionKernel, bandwidth: float, peak: float) -> float:
    """Mean |kernel time / ``rows["measured_s"]`` - 1| over ``rows`` (:func:`_kernel_times`)."""
    measured = rows["measured_s"].to_numpy(dtype=float)
    return float(np.mean(np.abs(_kernel_times(rows, kernel, bandwidth, peak) / measured - 1.0)))


def fit_kernel_fields(rows: pd.DataFrame, kernel: DecodeAttentionKernel, bandwidth: float, peak: float,
                      maxiter: int = 2000) -> tuple[DecodeAttentionKernel, float]:
    """``kernel`` with the ``floor_s``, ``block_overhead_s``, ``block_bandwidth_share`` and
    ``memory_efficiency`` that minimize :func:`kernel_mape` on ``rows`` (the other fields kept),
    and that MAPE. Nelder-Mead from :data:`FIT_START`; deterministic. ``bandwidth`` B/s, ``peak`` FLOP/s."""
    from scipy.optimize import minimize

    scale = np.array([1e-6, 1e-6, 1.0, 1.0])

    def with_fields(x: np.ndarray) -> DecodeAttentionKernel:
        floor, overhead, share, efficiency = x * scale
        return dataclasses.replace(kernel, floor_s=float(floor), block_overhead_s=float(overhead),
                                   block_bandwidth_share=float(share), memory_efficiency=float(efficiency))

    def mape(x: np.ndarray) -> float:
        floor, overhead, share, efficiency = x * scale
        if min(floor, overhead) < 0 or share <= 0 or not 0 < efficiency <= 1:
            return 1e9
        return kernel_mape(rows, with_fields(x), bandwidth, peak)

    result = minimize(mape, np.array(FIT_START) / scale, method="Nelder-Mead",
                      options={"maxiter": maxiter, "xatol": 1e-4, "fatol": 1e-7})
    return with_fields(result.x), float(result.fun)


def fit_decode_attention(rows: pd.DataFrame, device: str = "a100-80g") -> dict[str, float]:
    """The decode-attention kernel fields of ``device``'s tensor unit that minimize the MAPE on
    ``rows`` (pass the ``fit`` rows only): ``floor_s``, ``block_overhead_s``,
    ``block_bandwidth_share`` and ``memory_efficiency``; ``sm_count``, ``blocks_per_sm`` and
    ``split_below`` are taken from the device file (facts and the kernel's heuristic)
    (:func:`fit_kernel_fields`). Also returns the ``mape`` reached."""
    spec = _catalog_device(device)
    unit = spec.units["tensor"]
    kernel = getattr(unit, "decode_attention", None)
    if kernel is None:
        raise ArgumentError(f"{device}: its tensor unit declares no [decode_attention] table to fit")
    fitted, mape = fit_kernel_fields(rows, kernel, spec.memories[unit.memory].bandwidth_bytes_per_s,
                                     unit.peak_flops(DType.FP16))
    return {"floor_s": fitted.floor_s, "block_overhead_s": fitted.block_overhead_s,
            "block_bandwidth_share": fitted.block_bandwidth_share, "memory_efficiency": fitted.memory_efficiency,
            "mape": mape}
