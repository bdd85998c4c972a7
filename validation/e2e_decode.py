"""End-to-end decode steps measured on a GPU (:mod:`validation.torch_decode`) against ``estimate``.

``E2E_GRID`` is what a GPU session (:mod:`validation.gpu_session`) times: llama2-7b and
llama3-8b, bf16, one GPU, batch {1, 8, 32, 128} x context {512, 2048, 8192}; points whose KV cache
does not fit are recorded with the reason. A record is ``validation/records/<device>/e2e-<UTC>.csv``
(one row per point: the whole step, its attention part, its projections part, s) with the
session's GPU, ceilings and method in the ``.json`` beside it.

:func:`compare_e2e` prices every measured point with ``estimate`` on the record's catalog device
(tp 1, bf16) and splits both sides the same way: attention (``attention`` ops vs the
attention-only graph), projections (``matmul`` ops vs the GEMM-only graph) and the rest (step
minus both: norms, RoPE, residual adds, SiLU, embedding, sampling). No spec field was fitted on
these rows, so every row is a held-out check. A model's ``max_position_embeddings`` is raised to
the measured position where it is below it (llama2-7b at 8192: random weights, so only the
arithmetic matters).

:func:`attention_fit_trial` asks whether the rows justify fitting the device's decode-attention
kernel fields (``hw_models/decode_attention.py``): it fits them on one half and checks on the other.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from decodex.validation.records import RECORDS_DIR
from decodex.workloads.catalog import CATALOG_DIR

E2E_KIND = "e2e"
E2E_MODELS = ("llama2-7b", "llama3-8b")
E2E_BATCHES = (1, 8, 32, 128)
E2E_CONTEXTS = (512, 2048, 8192)
E2E_GRID = tuple((model, E2E_BATCHES, E2E_CONTEXTS) for model in E2E_MODELS)
"""(model, batches, contexts) timed by a GPU session."""
E2E_COLUMNS = ("model", "batch", "context", "step_s", "step_min_s", "attention_s", "projections_s", "weight_bytes",
               "kv_bytes", "skipped")


def model_config(name: str) -> dict[str, Any]:
    """The Hugging Face config.json of catalog model ``name``, without Decodex's ``_`` notes."""
    config = json.loads((CATALOG_DIR / f"{name}.json").read_text())
    return {key: value for key, value in config.items() if not key.startswith("_")}


def load_e2e_records(root: Path = RECORDS_DIR, device: str | None = None) -> pd.DataFrame:
    """Every end-to-end record's rows under ``root`` (or one device's), with ``device``,
    ``run_id``, ``gpu_name`` and ``multiprocessors`` (the GPU's SMs, as the session read them)
    columns; empty (with ``E2E_COLUMNS``) when there are none."""
    frames = []
    for path in sorted(root.glob(f"{device or '*'}/{E2E_KIND}-*.csv")):
        meta_path = path.with_suffix(".json")
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        frame = pd.read_csv(path, keep_default_na=False, na_values=[""])
        frame["skipped"] = frame["skipped"].fillna("").astype(str)
        frame["device"] = meta.get("device", path.parent.name)
        frame["run_id"] = meta.get("run_id", path.stem)
        frame["gpu_name"] = meta.get("gpu", {}).get("gpu_name", "")
        frame["multiprocessors"] = meta.get("gpu", {}).get("multiprocessors", 0)
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=[*E2E_COLUMNS, "device", "run_id", "gpu_name"])
    return pd.concat(frames, ignore_index=True)


def compare_e2e(records: pd.DataFrame) -> pd.DataFrame:
    """One row per measured point of ``records`` (from :func:`load_e2e_records`; skipped points
    are left out): measured and predicted step, attention, projections and rest (s), and the
    signed errors predicted / measured - 1. The prediction is ``estimate`` on the record's device
    (its catalog system of one GPU), bf16, tp 1."""
    from decodex.sim import estimate
    from decodex.workloads.catalog import model_reaching

    rows = []
    for r in records[records["skipped"] == ""].itertuples(index=False):
        result = estimate(model_reaching(str(r.model), int(r.context) + 1), str(r.device), int(r.batch),
                          context=int(r.context), precision="bf16")
        by_kind: dict[str, float] = {}
        for rec in result.records:
            by_kind[rec.kind] = by_kind.get(rec.kind, 0.0) + rec.time_s * rec.repeat
        attention, matmul = by_kind.get("attention", 0.0), by_kind.get("matmul", 0.0)
        rows.append({"device": r.device, "run_id": r.run_id, "model": r.model, "batch": int(r.batch),
                     "context": int(r.context), "measured_s": float(r.step_s), "predicted_s": result.step_time_s,
                     "measured_attention_s": float(r.attention_s), "predicted_attention_s": attention,
                     "measured_projections_s": float(r.projections_s), "predicted_projections_s": matmul,
                     "measured_rest_s": float(r.step_s - r.attention_s - r.projections_s),
                     "predicted_rest_s": result.step_time_s - attention - matmul})
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    for part in ("", "attention_", "projections_"):
        out[f"{part}error"] = out[f"predicted_{part}s"] / out[f"measured_{part}s"] - 1.0
    return out


def _stats(errors: pd.Series) -> dict[str, float | int]:
    absolute = errors.abs()
    return {"mape": float(absolute.mean()), "max_error": float(absolute.max()), "median_error": float(errors.median()),
            "n": int(errors.size)}


def e2e_summary(compared: pd.DataFrame) -> dict[str, Any]:
    """MAPE, largest |error| and median signed error of the step and of its attention and
    projection parts, over all rows and by model and by batch; the mean measured and predicted
    rest (s)."""
    if compared.empty:
        return {"n": 0}
    out: dict[str, Any] = {"step": _stats(compared["error"]), "attention": _stats(compared["attention_error"]),
                           "projections": _stats(compared["projections_error"]),
                           "rest_measured_mean_s": float(compared["measured_rest_s"].mean()),
                           "rest_predicted_mean_s": float(compared["predicted_rest_s"].mean())}
    for key in ("model", "batch"):
        out[f"by_{key}"] = {str(value): _stats(group["error"]) for value, group in compared.groupby(key)}
    return out


def attention_fit_trial(records: pd.DataFrame, device: str = "h200", split_below: float = 0.8,
                        blocks_per_sm: int = 1) -> dict[str, dict[str, float]]:
    """Fit the decode-attention kernel fields (floor, per-wave overhead, per-block bandwidth share,
    memory efficiency; :func:`validation.published_gpu.fit_decode_attention`'s four) to the
    attention-only times per layer of ``records``, on three splits: alternate rows, llama2-7b
    rows only, llama3-8b rows only; each fitted on its half and checked on the other. Returns per
    split the fitted fields and the fit and check MAPE. ``sm_count`` is the GPU's multiprocessors
    as the session read them."""
    from decodex.core.dtypes import DType
    from decodex.hw_models.decode_attention import DecodeAttentionKernel
    from decodex.hw_models.system import load_system
    from decodex.validation.published_gpu import fit_kernel_fields, kernel_mape

    spec = load_system(device).primary_device
    unit = spec.units["tensor"]
    bandwidth = spec.memories[unit.memory].bandwidth_bytes_per_s
    peak = unit.peak_flops(DType.BF16)
    rows = records[(records["skipped"] == "") & (records["device"] == device)].reset_index(drop=True)
    configs = {name: model_config(name) for name in rows["model"].unique()}
    frame = pd.DataFrame({
        "n_q_head": [configs[m]["num_attention_heads"] for m in rows["model"]],
        "n_kv_head": [configs[m].get("num_key_value_heads") or configs[m]["num_attention_heads"]
                      for m in rows["model"]],
        "head_dim": [configs[m]["hidden_size"] // configs[m]["num_attention_heads"] for m in rows["model"]],
        "tp": 1, "kv_cache_size": rows["context"], "batch_size": rows["batch"],
        "measured_s": rows["attention_s"] / [configs[m]["num_hidden_layers"] for m in rows["model"]]})
    sms = int(rows["multiprocessors"].iloc[0])
    base = DecodeAttentionKernel(sm_count=sms, blocks_per_sm=blocks_per_sm, split_below=split_below, floor_s=0.0,
                                 block_overhead_s=0.0, block_bandwidth_share=1.0, memory_efficiency=1.0)
    splits = {"alternate rows": np.arange(len(frame)) % 2 == 0,
              "fit llama2-7b, check llama3-8b": (rows["model"] == "llama2-7b").to_numpy(),
              "fit llama3-8b, check llama2-7b": (rows["model"] == "llama3-8b").to_numpy()}
    out = {}
    for name, mask in splits.items():
        fitted, fit_mape = fit_kernel_fields(frame[mask], base, bandwidth, peak, maxiter=4000)
        out[name] = {"floor_s": fitted.floor_s, "block_overhead_s": fitted.block_overhead_s,
                     "block_bandwidth_share": fitted.block_bandwidth_share,
                     "memory_efficiency": fitted.memory_efficiency, "fit_mape": fit_mape,
                     "check_mape": kernel_mape(frame[~mask], fitted, bandwidth, peak)}
    return out

