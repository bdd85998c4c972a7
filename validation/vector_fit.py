"""Refit a GPU's vector (CUDA-core) unit on that GPU's own Numba kernel record:
``decodex validate gpu --fit RECORD [--write]``.

Method. The record's rows (``validation/records/<device>/gpu-*.csv``: FLOP, bytes and measured
seconds per kernel case) are sorted by kernel and FLOP, and taken alternately into a fit half and a
check half, so each kernel family and size range is in both. On the fit half a least-squares fit of
log(predicted / measured) (the solver of :mod:`validation.external_fit`) sets the vector unit's
compute-efficiency curve over FLOP at :data:`KNOTS` (non-decreasing with size) and its op overhead
(s); the fp32 peak, the HBM bandwidth and its efficiency curve stay as the spec has them (the HBM
curve is shared with the tensor unit, whose GEMMs the end-to-end record checks). The check half
is reported with the spec's values at fitting time (``spec``) and the fitted ones (``fitted``):
the MAPE and the worst signed error.

The predictions are those of ``validate gpu`` (:func:`validation.kernel_validation.predict`):
each kernel's op on the device's fp32 vector unit, whose compute term is divided by the launch's
SM fill, the fraction of the GPU's multiprocessors its thread blocks occupy (a 64^3 GEMM is one
block on one of 132 SMs). The fill is a property of the validation kernel's launch, which the
record's shapes determine (:func:`validation.kernels.launch_geometry.case_blocks`); an operator
of a decode graph carries no grid, and ``estimate`` prices it on the whole GPU.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from decodex.core.dtypes import DType
from decodex.core.errors import DecodexError
from decodex.hw_models.efficiency import EfficiencyCurve
from decodex.hw_models.roofline import RooflineUnit
from decodex.hw_models.system import DEVICES_DIR, load_system
from decodex.validation import records
from decodex.validation.external_fit import _monotone, _solve
from decodex.validation.gpu_fit import round_sig, rounded_curve
from decodex.validation.kernels.launch_geometry import DEFAULT_SMS

__all__ = ["KNOTS", "fit_vector_unit", "kernel_times", "record_fill", "split_halves", "write_vector_fit"]

KNOTS = (1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12)
"""FLOP sizes of the fitted curve: the record spans 4e6 (a 2048 x 1024 GEMV) to 1.1e12 FLOP (8192^3)."""
STARTS = (0.2, 0.05)
"""Initial values of the curve's top point; the better fit is kept (deterministic)."""
FITS_DIR = Path(__file__).resolve().parent / "fits"


def split_halves(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The fit half and the check half of a kernel record: rows sorted by kernel, then FLOP, then
    shape, taken alternately (even positions fit, odd check)."""
    ordered = frame.sort_values(["kernel", "flops", "shape", "dtype"], kind="stable").reset_index(drop=True)
    return ordered.iloc[::2].reset_index(drop=True), ordered.iloc[1::2].reset_index(drop=True)


def _stats(predicted: np.ndarray, measured: np.ndarray) -> dict[str, float]:
    errors = predicted / measured - 1.0
    worst = int(np.argmax(np.abs(errors)))
    return {"mape": float(np.mean(np.abs(errors))), "worst_error": float(errors[worst]), "rows": int(errors.size)}


def _vector_unit(device: Any) -> tuple[str, RooflineUnit]:
    from decodex.validation.kernel_validation import vector_unit_name

    name = vector_unit_name(device, "vector")
    unit = device.units[name]
    if not isinstance(unit, RooflineUnit):
        raise DecodexError(f"device {device.name!r}: its vector unit {name!r} is not a roofline unit to fit")
    return name, unit


def _record_path(record: str | Path) -> Path:
    path = Path(record)
    if not path.exists() and (records.RECORDS_DIR / path).exists():
        path = records.RECORDS_DIR / path
    if not path.exists():
        raise DecodexError(f"kernel record {str(record)!r} not found (a validation/records/<device>/gpu-*.csv)")
    return path


def kernel_times(frame: pd.DataFrame, fill: np.ndarray, peak_flops: float, bandwidth_bytes_per_s: float,
                 compute: EfficiencyCurve, memory: EfficiencyCurve, overhead_s: float) -> np.ndarray:
    """Predicted times (s) of a kernel record's rows on a vector unit, as
    :func:`validation.kernel_validation.predict` prices them on a GPU: the compute term (FLOP over
    peak x efficiency at that FLOP) divided by the launch's SM fill, the memory term (bytes over
    bandwidth x efficiency at those bytes), the larger of the two plus the overhead."""
    flops, nbytes = frame["flops"].to_numpy(float), frame["bytes"].to_numpy(float)
    compute_s = np.where(flops > 0, flops / (peak_flops * compute.at_many(flops) * fill), 0.0)
    memory_s = np.where(nbytes > 0, nbytes / (bandwidth_bytes_per_s * memory.at_many(nbytes)), 0.0)
    return np.maximum(compute_s, memory_s) + overhead_s


def record_fill(frame: pd.DataFrame, sms: int) -> np.ndarray:
    """Each row's SM fill (:func:`validation.kernel_validation.sm_fill`) on a GPU of ``sms`` SMs."""
    from decodex.validation.kernel_validation import sm_fill

    return np.array([sm_fill(str(k), json.loads(str(s)), sms) for k, s in zip(frame["kernel"], frame["shape"],
                                                                             strict=True)])


def fit_vector_unit(record: str | Path, spec: str | None = None) -> dict[str, Any]:
    """Fit the vector unit of ``spec`` (default: the record's device) on the fit half of the kernel
    ``record`` and check it on the other half. Returns the curve (sizes in FLOP), the overhead (s),
    and the MAPE and worst error of the spec's values and of the fitted ones on each half."""
    path = _record_path(record)
    frame = pd.read_csv(path)
    meta = json.loads(path.with_suffix(".json").read_text()) if path.with_suffix(".json").exists() else {}
    device_name = spec or meta.get("device")
    if not device_name:
        raise DecodexError(f"kernel record {path.name}: its JSON names no device; pass the device spec")
    device = load_system(str(device_name)).primary_device
    unit_name, unit = _vector_unit(device)
    if unit.overlap_exponent > 0:
        raise DecodexError(f"device {device.name!r}: the vector-unit fit assumes no overlap_exponent")
    memory = device.memories[unit.memory]
    peak, bandwidth = unit.peak_flops(DType.FP32), memory.bandwidth_bytes_per_s
    sms = int(meta.get("multiprocessors") or DEFAULT_SMS)
    frame["fill"] = record_fill(frame, sms)
    fit_half, check_half = split_halves(frame)

    def times(half: pd.DataFrame, curve: EfficiencyCurve, overhead_s: float) -> np.ndarray:
        return kernel_times(half, half["fill"].to_numpy(), peak, bandwidth, curve, memory.efficiency, overhead_s)

    def unpack(x: np.ndarray) -> tuple[EfficiencyCurve, float]:
        return EfficiencyCurve(KNOTS, tuple(_monotone(x[:-1]))), float(x[-1]) * 1e-6

    log_measured = np.log(fit_half["measured_s"].to_numpy(float))

    def residuals(x: np.ndarray) -> np.ndarray:
        return np.log(times(fit_half, *unpack(x))) - log_measured

    lower, upper = [1e-3] * len(KNOTS) + [0.0], [1.0] * len(KNOTS) + [100.0]
    solutions = [_solve(residuals, [0.95] * (len(KNOTS) - 1) + [start, 4.0], lower, upper) for start in STARTS]
    curve, overhead_s = unpack(min(solutions, key=lambda x: float(np.mean(residuals(x) ** 2))))
    curve, overhead_s = rounded_curve(curve.sizes, curve.values), round_sig(overhead_s)

    out: dict[str, Any] = {
        "device": device.name, "unit": unit_name, "record": path.relative_to(records.RECORDS_DIR).as_posix()
        if path.is_relative_to(records.RECORDS_DIR) else path.name,
        "method": "rows sorted by kernel and FLOP, alternate rows fit / check; compute term divided by each "
                  "launch's SM fill (blocks / SMs, at most 1); least squares on log(predicted / measured) of the "
                  "fit half (scipy least_squares, trf); fp32 peak and HBM curve held",
        "multiprocessors": sms, "rows_below_one_wave": int((frame["fill"] < 1).sum()),
        "curve": {"sizes": list(curve.sizes), "values": list(curve.values)}, "overhead_s": overhead_s,
        "spec": {"sizes": list(unit.efficiency.sizes), "values": list(unit.efficiency.values),
                 "overhead_s": unit.op_overhead_s},
    }
    for label, half in (("fit", fit_half), ("check", check_half)):
        measured = half["measured_s"].to_numpy(float)
        out[label] = {"spec": _stats(times(half, unit.efficiency, unit.op_overhead_s), measured),
                      "fitted": _stats(times(half, curve, overhead_s), measured)}
        for key, (c, o) in (("spec_by_kernel", (unit.efficiency, unit.op_overhead_s)),
                            ("fitted_by_kernel", (curve, overhead_s))):
            out[label][key] = {str(kernel): _stats(times(group, c, o), group["measured_s"].to_numpy(float))["mape"]
                               for kernel, group in half.groupby("kernel")}
    return out


def write_vector_fit(result: dict[str, Any], devices_dir: Path = DEVICES_DIR, fits_dir: Path = FITS_DIR) -> Path:
    """Write a :func:`fit_vector_unit` result into its device's TOML file (only the vector unit's
    ``op_overhead_s`` and efficiency curve; each line's comment names the record and the old value)
    and the whole result to ``fits_dir/<device>-vector.json`` (unless the spec already held these
    values: that file keeps the comparison with the values they replaced). Returns the TOML path."""
    from decodex.validation.device_fit_writer import kernel_fit_tag, write_unit_fit

    path = devices_dir / f"{result['device']}.toml"
    curve = EfficiencyCurve(tuple(result["curve"]["sizes"]), tuple(result["curve"]["values"]))
    check = result["check"]["fitted"]
    note = (f"check half MAPE {check['mape']:.0%}, worst {check['worst_error']:+.0%} "
            f"(validation/fits/{result['device']}-vector.json)")
    write_unit_fit(path, f"units.{result['unit']}", curve, result["overhead_s"], kernel_fit_tag(result["record"]),
                   note)
    held = result["spec"]["sizes"] == result["curve"]["sizes"] and result["spec"]["values"] == result["curve"]["values"]
    if not held or result["spec"]["overhead_s"] != result["overhead_s"]:  # a re-fit keeps the first comparison
        fits_dir.mkdir(parents=True, exist_ok=True)
        (fits_dir / f"{result['device']}-vector.json").write_text(json.dumps(result, indent=2) + "\n")
    return path
