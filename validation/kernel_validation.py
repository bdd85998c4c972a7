"""``decodex validate cpu|gpu``: time the validation kernels, predict each with the device spec,
and write a record (``validation/records/<device>/``).

Each kernel computes in fp32 on vector units (CPU SIMD lanes, GPU CUDA cores), so it is
predicted on the device's unit of role ``vector`` for fp32, never a tensor-core ceiling.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from decodex.core.dtypes import DType
from decodex.core.errors import DecodexError
from decodex.hw_models.device import DeviceSpec
from decodex.hw_models.op_time import op_time
from decodex.hw_models.roofline import RooflineUnit, overlap
from decodex.hw_models.system import load_system
from decodex.validation import records
from decodex.validation.host import calibrate_host, host_device, library_versions, machine_info
from decodex.validation.kernels.cuda_import import NoGpuError, require_gpu

__all__ = ["NoGpuError", "gpu_identity", "predict", "sm_fill", "spec_for_gpu", "validate_cpu", "validate_gpu",
           "vector_unit_name"]

# GPU product names (as the driver reports them) to catalog devices
GPU_NAMES = ((r"H200", "h200"), (r"H100", "h100-sxm"), (r"H800", "h800"), (r"H20\b", "h20"),
             (r"A800", "a800"), (r"A100.*40", "a100-40g"), (r"A100", "a100-80g"), (r"V100", "v100s"))


TIMING_METHOD = ("queued: bursts of launches behind a spin kernel, CUDA events around each burst "
                 "(validation/kernels/timing.py)")


def vector_unit_name(device: DeviceSpec, role: str) -> str:
    """The first unit of ``role`` with an fp32 datapath (the validation kernels compute in fp32)."""
    for name, unit in device.units.items():
        if unit.role == role and unit.supports(DType.FP32):
            return name
    raise DecodexError(f"device {device.name!r} has no {role} unit with an fp32 datapath")


def _row(kernel: str, shape: dict[str, int], dtype: str, op: Any, measured: float, predicted: float,
         **extra: Any) -> dict[str, Any]:
    return {"kernel": kernel, "op_kind": str(op.kind), "shape": json.dumps(shape, sort_keys=True), "dtype": dtype,
            "flops": op.flops, "bytes": op.bytes, "measured_s": measured, "predicted_s": predicted,
            "error": predicted / measured - 1.0, **extra}


def sm_fill(kernel: str, shape: dict[str, int], sms: int) -> float:
    """Fraction of a GPU's ``sms`` multiprocessors a validation case's launch occupies: its thread
    blocks (:func:`validation.kernels.launch_geometry.case_blocks`) over the SMs, at most 1."""
    from decodex.validation.kernels.launch_geometry import case_blocks

    return min(1.0, case_blocks(kernel, shape, sms) / sms)


def predict(spec: Any, shape: dict[str, int], dtype: str, device: DeviceSpec,
            sms: int | None = None) -> tuple[Any, float]:
    """The kernel's op and its predicted time (s) on ``device``'s vector unit. With ``sms`` (a
    GPU's multiprocessors) the compute term is divided by the launch's SM fill (:func:`sm_fill`):
    a case of fewer thread blocks than SMs computes on that many SMs only. Without it (CPUs) the
    unit's roofline as it stands."""
    op = spec.op(shape, dtype)
    unit = device.units[vector_unit_name(device, spec.unit_role)]
    cost = op_time(op, unit, device)
    if sms is None:
        return op, cost.time_s
    exponent = unit.overlap_exponent if isinstance(unit, RooflineUnit) else 0.0
    return op, overlap(cost.compute_s / sm_fill(spec.name, shape, sms), cost.memory_s, exponent) + cost.overhead_s


def validate_cpu(device: DeviceSpec | None = None, cases: Sequence[Any] | None = None, *, quick: bool = False,
                 repeats: int = 7, write: bool = True, root: Path = records.RECORDS_DIR, check: bool = True,
                 on_row: Callable[[dict[str, Any]], None] | None = None,
                 ) -> tuple[pd.DataFrame, dict[str, Any], Path | None]:
    """Time the Numba CPU kernels over ``cases`` (default ``CPU_CASES``), predict each on
    ``device`` (default: this host, calibrated now), and write a record; returns the cases, the
    error summary and the record path. ``check`` compares each output with its numpy reference;
    ``on_row`` sees each case's row as it is timed."""
    from decodex.validation.kernels import CPU_CASES, KERNELS, relative_error, time_cpu

    calibrated = None
    if device is None:
        calibrated = calibrate_host(quick=quick)
        device = host_device(calibrated)
    rng = np.random.default_rng(0)
    rows = []
    for case in cases or CPU_CASES:
        spec = KERNELS[case.kernel]
        inputs = spec.make_inputs(case.shape, case.dtype, rng)
        if check:
            error = relative_error(spec.run_cpu(inputs), spec.reference(inputs))
            if error > spec.tolerance[case.dtype]:
                raise DecodexError(f"kernel {case.kernel} {case.shape} is wrong: relative error {error:.2e}")
        timing = time_cpu(spec.run_cpu, inputs, repeats=repeats, warmup=1)
        op, predicted = predict(spec, case.shape, case.dtype, device)
        rows.append(_row(case.kernel, case.shape, case.dtype, op, timing.median_s, predicted))
        if on_row is not None:
            on_row(rows[-1])
    frame = pd.DataFrame(rows)
    frame["device"] = device.name
    path = None
    if write:
        machine = {**machine_info(), "device_kind": "cpu", "spec": device.name}
        if calibrated is not None:
            machine["calibration"] = {"peak_flops_fp32": device.units["cores"].peak_flops(DType.FP32),
                                      "bandwidth_bytes_per_s": device.main_memory.bandwidth_bytes_per_s,
                                      "op_overhead_s": device.units["cores"].op_overhead_s}
        path = records.write_record(device.name, machine, frame, kind="cpu", root=root)
    return frame, records.error_summary(frame), path


NVIDIA_SMI_QUERY = "name,driver_version,clocks.max.sm,clocks.max.mem,memory.total,power.limit"


def nvidia_smi(query: str = NVIDIA_SMI_QUERY) -> dict[str, str]:
    """``nvidia-smi --query-gpu=QUERY`` of the first GPU as ``{field: value}``; empty without it."""
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20, check=True).stdout.splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return {}
    return dict(zip(query.split(","), (v.strip() for v in out.split(",")), strict=False))


def gpu_identity() -> dict[str, Any]:
    """Name, compute capability, clocks, driver and memory of the current CUDA GPU. Raises
    NoGpuError (one line) without numba-cuda or without a usable GPU."""
    gpu = require_gpu().get_current_device()
    name = getattr(gpu, "name", "CUDA simulator")  # the simulator's device has no name
    name = name.decode() if isinstance(name, bytes) else str(name)
    capability = list(getattr(gpu, "compute_capability", ()))
    return {"gpu_name": name, "compute_capability": capability, "nvidia_smi": nvidia_smi(),
            "libraries": library_versions(), "date": datetime.now(UTC).isoformat(timespec="seconds")}


def spec_for_gpu(name: str) -> str:
    """The catalog device of a GPU product name (e.g. ``NVIDIA H100 80GB HBM3`` -> ``h100-sxm``)."""
    for pattern, device in GPU_NAMES:
        if re.search(pattern, name):
            return device
    raise DecodexError(f"no catalog spec for GPU {name!r}; pass --spec with a device file")


def validate_gpu(spec: str | None = None, cases: Sequence[Any] | None = None, *, repeats: int = 20,
                 write: bool = True, root: Path = records.RECORDS_DIR, check: bool = True,
                 on_row: Callable[[dict[str, Any]], None] | None = None,
                 ) -> tuple[pd.DataFrame, dict[str, Any], Path | None]:
    """Time the Numba CUDA kernels over ``cases`` (default ``GPU_CASES``) on this GPU, predict
    each with its spec (picked from the GPU's name unless ``spec`` is given), record the measured
    device-to-device copy bandwidth too, and write a record. ``on_row`` sees each case's row as
    it is timed (a caller can save it at once). Raises NoGpuError without a GPU."""
    identity = gpu_identity()
    from decodex.validation.kernels import (
        GPU_CASES,
        KERNELS,
        device_copy_bandwidth,
        relative_error,
        time_cuda,
        to_device,
    )

    device = load_system(spec or spec_for_gpu(identity["gpu_name"])).primary_device
    from decodex.validation.kernels.cuda_launch import sm_count

    sms = sm_count()
    rng = np.random.default_rng(0)
    rows = []
    for case in cases or GPU_CASES:
        kernel = KERNELS[case.kernel]
        inputs = kernel.make_inputs(case.shape, case.dtype, rng)
        dev = to_device(inputs)
        if check:
            run = kernel.run_cuda(dev)
            error = relative_error(run.output.copy_to_host(), kernel.reference(inputs))
            if error > kernel.tolerance[case.dtype]:
                raise DecodexError(f"kernel {case.kernel} {case.shape} is wrong on the GPU: error {error:.2e}")
        timing = time_cuda(kernel, dev, repeats=repeats, cold=case.cold)
        op, predicted = predict(kernel, case.shape, case.dtype, device, sms)
        rows.append(_row(case.kernel, case.shape, case.dtype, op, timing.median_s, predicted, copies=timing.copies,
                         launches_per_sample=timing.launches_per_sample, host_bound=timing.host_bound))
        if on_row is not None:
            on_row(rows[-1])
        del dev
    frame = pd.DataFrame(rows)
    frame["device"] = device.name
    copy_bw = device_copy_bandwidth()
    path = None
    if write:
        machine = {**identity, "device_kind": "gpu", "spec": device.name, "timing": TIMING_METHOD,
                   "multiprocessors": sms, "device_copy_bandwidth_bytes_per_s": copy_bw}
        path = records.write_record(device.name, machine, frame, kind="gpu", root=root)
    summary = records.error_summary(frame)
    summary.setdefault(device.name, {})["copy_bandwidth_bytes_per_s"] = copy_bw
    return frame, summary, path
