"""Vidur's measured times against what the GPU device specs predict (``decodex validate external``).

Each measured operator becomes its Decodex op (validation/external_ops.py); the device spec prices
it (``hw_models.op_time`` on unit ``tensor`` for the GEMMs, ``simt`` for the element-wise ops;
``hw_models.collective_cost`` on the NVLink for the collectives). :func:`compare` reports
``error = predicted / measured - 1`` per case (times in s); :func:`summary` gives MAPE and max
|error| per device and op kind.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from decodex.hw_models import collective_cost, op_time
from decodex.hw_models.device import DeviceSpec
from decodex.hw_models.system import load_system
from decodex.validation.external_data import FIT_GPU, GPU_DEVICES, load_compute, load_network
from decodex.validation.external_ops import DTYPE, compute_ops, shape_text

KINDS = ("gemm", "elementwise", "all_reduce", "send_recv")
SAMPLE_SEED = 0


def catalog_devices(devices: Mapping[str, DeviceSpec] | None = None) -> dict[str, DeviceSpec]:
    """Vidur GPU name -> the device spec that prices it: the catalog's, replaced by ``devices``
    where given (no units)."""
    out = {gpu: load_system(name).primary_device for gpu, name in GPU_DEVICES.items()}
    if devices:
        out.update(devices)
    return out


def sample_rows(frame: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """At most ``n`` rows per (gpu, kind) of a loader frame, a seeded choice in row order
    (all rows when ``n`` is None)."""
    if n is None:
        return frame
    parts = [group.sample(min(n, len(group)), random_state=seed) for _, group in frame.groupby(["gpu", "kind"])]
    return pd.concat(parts).sort_index() if parts else frame


def compare(data_dir: str | Path | None = None, sample: int | None = None, *,
            compute: pd.DataFrame | None = None, network: pd.DataFrame | None = None,
            devices: Mapping[str, DeviceSpec] | None = None, inter_node: bool = False,
            seed: int = SAMPLE_SEED) -> pd.DataFrame:
    """Measured against predicted, one row per measured case (times in s, FLOP, bytes).

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
    compute = sample_rows(compute, sample, seed)
    network = sample_rows(network, sample, seed)
    specs = catalog_devices(devices)
    frames = [_compare_compute(compute, specs), _compare_network(network, specs)]
    frame = pd.concat([f for f in frames if not f.empty], ignore_index=True)
    frame["error"] = frame["predicted_s"] / frame["measured_s"] - 1.0
    return frame


def _compare_compute(compute: pd.DataFrame, specs: Mapping[str, DeviceSpec]) -> pd.DataFrame:
    ops = compute_ops(compute)
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
        "shape": [shape_text(op) for op in ops], "num_tokens": compute["num_tokens"].to_numpy(),
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
        # Vidur profiles NCCL calls (torch.distributed): the ring, whatever else the link offers
        predicted.append(collective_cost(op, float(payload), int(workers), link, algorithm="ring").time_s)
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
