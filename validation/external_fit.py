"""Fitting the GPU specs' efficiency data on Vidur's A100 timings (``decodex validate external --fit``).

:func:`fit_gpu_efficiency` fits the tensor/simt/HBM/NVLink efficiency data of the GPU specs on
the A100 files only (the H100 files stay held out), transfers them to the other NVIDIA specs
(validation/gpu_fit.py) and can write them into the device TOML files
(validation/device_fit_writer.py). The fit evaluates a vectorized copy of the roofline
(:func:`roofline_times`, same arithmetic as hw_models/roofline.py). Method and results:
docs/validation-external.md. Units: s, FLOP, bytes; efficiencies as fractions.
"""

from __future__ import annotations

import dataclasses
import json
import platform
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy
from scipy.optimize import least_squares

from decodex.hw_models.efficiency import EfficiencyCurve
from decodex.hw_models.roofline import RooflineUnit, padded_rows
from decodex.hw_models.system import DEVICES_DIR, load_system
from decodex.validation.device_fit_writer import write_device_fit
from decodex.validation.external_compare import SAMPLE_SEED, compare, sample_rows, summary
from decodex.validation.external_data import FIT_GPU, GPU_DEVICES, VIDUR_DIR, find_data_dir, load_compute, load_network
from decodex.validation.external_ops import DTYPE, compute_ops
from decodex.validation.gpu_fit import (
    ANCHORS,
    TILE_M_CANDIDATES,
    GpuFit,
    apply_fit,
    round_sig,
    rounded_curve,
    transfer,
)
from decodex.workloads.ops import MatmulOp

FIT_FILE = Path(__file__).resolve().parent / "fits" / "gpu_efficiency.json"
# The NVIDIA GPU specs the fit is transferred to.
FIT_DEVICES = ("a100-40g", "a100-80g", "a800", "h100-sxm", "h800", "h200", "h20", "v100s")
TENSOR_KNOTS_FLOP = (1e8, 1e9, 1e10, 1e11, 1e12, 1e13)
HBM_KNOTS_BYTES = (3.162e6, 1e7, 3.162e7, 1e8, 3.162e8, 1e9)  # half decades, rounded as written to the specs
SIMT_KNOTS_FLOP = (1e5, 1e6, 1e7, 1e8, 1e9, 1e10)
# The element-wise rows are memory-bound at any simt efficiency above a few percent, where the
# objective is flat in it: start the simt curve high and low and keep the best.
SIMT_STARTS = (0.8, 0.1, 0.02)
MEMORY_BOUND_MAX_TOKENS = 16  # GEMMs this short (<= 16 FLOP/B) are far below the A100 ridge (153 FLOP/B)


# --- the vectorized roofline the fit evaluates (same arithmetic as hw_models/roofline.py) ------

@dataclass(frozen=True)
class FitRows:
    """Per-row arrays of a set of measured ops: FLOP, rows m (0: not a matmul), bytes, measured s."""

    flops: np.ndarray
    m: np.ndarray
    nbytes: np.ndarray
    measured_s: np.ndarray

    @classmethod
    def of(cls, frame: pd.DataFrame) -> FitRows:
        """The arrays of a ``load_compute`` frame's rows (FLOP, rows, bytes per device; s)."""
        ops = compute_ops(frame)
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

def _fit_unit(rows: FitRows, peak: float, bandwidth: float, memory: EfficiencyCurve | None,
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
    compute, mem = rounded_curve(compute.sizes, compute.values), rounded_curve(mem.sizes, mem.values)
    overhead, exponent = round_sig(overhead), round_sig(exponent) if fit_exponent else 0.0
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
    efficiency, latency_s, overhead_s = round_sig(x[0]), round_sig(x[1] * 1e-6), round_sig(x[2] * 1e-6)
    predicted = sent / (bandwidth * efficiency) + hops * latency_s + overhead_s
    return {"efficiency": efficiency, "latency_s": latency_s, "collective_overhead_s": overhead_s,
            "msle": _msle(np.log(predicted) - np.log(measured)), "mape": _mape(predicted, measured),
            "rows": int(measured.size)}


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
    compute = sample_rows(compute_all[compute_all["gpu"] == FIT_GPU], sample, seed)
    network = network_all[(network_all["gpu"] == FIT_GPU) & network_all["intra_node"]
                          & (network_all["op"] == "all_reduce")]
    network = sample_rows(network, sample, seed)
    a100 = load_system(GPU_DEVICES[FIT_GPU]).primary_device
    tensor_unit, simt_unit = a100.units["tensor"], a100.units["simt"]
    assert isinstance(tensor_unit, RooflineUnit) and isinstance(simt_unit, RooflineUnit)
    peak, simt_peak = tensor_unit.peak_flops(DTYPE), simt_unit.peak_flops(DTYPE)
    bandwidth = a100.memories["hbm"].bandwidth_bytes_per_s

    gemm = compute[compute["kind"] == "gemm"]
    short = gemm[gemm["num_tokens"] <= MEMORY_BOUND_MAX_TOKENS]
    prior = EfficiencyCurve.constant(ANCHORS["a100-80g"].tensor)
    stage1 = _fit_unit(FitRows.of(short), peak, bandwidth, None, (), knots_memory=HBM_KNOTS_BYTES,
                       compute_fixed=prior)
    gemm_rows = FitRows.of(gemm)
    candidates = {tile: _fit_unit(gemm_rows, peak, bandwidth, stage1["memory"], TENSOR_KNOTS_FLOP, tile_m=tile,
                                  fit_exponent=True, overhead_fixed=stage1["overhead_s"])
                  for tile in TILE_M_CANDIDATES}
    tile_m = min(candidates, key=lambda t: (candidates[t]["msle"], t))
    stage2 = candidates[tile_m]
    elementwise = compute[compute["kind"] == "elementwise"]
    stage3 = _fit_unit(FitRows.of(elementwise), simt_peak, bandwidth, stage1["memory"], SIMT_KNOTS_FLOP,
                       starts=SIMT_STARTS)
    stage4 = _fit_link(network, a100.links["nvlink"].bandwidth_bytes_per_s)

    fit = GpuFit(tensor_efficiency=stage2["compute"], tensor_overhead_s=stage1["overhead_s"], tile_m=tile_m,
                 overlap_exponent=stage2["exponent"], hbm_efficiency=stage1["memory"],
                 simt_efficiency=stage3["compute"], simt_overhead_s=stage3["overhead_s"],
                 nvlink_efficiency=stage4["efficiency"], nvlink_latency_s=stage4["latency_s"],
                 collective_overhead_s=stage4["collective_overhead_s"])
    per_device = {name: transfer(fit, name) for name in FIT_DEVICES}
    specs = {gpu: apply_fit(load_system(name).primary_device, per_device[name]) for gpu, name in GPU_DEVICES.items()}
    frame = compare(compute=sample_rows(compute_all, sample, seed), network=sample_rows(network_all, sample, seed),
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
