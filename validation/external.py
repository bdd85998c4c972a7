"""``validate external``: Decodex's GPU specs against Vidur's measured operator timings.

The data (``shared/validation-data/vidur-profiling``, microsoft/vidur, MIT) are kernel times
measured on A100 and H100 GPUs: the per-layer operators of a decoder layer at ``num_tokens``
tokens and ``tp`` tensor-parallel shards, and NCCL all-reduce / send-recv. Each measured
operator becomes the Decodex op it stands for (:func:`ops_for_row`); the device spec prices it
(``hw_models.op_time`` on unit ``tensor`` for the GEMMs, ``simt`` for the element-wise ops;
``hw_models.collective_cost`` on the NVLink for the collectives) and :func:`compare` reports
``error = predicted / measured - 1`` per case; :func:`summary` gives MAPE and max |error| per
device and op kind.

:func:`fit_gpu_efficiency` fits the tensor/simt/HBM/NVLink efficiency data of the GPU specs on
the A100 files only (the H100 files stay held out), transfers them to the other NVIDIA specs
and can write them into the device TOML files. Method and results: docs/validation-external.md.

Units inside: seconds, bytes, FLOP. Vidur's files are in milliseconds; their ``size`` column of
the collectives is in bytes (the profiler writes ``size * 2  # bytes`` for 16-bit elements).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy
from scipy.optimize import least_squares

from decodex.core.dtypes import DType
from decodex.hw_models import collective_cost, op_time
from decodex.hw_models.device import DeviceSpec
from decodex.hw_models.efficiency import EfficiencyCurve
from decodex.hw_models.roofline import RooflineUnit, padded_rows
from decodex.hw_models.system import DEVICES_DIR, load_system
from decodex.validation import records
from decodex.workloads.builder import (
    ACTIVATION_FLOPS_PER_ELEMENT,
    GATE_MULTIPLY_FLOPS_PER_ELEMENT,
    RESIDUAL_ADD_FLOPS_PER_ELEMENT,
    RMSNORM_FLOPS_PER_ELEMENT,
    ROPE_FLOPS_PER_ELEMENT,
)
from decodex.workloads.ops import ElementwiseOp, EmbeddingOp, MatmulOp, Op

DATA_ENV = "DECODEX_VALIDATION_DATA"
VIDUR_DIR = "vidur-profiling"
REPO_ROOT = Path(__file__).resolve().parents[1]
FIT_FILE = Path(__file__).resolve().parent / "fits" / "gpu_efficiency.json"

GPU_DEVICES = {"a100": "a100-80g", "h100": "h100-sxm"}  # Vidur GPU directory -> Decodex device
CLUSTER_GPUS = {"a100_dgx": "a100", "h100_dgx": "h100"}  # Vidur network directory -> GPU
FIT_GPU = "a100"  # the fitted files; every other GPU is held out
GEMM_OPS = ("attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_down_proj")
ELEMENTWISE_OPS = ("input_layernorm", "post_attention_layernorm", "attn_rope", "mlp_act", "add", "emb")
KINDS = ("gemm", "elementwise", "all_reduce", "send_recv")
SHAPE_COLUMNS = ("n_head", "n_kv_head", "n_embd", "n_expanded_embd", "vocab_size", "use_gated_mlp")
DTYPE = DType.BF16  # Vidur profiles in 16-bit
SAMPLE_SEED = 0
MS = 1e-3

FIT_TAG = "fitted on vidur-profiling A100 rows (validation/fits/gpu_efficiency.json, decodex validate external --fit)"
# The NVIDIA GPU specs the fit is transferred to.
FIT_DEVICES = ("a100-40g", "a100-80g", "a800", "h100-sxm", "h800", "h200", "h20", "v100s")
TENSOR_KNOTS_FLOP = (1e8, 1e9, 1e10, 1e11, 1e12, 1e13)
HBM_KNOTS_BYTES = (3.162e6, 1e7, 3.162e7, 1e8, 3.162e8, 1e9)  # half decades, rounded as written to the specs
SIMT_KNOTS_FLOP = (1e5, 1e6, 1e7, 1e8, 1e9, 1e10)
TILE_M_CANDIDATES = (64, 128, 256)
# The element-wise rows are memory-bound at any simt efficiency above a few percent, where the
# objective is flat in it: start the simt curve high and low and keep the best.
SIMT_STARTS = (0.8, 0.1, 0.02)
MEMORY_BOUND_MAX_TOKENS = 16  # GEMMs this short (<= 16 FLOP/B) are far below the A100 ridge (153 FLOP/B)
SIG_DIGITS = 4  # fitted numbers are rounded to this many significant digits before use and writing


@dataclass(frozen=True)
class Anchor:
    """A device's pre-fit large-size efficiencies (their sources stay in the TOML comments).

    ``nvlink`` is None where the value was not a measurement of this link generation's own
    (the A100 family borrowed the H100's): the fitted value replaces it.
    """

    tensor: float
    hbm: float
    nvlink: float | None
    note: str


ANCHORS: dict[str, Anchor] = {
    "a100-80g": Anchor(0.859, 0.870, None, "fitted device: A100 MAMF 267.9/312; BabelStream 1774/2039 GB/s"),
    "a100-40g": Anchor(0.859, 0.900, None, "A100 MAMF; HBM 1.4/1.555 TB/s measured (Antepara et al.)"),
    "a800": Anchor(0.859, 0.870, None, "same GA100 silicon and HBM2e as a100-80g"),
    "h100-sxm": Anchor(0.807, 0.896, 0.84, "lent-H100 8192^3 matmul and copy (hardware.md); p2p 380/450 GB/s"),
    "h800": Anchor(0.807, 0.896, 0.84, "same silicon as h100-sxm"),
    "h200": Anchor(0.792, 0.896, 0.84, "lent-H200 8192^3 matmul and copy (hardware.md); H100 p2p"),
    "h20": Anchor(0.807, 0.896, 0.84, "assumed equal to h100-sxm"),
    "v100s": Anchor(0.807, 0.896, None, "assumed equal to h100-sxm"),
}


# --- data -------------------------------------------------------------------------------------

def find_data_dir(data_dir: str | Path | None = None) -> Path:
    """The ``vidur-profiling`` directory: ``data_dir``, else ``$DECODEX_VALIDATION_DATA``, else
    ``shared/validation-data`` in the repository root or one of its parents (either the
    validation-data directory or its ``vidur-profiling`` sub-directory may be given).

    Raises FileNotFoundError naming where it looked.
    """
    if data_dir is not None:
        candidates = [Path(data_dir)]
    elif os.environ.get(DATA_ENV):
        candidates = [Path(os.environ[DATA_ENV])]
    else:
        candidates = [parent / "shared" / "validation-data" for parent in (REPO_ROOT, *REPO_ROOT.parents)]
    for candidate in candidates:
        for root in (candidate, candidate / VIDUR_DIR):
            if (root / "compute").is_dir() and (root / "network").is_dir():
                return root
    where = ", ".join(str(c) for c in candidates[:3])
    raise FileNotFoundError(f"no {VIDUR_DIR} data (compute/ and network/) found in {where}; "
                            f"set {DATA_ENV} or pass data_dir")


def data_available(data_dir: str | Path | None = None) -> bool:
    """Whether :func:`find_data_dir` finds the data."""
    try:
        find_data_dir(data_dir)
    except FileNotFoundError:
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
        raise FileNotFoundError(f"no compute/*/*/*/mlp.csv under {root}")
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
        raise FileNotFoundError(f"no network/*/*.csv under {root}")
    return pd.concat(frames, ignore_index=True)


# --- ops --------------------------------------------------------------------------------------

def ops_for_row(row: Mapping[str, Any]) -> dict[str, Op]:
    """The Decodex op of each operator Vidur measured in one ``mlp.csv`` row (per device, 16-bit).

    ``row`` holds ``num_tokens``, ``tp`` (or ``num_tensor_parallel_workers``) and the shape
    columns. GEMMs (``attn_pre_proj`` = QKV, ``attn_post_proj``, ``mlp_up_proj`` = gate+up when
    gated, ``mlp_down_proj``) are ``MatmulOp`` with bf16 weights; norms (RMSNorm without the
    residual, which Vidur times as ``add``), RoPE, the activation and the residual add are
    ``ElementwiseOp`` with workloads/builder.py's FLOP-per-element conventions; ``emb`` is an
    ``EmbeddingOp`` over this shard's vocabulary rows.
    """
    return dict(_ops_for_shape(*_shape_key(row)))


def _shape_key(row: Mapping[str, Any]) -> tuple[int, int, int, int, int, int, int, bool]:
    tp = row["tp"] if "tp" in row else row["num_tensor_parallel_workers"]
    gated = row["use_gated_mlp"]
    gated = gated if isinstance(gated, bool | np.bool_) else str(gated).lower() == "true"
    return (int(row["num_tokens"]), int(tp), int(row["n_head"]), int(row["n_kv_head"]), int(row["n_embd"]),
            int(row["n_expanded_embd"]), int(row["vocab_size"]), bool(gated))


@lru_cache(maxsize=8192)
def _ops_for_shape(tokens: int, tp: int, heads: int, kv_heads: int, d: int, ffn: int, vocab: int,
                   gated: bool) -> tuple[tuple[str, Op], ...]:
    head_dim = d // heads
    q_local, kv_local, f_local = heads // tp, max(1, kv_heads // tp), ffn // tp

    def gemm(name: str, n: int, k: int) -> MatmulOp:
        return MatmulOp(name=name, dtype=DTYPE, devices=tp, m=tokens, n=n, k=k, weight_dtype=DTYPE)

    def vector(name: str, elements: int, fpe: float, reads: int = 1, weights: int = 0) -> ElementwiseOp:
        return ElementwiseOp(name=name, dtype=DTYPE, devices=tp, elements=elements, flops_per_element=fpe,
                             tensors_read=reads, tensors_written=1, weight_elements=weights,
                             weight_dtype=DTYPE if weights else None)

    act = "silu" if gated else "gelu"
    act_fpe = ACTIVATION_FLOPS_PER_ELEMENT[act] + (GATE_MULTIPLY_FLOPS_PER_ELEMENT if gated else 0.0)
    ops: list[tuple[str, Op]] = [
        ("attn_pre_proj", gemm("attn_pre_proj", (q_local + 2 * kv_local) * head_dim, d)),
        ("attn_post_proj", gemm("attn_post_proj", d, q_local * head_dim)),
        ("mlp_up_proj", gemm("mlp_up_proj", (2 if gated else 1) * f_local, d)),
        ("mlp_down_proj", gemm("mlp_down_proj", d, f_local)),
        ("input_layernorm", vector("input_layernorm", tokens * d, RMSNORM_FLOPS_PER_ELEMENT, weights=d)),
        ("post_attention_layernorm",
         vector("post_attention_layernorm", tokens * d, RMSNORM_FLOPS_PER_ELEMENT, weights=d)),
        ("attn_rope", vector("attn_rope", tokens * (q_local + kv_local) * head_dim, ROPE_FLOPS_PER_ELEMENT)),
        ("mlp_act", vector("mlp_act", tokens * f_local, act_fpe, reads=2 if gated else 1)),
        ("add", vector("add", tokens * d, RESIDUAL_ADD_FLOPS_PER_ELEMENT, reads=2)),
        ("emb", EmbeddingOp(name="emb", dtype=DTYPE, devices=tp, tokens=tokens, dim=d, rows=-(-vocab // tp),
                            weight_dtype=DTYPE)),
    ]
    return tuple(ops)


def _shape_text(op: Op) -> str:
    if isinstance(op, MatmulOp):
        return f"m={op.m},n={op.n},k={op.k}"
    if isinstance(op, EmbeddingOp):
        return f"tokens={op.tokens},dim={op.dim}"
    if isinstance(op, ElementwiseOp):
        return f"elements={op.elements}"
    return ""


def _compute_ops(frame: pd.DataFrame) -> list[Op]:
    """The Decodex op of each row of a :func:`load_compute` frame."""
    columns = ("num_tokens", "tp", *SHAPE_COLUMNS)
    out = []
    for values in zip(*(frame[c] for c in (*columns, "op")), strict=True):
        row = dict(zip(columns, values[:-1], strict=True))
        out.append(dict(_ops_for_shape(*_shape_key(row)))[values[-1]])
    return out


# --- comparison -------------------------------------------------------------------------------

def _devices(devices: Mapping[str, DeviceSpec] | None) -> dict[str, DeviceSpec]:
    """Vidur GPU name -> the device spec that prices it (the catalog's unless given)."""
    out = {gpu: load_system(name).primary_device for gpu, name in GPU_DEVICES.items()}
    if devices:
        out.update(devices)
    return out


def _sample(frame: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    if n is None:
        return frame
    parts = [group.sample(min(n, len(group)), random_state=seed) for _, group in frame.groupby(["gpu", "kind"])]
    return pd.concat(parts).sort_index() if parts else frame


def compare(data_dir: str | Path | None = None, sample: int | None = None, *,
            compute: pd.DataFrame | None = None, network: pd.DataFrame | None = None,
            devices: Mapping[str, DeviceSpec] | None = None, inter_node: bool = False,
            seed: int = SAMPLE_SEED) -> pd.DataFrame:
    """Measured against predicted, one row per measured case.

    ``sample``: at most this many rows per (gpu, kind), a seeded choice. ``compute``/``network``:
    frames from the loaders (loaded when absent). ``devices``: Vidur GPU name -> DeviceSpec
    (default: the catalog's a100-80g and h100-sxm). Collectives whose group spans nodes
    (``devices_per_node < num_workers``) are left out unless ``inter_node``; they are then priced
    on the device's ``nic`` link under kinds ``<collective>_inter_node``.

    Columns: gpu, device, role (``fit`` for the A100 files, ``held_out`` otherwise), kind, op,
    model, shape, num_tokens, tp, num_workers, dtype, flops, bytes, measured_s, predicted_s,
    error (= predicted / measured - 1).
    """
    compute = load_compute(data_dir) if compute is None else compute
    network = load_network(data_dir) if network is None else network
    if not inter_node:
        network = network[network["intra_node"]]
    compute = _sample(compute, sample, seed)
    network = _sample(network, sample, seed)
    specs = _devices(devices)
    frames = [_compare_compute(compute, specs), _compare_network(network, specs)]
    frame = pd.concat([f for f in frames if not f.empty], ignore_index=True)
    frame["error"] = frame["predicted_s"] / frame["measured_s"] - 1.0
    return frame


def _compare_compute(compute: pd.DataFrame, specs: Mapping[str, DeviceSpec]) -> pd.DataFrame:
    ops = _compute_ops(compute)
    cache: dict[tuple[str, int], float] = {}
    predicted = []
    for gpu, op, kind in zip(compute["gpu"], ops, compute["kind"], strict=True):
        key = (gpu, id(op))
        if key not in cache:
            cache[key] = op_time(op, "tensor" if kind == "gemm" else "simt", specs[gpu]).time_s
        predicted.append(cache[key])
    return pd.DataFrame({
        "gpu": compute["gpu"].to_numpy(), "device": [specs[g].name for g in compute["gpu"]],
        "role": np.where(compute["gpu"] == FIT_GPU, "fit", "held_out"), "kind": compute["kind"].to_numpy(),
        "op": compute["op"].to_numpy(), "model": compute["model"].to_numpy(),
        "shape": [_shape_text(op) for op in ops], "num_tokens": compute["num_tokens"].to_numpy(),
        "tp": compute["tp"].to_numpy(), "num_workers": compute["tp"].to_numpy(), "dtype": str(DTYPE),
        "flops": [op.flops for op in ops], "bytes": [op.bytes for op in ops],
        "measured_s": compute["measured_s"].to_numpy(), "predicted_s": predicted})


def _compare_network(network: pd.DataFrame, specs: Mapping[str, DeviceSpec]) -> pd.DataFrame:
    if network.empty:
        return pd.DataFrame()
    predicted, kinds = [], []
    for gpu, op, payload, workers, intra in zip(network["gpu"], network["op"], network["payload_bytes"],
                                                network["num_workers"], network["intra_node"], strict=True):
        link = specs[gpu].links["nvlink" if intra else "nic"]
        predicted.append(collective_cost(op, float(payload), int(workers), link).time_s)
        kinds.append(op if intra else f"{op}_inter_node")
    return pd.DataFrame({
        "gpu": network["gpu"].to_numpy(), "device": [specs[g].name for g in network["gpu"]],
        "role": np.where(network["gpu"] == FIT_GPU, "fit", "held_out"), "kind": kinds,
        "op": network["op"].to_numpy(), "model": "",
        "shape": [f"bytes={b},p={p},per_node={n}" for b, p, n in
                  zip(network["size"], network["num_workers"], network["devices_per_node"], strict=True)],
        "num_tokens": 0, "tp": 0, "num_workers": network["num_workers"].to_numpy(), "dtype": str(DTYPE),
        "flops": 0.0, "bytes": network["payload_bytes"].to_numpy(),
        "measured_s": network["measured_s"].to_numpy(), "predicted_s": predicted})


def summary(frame: pd.DataFrame) -> dict[str, dict[str, dict[str, float | int]]]:
    """``{device: {kind: {"mape", "max_error", "n"}}}``: mean and max of |predicted/measured - 1|
    (fractions) and the number of cases, for each device and op kind of a :func:`compare` frame."""
    out: dict[str, dict[str, dict[str, float | int]]] = {}
    order = {k: i for i, k in enumerate(KINDS)}
    for device, group in frame.groupby("device", sort=True):
        kinds = sorted(group["kind"].unique(), key=lambda k: (order.get(k, len(order)), k))
        out[str(device)] = {}
        for kind in kinds:
            errors = np.abs(group.loc[group["kind"] == kind, "error"].to_numpy(dtype=float))
            out[str(device)][str(kind)] = {"mape": float(errors.mean()), "max_error": float(errors.max()),
                                           "n": int(errors.size)}
    return out


def run_external(data_dir: str | Path | None = None, sample: int | None = None) -> tuple[pd.DataFrame, dict]:
    """The comparison (:func:`compare`) with the catalog specs and its :func:`summary`."""
    frame = compare(data_dir, sample)
    return frame, summary(frame)


RECORD_COLUMNS = ("gpu", "device", "role", "kind", "op_kind", "op", "kernel", "model", "shape",
                  "num_tokens", "tp", "num_workers", "dtype", "flops", "bytes", "measured_s", "predicted_s", "error")


RECORD_ROWS_PER_KIND = 2000  # rows kept per (device, op kind) in the committed record


def write_external_records(frame: pd.DataFrame, root: Path = records.RECORDS_DIR,
                           rows_per_kind: int = RECORD_ROWS_PER_KIND, seed: int = 0) -> list[Path]:
    """Write a :func:`compare` frame as one record per device (``<root>/<device>/external-vidur-
    <date>.csv`` + ``.json``), keeping a seeded sample of at most ``rows_per_kind`` rows per op
    kind so that the committed records stay small; the error bands read them."""
    date = datetime.now(UTC).strftime("%Y%m%d")
    paths = []
    for device, group in frame.groupby("device"):
        parts = [g.sample(n=min(len(g), rows_per_kind), random_state=seed) for _, g in group.groupby("kind")]
        cases = pd.concat(parts).assign(op_kind=lambda f: f["kind"], kernel=lambda f: f["op"])
        machine = {"device_kind": "gpu", "gpu": str(group["gpu"].iloc[0]), "role": str(group["role"].iloc[0]),
                   "source": "shared/validation-data/vidur-profiling (microsoft/vidur, MIT): PyTorch/NCCL timings",
                   "rows_in_comparison": len(group), "rows_kept": len(cases),
                   "date": datetime.now(UTC).isoformat(timespec="seconds")}
        paths.append(records.write_record(str(device), machine, cases, kind="external", root=root,
                                          run_id=f"external-vidur-{date}"))
    return paths


# --- the vectorized roofline the fit evaluates (same arithmetic as hw_models/roofline.py) ------

@dataclass(frozen=True)
class _Rows:
    """Per-row arrays of a set of measured ops: FLOP, rows m (0: not a matmul), bytes, measured s."""

    flops: np.ndarray
    m: np.ndarray
    nbytes: np.ndarray
    measured_s: np.ndarray

    @classmethod
    def of(cls, frame: pd.DataFrame) -> _Rows:
        ops = _compute_ops(frame)
        return cls(np.array([op.flops for op in ops]),
                   np.array([op.m if isinstance(op, MatmulOp) else 0 for op in ops]),
                   np.array([op.bytes for op in ops]), frame["measured_s"].to_numpy(dtype=float))

    def work(self, tile_m: int) -> np.ndarray:
        """FLOP after tile padding (``RooflineUnit.tiled_flops``)."""
        if tile_m <= 0:
            return self.flops
        rows = {int(m): padded_rows(int(m), tile_m) for m in np.unique(self.m) if m > 0}
        factor = np.array([rows[int(m)] / m if m > 0 else 1.0 for m in self.m])
        return self.flops * factor


def roofline_times(flops: np.ndarray, work: np.ndarray, nbytes: np.ndarray, peak_flops: float,
                   bandwidth_bytes_per_s: float, compute: EfficiencyCurve, memory: EfficiencyCurve,
                   overhead_s: float, overlap_exponent: float = 0.0) -> np.ndarray:
    """Roofline times (s) of many ops at once, as ``RooflineUnit.op_cost`` prices them: ``flops``
    executed FLOP, ``work`` FLOP after tile padding, ``nbytes`` bytes moved, peak FLOP/s, peak B/s,
    efficiency curves over FLOP and bytes, fixed overhead (s) and the overlap exponent."""
    compute_s = np.where(flops > 0, work / (peak_flops * compute.at_many(work)), 0.0)
    memory_s = np.where(nbytes > 0, nbytes / (bandwidth_bytes_per_s * memory.at_many(nbytes)), 0.0)
    high = np.maximum(compute_s, memory_s)
    if overlap_exponent > 0:
        low = np.minimum(compute_s, memory_s)
        ratio = np.divide(low, high, out=np.zeros_like(high), where=high > 0)
        high = high * (1.0 + ratio ** overlap_exponent) ** (1.0 / overlap_exponent)
    return high + overhead_s


def _monotone(z: np.ndarray) -> np.ndarray:
    """Curve values from factors in (0, 1]: the last value is z[-1], each earlier one the next
    times its factor (so the curve never falls with size and stays in (0, 1])."""
    return np.cumprod(np.asarray(z)[::-1])[::-1]


def _round(x: float) -> float:
    return float(f"{x:.{SIG_DIGITS}g}")


def _curve(sizes: Iterable[float], values: Iterable[float]) -> EfficiencyCurve:
    return EfficiencyCurve(tuple(float(s) for s in sizes), tuple(min(1.0, _round(v)) for v in values))


def _msle(residuals: np.ndarray) -> float:
    return float(np.mean(np.square(residuals)))


def _mape(predicted: np.ndarray, measured: np.ndarray) -> float:
    return float(np.mean(np.abs(predicted / measured - 1.0)))


def _solve(residuals: Callable[[np.ndarray], np.ndarray], x0: list[float], lower: list[float],
           upper: list[float]) -> np.ndarray:
    """Least squares on log residuals (the mean squared log error), deterministic."""
    result = least_squares(residuals, np.array(x0, dtype=float), bounds=(np.array(lower), np.array(upper)),
                           x_scale="jac", max_nfev=2000)
    return np.asarray(result.x)


# --- the fit ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class GpuFit:
    """Fitted (A100) or transferred (other GPUs) spec values; times in s, efficiencies in (0, 1]."""

    tensor_efficiency: EfficiencyCurve
    tensor_overhead_s: float
    tile_m: int
    overlap_exponent: float
    hbm_efficiency: EfficiencyCurve
    simt_efficiency: EfficiencyCurve
    simt_overhead_s: float
    nvlink_efficiency: float | None
    nvlink_latency_s: float
    collective_overhead_s: float

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (curves as ``{"sizes": [...], "values": [...]}``)."""
        out: dict[str, Any] = {}
        for key, value in dataclasses.asdict(self).items():
            out[key] = {k: list(v) for k, v in value.items()} if isinstance(value, dict) else value
        return out


def _fit_unit(rows: _Rows, peak: float, bandwidth: float, memory: EfficiencyCurve | None,
              knots_compute: tuple[float, ...], *, knots_memory: tuple[float, ...] = (),
              tile_m: int = 0, fit_exponent: bool = False, compute_fixed: EfficiencyCurve | None = None,
              overhead_fixed: float | None = None, starts: tuple[float, ...] = (0.8,)) -> dict[str, Any]:
    """One least-squares stage over a roofline unit's rows (see :func:`fit_gpu_efficiency`);
    ``starts``: initial values of the compute curve's top point, the best result is kept."""
    work = rows.work(tile_m)
    log_measured = np.log(rows.measured_s)
    n_c = 0 if compute_fixed is not None else len(knots_compute)
    n_m = len(knots_memory) if memory is None else 0
    n_o = 0 if overhead_fixed is not None else 1

    def unpack(x: np.ndarray) -> tuple[EfficiencyCurve, EfficiencyCurve, float, float]:
        i = 0
        compute = compute_fixed if compute_fixed is not None else EfficiencyCurve(
            knots_compute, tuple(_monotone(x[i:i + n_c])))
        i += n_c
        mem = memory if memory is not None else EfficiencyCurve(knots_memory, tuple(_monotone(x[i:i + n_m])))
        i += n_m
        overhead = overhead_fixed if overhead_fixed is not None else float(x[i]) * 1e-6
        i += n_o
        exponent = float(x[i]) if fit_exponent else 0.0
        return compute, mem, overhead, exponent

    def residuals(x: np.ndarray) -> np.ndarray:
        compute, mem, overhead, exponent = unpack(x)
        return np.log(roofline_times(rows.flops, work, rows.nbytes, peak, bandwidth, compute, mem, overhead,
                                     exponent)) - log_measured

    lower = [1e-3] * (n_c + n_m) + [0.0] * n_o + [1.0] * fit_exponent
    upper = [1.0] * (n_c + n_m) + [100.0] * n_o + [32.0] * fit_exponent
    best: tuple[float, np.ndarray] | None = None
    for start in starts:
        x0 = ([0.95] * (n_c - 1) + [start] * min(n_c, 1) + [0.95] * (n_m - 1) + [0.8] * min(n_m, 1)
              + [4.0] * n_o + [4.0] * fit_exponent)
        x = _solve(residuals, x0, lower, upper)
        cost = _msle(residuals(x))
        if best is None or cost < best[0]:
            best = (cost, x)
    assert best is not None
    compute, mem, overhead, exponent = unpack(best[1])
    compute, mem = _curve(compute.sizes, compute.values), _curve(mem.sizes, mem.values)
    overhead, exponent = _round(overhead), _round(exponent) if fit_exponent else 0.0
    predicted = roofline_times(rows.flops, work, rows.nbytes, peak, bandwidth, compute, mem, overhead, exponent)
    return {"compute": compute, "memory": mem, "overhead_s": overhead, "exponent": exponent,
            "msle": _msle(np.log(predicted) - log_measured), "mape": _mape(predicted, rows.measured_s),
            "rows": int(rows.flops.size)}


def _fit_link(frame: pd.DataFrame, bandwidth: float) -> dict[str, Any]:
    """NVLink efficiency, per-hop latency and per-collective overhead on all-reduce rows."""
    payload = frame["payload_bytes"].to_numpy(dtype=float)
    p = frame["num_workers"].to_numpy(dtype=float)
    measured = frame["measured_s"].to_numpy(dtype=float)
    sent, hops = 2.0 * (p - 1.0) / p * payload, 2.0 * (p - 1.0)  # ring all-reduce (hw_models/collectives.py)

    def times(x: np.ndarray) -> np.ndarray:
        return sent / (bandwidth * x[0]) + hops * x[1] * 1e-6 + x[2] * 1e-6

    x = _solve(lambda x: np.log(times(x)) - np.log(measured), [0.8, 1.0, 10.0], [0.01, 0.0, 0.0], [1.0, 100.0, 1000.0])
    efficiency, latency_s, overhead_s = _round(x[0]), _round(x[1] * 1e-6), _round(x[2] * 1e-6)
    predicted = sent / (bandwidth * efficiency) + hops * latency_s + overhead_s
    return {"efficiency": efficiency, "latency_s": latency_s, "collective_overhead_s": overhead_s,
            "msle": _msle(np.log(predicted) - np.log(measured)), "mape": _mape(predicted, measured),
            "rows": int(measured.size)}


def transfer(fit: GpuFit, device: str) -> GpuFit:
    """The fitted A100 values carried to ``device`` (docs/validation-external.md, "Transfer"):
    the tensor and HBM curves keep their shape and are scaled by the device's pre-fit large-size
    efficiency over the A100's (:data:`ANCHORS`, values capped at 1); NVLink efficiency: devices
    whose pre-fit value was a measurement of their own link generation keep it, the A100 family
    takes the fit; tile, overlap exponent, overheads, latency and the simt curve carry as they are."""
    anchor, base = ANCHORS[device], ANCHORS["a100-80g"]
    tensor = fit.tensor_efficiency.scaled(anchor.tensor / base.tensor)
    hbm = fit.hbm_efficiency.scaled(anchor.hbm / base.hbm)
    return dataclasses.replace(
        fit, tensor_efficiency=_curve(tensor.sizes, tensor.values), hbm_efficiency=_curve(hbm.sizes, hbm.values),
        nvlink_efficiency=anchor.nvlink if anchor.nvlink is not None else fit.nvlink_efficiency)


def apply_fit(device: DeviceSpec, fit: GpuFit) -> DeviceSpec:
    """``device`` with ``fit``'s values in its tensor/simt units, HBM and NVLink (in memory)."""
    units = dict(device.units)
    tensor, simt = units["tensor"], units["simt"]
    assert isinstance(tensor, RooflineUnit) and isinstance(simt, RooflineUnit)
    units["tensor"] = dataclasses.replace(tensor, efficiency=fit.tensor_efficiency, op_overhead_s=fit.tensor_overhead_s,
                                          tile_m=fit.tile_m, overlap_exponent=fit.overlap_exponent)
    units["simt"] = dataclasses.replace(simt, efficiency=fit.simt_efficiency, op_overhead_s=fit.simt_overhead_s)
    memories = dict(device.memories)
    memories["hbm"] = dataclasses.replace(memories["hbm"], efficiency=fit.hbm_efficiency)
    links = dict(device.links)
    if "nvlink" in links and fit.nvlink_efficiency is not None:
        links["nvlink"] = dataclasses.replace(links["nvlink"], efficiency=fit.nvlink_efficiency,
                                              latency_s=fit.nvlink_latency_s,
                                              collective_overhead_s=fit.collective_overhead_s)
    return dataclasses.replace(device, units=units, memories=memories, links=links)


def fit_gpu_efficiency(data_dir: str | Path | None = None, *, write: bool = False, sample: int | None = None,
                       fit_path: Path = FIT_FILE, devices_dir: Path = DEVICES_DIR,
                       seed: int = SAMPLE_SEED) -> dict[str, Any]:
    """Fit the GPU efficiency data on the A100 files, transfer it, report the errors.

    Stages (each least squares on the log of predicted / measured, i.e. the mean squared log
    error, with monotone curves in (0, 1]):

    1. HBM efficiency curve over bytes and the tensor unit's ``op_overhead_s`` on the A100 GEMMs
       of at most 16 tokens (memory-bound whatever the compute efficiency);
    2. the tensor compute-efficiency curve over FLOP and the overlap exponent on all A100 GEMMs,
       for each tile height in :data:`TILE_M_CANDIDATES`, keeping the lowest objective;
    3. the simt efficiency curve and ``op_overhead_s`` on the A100 element-wise rows;
    4. NVLink efficiency, latency per hop and ``collective_overhead_s`` on the A100 intra-node
       all-reduce rows.

    ``sample``: fit on at most this many rows per (gpu, kind) (seeded; for tests). ``write``: write
    the result to ``fit_path`` and the values into the device TOML files under ``devices_dir``
    (refused with ``sample``). Returns the JSON-ready result (parameters, objectives, rows used,
    date, versions, transferred values per device, errors per device and op kind).
    """
    if write and sample is not None:
        raise ValueError("a fit on a sample is not written; drop sample= or write=")
    root = find_data_dir(data_dir)
    compute_all, network_all = load_compute(root), load_network(root)
    compute = _sample(compute_all[compute_all["gpu"] == FIT_GPU], sample, seed)
    network = network_all[(network_all["gpu"] == FIT_GPU) & network_all["intra_node"]
                          & (network_all["op"] == "all_reduce")]
    network = _sample(network, sample, seed)
    a100 = load_system(GPU_DEVICES[FIT_GPU]).primary_device
    tensor_unit, simt_unit = a100.units["tensor"], a100.units["simt"]
    assert isinstance(tensor_unit, RooflineUnit) and isinstance(simt_unit, RooflineUnit)
    peak, simt_peak = tensor_unit.peak_flops(DTYPE), simt_unit.peak_flops(DTYPE)
    bandwidth = a100.memories["hbm"].bandwidth_bytes_per_s

    gemm = compute[compute["kind"] == "gemm"]
    short = gemm[gemm["num_tokens"] <= MEMORY_BOUND_MAX_TOKENS]
    prior = EfficiencyCurve.constant(ANCHORS["a100-80g"].tensor)
    stage1 = _fit_unit(_Rows.of(short), peak, bandwidth, None, (), knots_memory=HBM_KNOTS_BYTES,
                       compute_fixed=prior)
    gemm_rows = _Rows.of(gemm)
    candidates = {tile: _fit_unit(gemm_rows, peak, bandwidth, stage1["memory"], TENSOR_KNOTS_FLOP, tile_m=tile,
                                  fit_exponent=True, overhead_fixed=stage1["overhead_s"])
                  for tile in TILE_M_CANDIDATES}
    tile_m = min(candidates, key=lambda t: (candidates[t]["msle"], t))
    stage2 = candidates[tile_m]
    elementwise = compute[compute["kind"] == "elementwise"]
    stage3 = _fit_unit(_Rows.of(elementwise), simt_peak, bandwidth, stage1["memory"], SIMT_KNOTS_FLOP,
                       starts=SIMT_STARTS)
    stage4 = _fit_link(network, a100.links["nvlink"].bandwidth_bytes_per_s)

    fit = GpuFit(tensor_efficiency=stage2["compute"], tensor_overhead_s=stage1["overhead_s"], tile_m=tile_m,
                 overlap_exponent=stage2["exponent"], hbm_efficiency=stage1["memory"],
                 simt_efficiency=stage3["compute"], simt_overhead_s=stage3["overhead_s"],
                 nvlink_efficiency=stage4["efficiency"], nvlink_latency_s=stage4["latency_s"],
                 collective_overhead_s=stage4["collective_overhead_s"])
    per_device = {name: transfer(fit, name) for name in FIT_DEVICES}
    specs = {gpu: apply_fit(load_system(name).primary_device, per_device[name]) for gpu, name in GPU_DEVICES.items()}
    frame = compare(compute=_sample(compute_all, sample, seed), network=_sample(network_all, sample, seed),
                    devices=specs)
    result: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "scipy_version": scipy.__version__, "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "data": {"source": f"{VIDUR_DIR} (microsoft/vidur data/profiling, MIT)",
                 "fit_files": sorted({*compute["source"], *network["source"]}),
                 "held_out_files": sorted({*compute_all.loc[compute_all["gpu"] != FIT_GPU, "source"],
                                           *network_all.loc[network_all["gpu"] != FIT_GPU, "source"]}),
                 "sample_per_kind": sample},
        "objective": "mean squared log error, mean(log(predicted / measured)^2), least squares (scipy "
                     "least_squares, trf) per stage",
        "stages": {
            "hbm_and_tensor_overhead": {"rows": stage1["rows"], "selection": f"A100 GEMMs, num_tokens <= "
                                        f"{MEMORY_BOUND_MAX_TOKENS}", "msle": stage1["msle"], "mape": stage1["mape"]},
            "tensor_compute": {"rows": stage2["rows"], "selection": "A100 GEMMs", "msle": stage2["msle"],
                               "mape": stage2["mape"], "tile_m_candidates": {
                                   str(t): {"msle": c["msle"], "mape": c["mape"]} for t, c in candidates.items()}},
            "simt": {"rows": stage3["rows"], "selection": "A100 element-wise ops", "msle": stage3["msle"],
                     "mape": stage3["mape"]},
            "nvlink": {"rows": stage4["rows"], "selection": "A100 all-reduce, group within one node",
                       "msle": stage4["msle"], "mape": stage4["mape"]},
        },
        "fit": fit.to_dict(),
        "anchors": {name: dataclasses.asdict(anchor) for name, anchor in ANCHORS.items()},
        "devices": {name: f.to_dict() for name, f in per_device.items()},
        "errors": summary(frame),
    }
    if write:
        fit_path.parent.mkdir(parents=True, exist_ok=True)
        fit_path.write_text(json.dumps(result, indent=2) + "\n")
        for name, values in per_device.items():
            write_device_fit(devices_dir / f"{name}.toml", values)
    return result


# --- writing the device files -----------------------------------------------------------------

_HEADER = re.compile(r"^\s*\[([^\[\]]+)\]\s*(#.*)?$")
_KEY = re.compile(r"^(?P<key>\s*[\w.]+)\s*=\s*(?P<value>[^#]*?)\s*(#\s*(?P<comment>.*))?$")


def _span(lines: list[str], table: str) -> tuple[int, int] | None:
    """Line range of a table's key lines: after its header, up to the last key before the next header."""
    start = next((i for i, line in enumerate(lines)
                  if (m := _HEADER.match(line)) and m.group(1).strip() == table), None)
    if start is None:
        return None
    end = next((j for j in range(start + 1, len(lines)) if _HEADER.match(lines[j])), len(lines))
    while end > start + 1 and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")):
        end -= 1
    return start + 1, end


def _was(value: str, comment: str | None) -> str:
    """The old value for a fitted line's comment (kept from an earlier fit's comment)."""
    if comment and FIT_TAG in comment and "was: " in comment:
        return comment.split("was: ", 1)[1]
    return f"{value} ({comment})" if comment else value


def _line(key: str, value: str, comment: str) -> str:
    text = f"{key} = {value}"
    return f"{text:<34} # {comment}"


def _set_key(lines: list[str], table: str, key: str, value: str, note: str, after: str | None = None) -> None:
    span = _span(lines, table)
    if span is None:
        raise KeyError(f"no [{table}] table")
    start, end = span
    for i in range(start, end):
        m = _KEY.match(lines[i])
        if m and m.group("key").strip() == key:
            was = _was(m.group("value"), m.group("comment"))
            lines[i] = _line(key, value, f"{FIT_TAG}; {note}; was: {was}")
            return
    at = end
    if after is not None:
        at = next((i + 1 for i in range(start, end) if (m := _KEY.match(lines[i])) and m.group("key").strip() == after),
                  end)
    lines.insert(at, _line(key, value, f"{FIT_TAG}; {note}; was: absent"))


def _set_curve(lines: list[str], table: str, curve: EfficiencyCurve, unit: str, note: str) -> None:
    span = _span(lines, table)
    if span is None:
        raise KeyError(f"no [{table}] table")
    start, end = span
    was = "absent"
    body = []
    for i in range(start, end):
        m = _KEY.match(lines[i])
        if m is None:
            body.append(lines[i])
            continue
        if m.group("key").strip() in ("value", "sizes"):
            was = _was(f"{m.group('key').strip()} = {m.group('value')}", m.group("comment"))
    sizes = ", ".join(_number(s) for s in curve.sizes)
    values = ", ".join(f"{v:.{SIG_DIGITS}g}" for v in curve.values)
    new = [_line("sizes", f"[{sizes}]", f"{unit}; {FIT_TAG}; was: {was}"),
           _line("values", f"[{values}]", f"{FIT_TAG}; {note}")]
    lines[start:end] = [*new, *body]


def _number(x: float) -> str:
    """A float as TOML text in E notation, e.g. 3.162e6."""
    if x == 0:
        return "0.0"
    mantissa, exponent = f"{x:.{SIG_DIGITS - 1}e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    if "." not in mantissa:
        mantissa += ".0"
    return f"{mantissa}e{int(exponent)}"


def write_device_fit(path: Path, fit: GpuFit) -> None:
    """Write ``fit``'s values into a device TOML file, replacing only the fitted keys and keeping
    every other line and comment; each fitted line's comment names the fit and the old value."""
    lines = path.read_text().splitlines()
    name = path.stem
    anchor, base = ANCHORS.get(name), ANCHORS["a100-80g"]
    scale_t = f"x {anchor.tensor:g}/{base.tensor:g} (this device's pre-fit large-size efficiency / A100's)" \
        if anchor and name != "a100-80g" else "as fitted"
    scale_m = f"x {anchor.hbm:g}/{base.hbm:g} (this device's pre-fit large-size efficiency / A100's)" \
        if anchor and name != "a100-80g" else "as fitted"
    _set_key(lines, "units.tensor", "op_overhead_s", _number(fit.tensor_overhead_s), "s, kernel time floor")
    _set_key(lines, "units.tensor", "tile_m", str(fit.tile_m),
             f"tile quantization of matmul rows (NVIDIA Matrix Multiplication Background User's Guide, 3.1); "
             f"best of {'/'.join(map(str, TILE_M_CANDIDATES))}", after="op_overhead_s")
    _set_key(lines, "units.tensor", "overlap_exponent", f"{fit.overlap_exponent:g}",
             "compute/memory overlap near the ridge", after="tile_m")
    _set_curve(lines, "units.tensor.efficiency", fit.tensor_efficiency, "FLOP", f"A100 curve {scale_t}")
    _set_key(lines, "units.simt", "op_overhead_s", _number(fit.simt_overhead_s), "s, kernel time floor")
    _set_curve(lines, "units.simt.efficiency", fit.simt_efficiency, "FLOP", "A100 curve as fitted")
    _set_curve(lines, "memories.hbm.efficiency", fit.hbm_efficiency, "bytes", f"A100 curve {scale_m}")
    if _span(lines, "links.nvlink") is not None and fit.nvlink_efficiency is not None:
        own = anchor is not None and anchor.nvlink is not None
        _set_key(lines, "links.nvlink", "efficiency", f"{fit.nvlink_efficiency:g}",
                 "kept: this link generation's own measured value" if own else "A100 NVLink3 fit")
        _set_key(lines, "links.nvlink", "latency_s", _number(fit.nvlink_latency_s), "s per hop")
        _set_key(lines, "links.nvlink", "collective_overhead_s", _number(fit.collective_overhead_s),
                 "s once per collective", after="efficiency")
    path.write_text("\n".join(lines) + "\n")
