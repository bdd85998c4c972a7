"""Finding and loading Vidur's measured GPU timings (the data of ``decodex validate external``).

The data are microsoft/vidur's ``data/profiling`` files (MIT), shipped with Decodex as
``decodex/validation/data/vidur-profiling`` (provenance and units: that folder's README.md):
per-layer operator times of a decoder layer on A100 and H100 GPUs (``compute/<gpu>/<org>/<model>/
mlp.csv``) and NCCL collective times (``network/<cluster>/{all_reduce,send_recv}.csv``).

The loaders turn them into one frame row per measured case. Units out: seconds (Vidur's files
are in milliseconds) and bytes (the ``size`` column of the collectives is in bytes: Vidur's
profiler writes ``size * 2  # bytes`` for 16-bit elements).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from decodex.core.errors import DecodexError

DATA_ENV = "DECODEX_VALIDATION_DATA"
VIDUR_DIR = "vidur-profiling"
PACKAGED_DATA_DIR = Path(__file__).resolve().parent / "data" / VIDUR_DIR
VIDUR_SOURCE = "microsoft/vidur data/profiling (MIT), shipped as decodex/validation/data/vidur-profiling"

GPU_DEVICES = {"a100": "a100-80g", "h100": "h100-sxm"}  # Vidur GPU directory -> Decodex device
CLUSTER_GPUS = {"a100_dgx": "a100", "h100_dgx": "h100"}  # Vidur network directory -> GPU
FIT_GPU = "a100"  # the fitted files; every other GPU is held out
GEMM_OPS = ("attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_down_proj")
ELEMENTWISE_OPS = ("input_layernorm", "post_attention_layernorm", "attn_rope", "mlp_act", "add", "emb")
SHAPE_COLUMNS = ("n_head", "n_kv_head", "n_embd", "n_expanded_embd", "vocab_size", "use_gated_mlp")
MS = 1e-3  # s per ms


class ValidationDataError(DecodexError, FileNotFoundError):
    """The validation data folder is missing or holds none of the expected files."""


def find_data_dir(data_dir: str | Path | None = None) -> Path:
    """The ``vidur-profiling`` directory (holding ``compute/`` and ``network/``).

    Looked up as: ``data_dir``, else ``$DECODEX_VALIDATION_DATA``, else the copy shipped in the
    package (:data:`PACKAGED_DATA_DIR`). A given folder may be the ``vidur-profiling`` folder
    itself or a folder holding it. Raises :class:`ValidationDataError` (a one-line message naming
    the path) when neither holds ``compute/`` and ``network/``.
    """
    if data_dir is not None:
        candidate, origin = Path(data_dir), "data_dir"
    elif os.environ.get(DATA_ENV):
        candidate, origin = Path(os.environ[DATA_ENV]), f"${DATA_ENV}"
    else:
        candidate, origin = PACKAGED_DATA_DIR, "the packaged copy"
    for root in (candidate, candidate / VIDUR_DIR):
        if (root / "compute").is_dir() and (root / "network").is_dir():
            return root
    raise ValidationDataError(f"no {VIDUR_DIR} data (compute/ and network/ folders) in {candidate} "
                              f"(from {origin}); set {DATA_ENV} or pass the folder")


def data_available(data_dir: str | Path | None = None) -> bool:
    """Whether :func:`find_data_dir` finds the data (same arguments, no units)."""
    try:
        find_data_dir(data_dir)
    except ValidationDataError:
        return False
    return True


def load_compute(data_dir: str | Path | None = None) -> pd.DataFrame:
    """Every measured operator of every ``compute/<gpu>/<org>/<model>/mlp.csv`` row, one row each.

    Columns: gpu, device, model, op, kind (``gemm``/``elementwise``), num_tokens, tp, the shape
    columns (n_head, n_kv_head, n_embd, n_expanded_embd, vocab_size, use_gated_mlp),
    measured_s (the median, s), source (file relative to the data directory), row (in the file).
    """
    root = find_data_dir(data_dir)
    frames = []
    for path in sorted((root / "compute").glob("*/*/*/mlp.csv")):
        gpu = path.relative_to(root / "compute").parts[0]
        raw = pd.read_csv(path)
        base = pd.DataFrame({
            "gpu": gpu, "device": GPU_DEVICES.get(gpu, gpu), "model": path.parent.name,
            "num_tokens": raw["num_tokens"].astype(int), "tp": raw["num_tensor_parallel_workers"].astype(int),
            **{c: raw[c] for c in SHAPE_COLUMNS}})
        base["use_gated_mlp"] = base["use_gated_mlp"].astype(str).str.lower().eq("true")
        for op in (*GEMM_OPS, *ELEMENTWISE_OPS):
            column = f"time_stats.{op}.median"
            if column not in raw.columns:
                continue
            frame = base.copy()
            frame.insert(3, "op", op)
            frame.insert(4, "kind", "gemm" if op in GEMM_OPS else "elementwise")
            frame["measured_s"] = raw[column].astype(float) * MS
            frame["source"] = str(path.relative_to(root))
            frame["row"] = raw.index
            frames.append(frame[frame["measured_s"] > 0])
    if not frames:
        raise ValidationDataError(f"no compute/*/*/*/mlp.csv under {root}")
    return pd.concat(frames, ignore_index=True)


def load_network(data_dir: str | Path | None = None) -> pd.DataFrame:
    """Every row of ``network/<cluster>/{all_reduce,send_recv}.csv``.

    Columns: gpu, device, cluster, op and kind (the collective), size (the file's column, bytes),
    payload_bytes (= size), num_workers, devices_per_node, intra_node (the group fits in one node,
    so it runs on NVLink), measured_s (the median, s), source, row.
    """
    root = find_data_dir(data_dir)
    frames = []
    for path in sorted((root / "network").glob("*/*.csv")):
        cluster, collective = path.parent.name, path.stem
        column = f"time_stats.{collective}.median"
        raw = pd.read_csv(path)
        if column not in raw.columns:
            continue
        gpu = CLUSTER_GPUS.get(cluster, cluster.split("_")[0])
        frame = pd.DataFrame({
            "gpu": gpu, "device": GPU_DEVICES.get(gpu, gpu), "cluster": cluster, "op": collective,
            "kind": collective, "size": raw["size"].astype(int), "payload_bytes": raw["size"].astype(float),
            "num_workers": raw["num_workers"].astype(int), "devices_per_node": raw["devices_per_node"].astype(int),
            "measured_s": raw[column].astype(float) * MS, "source": str(path.relative_to(root)),
            "row": raw.index})
        frame.insert(8, "intra_node", frame["devices_per_node"] >= frame["num_workers"])
        frames.append(frame[frame["measured_s"] > 0])
    if not frames:
        raise ValidationDataError(f"no network/*/*.csv under {root}")
    return pd.concat(frames, ignore_index=True)
