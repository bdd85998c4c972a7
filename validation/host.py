"""``decodex calibrate host``: microbenchmarks that give this machine's CPU spec.

The peaks do not come from the kernels being validated: compute from numpy's BLAS SGEMM (the
best a core can do in fp32), bandwidth from numpy's array copy (STREAM "copy": bytes read +
written), per-kernel overhead from an empty Numba parallel region. The result is a device spec
(the catalog's TOML layout, with a comment naming the microbenchmark on each measured line).
"""

from __future__ import annotations

import os
import platform
import re
import time
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

import numpy as np

from decodex.hw_models.device import DeviceSpec, device_from_dict


def cpu_model() -> str:
    """The CPU model name (``/proc/cpuinfo``, else ``platform.processor()``)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_bytes() -> int:
    """Physical memory, bytes."""
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def library_versions() -> dict[str, str]:
    """Versions of the libraries a measurement depends on."""
    out = {"python": platform.python_version()}
    for name in ("numpy", "numba", "scipy", "numba-cuda", "decodex"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def machine_info() -> dict[str, Any]:
    """The machine a CPU record was measured on: CPU model, cores, memory, libraries, date."""
    return {"cpu_model": cpu_model(), "cores": os.cpu_count(), "memory_bytes": memory_bytes(),
            "platform": platform.platform(), "libraries": library_versions(),
            "date": datetime.now(UTC).isoformat(timespec="seconds")}


def host_id(model: str | None = None) -> str:
    """A file-name-safe id for this CPU, e.g. ``cpu-intel-xeon-platinum-8488c``."""
    text = (model or cpu_model()).lower()
    text = re.sub(r"\(r\)|\(tm\)|cpu|@.*$|processor", " ", text)
    return "cpu-" + "-".join(re.findall(r"[a-z0-9]+", text))[:48].strip("-")


def _best_rate(work: float, call: Any, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return work / best


def measure_peak_flops(n: int = 2048, repeats: int = 5) -> float:
    """Best fp32 FLOP/s of numpy's BLAS on an n×n×n matrix product (2n³ FLOP)."""
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    a @ b  # warm-up: threads and caches
    return _best_rate(2.0 * n**3, lambda: a @ b, repeats)


def measure_bandwidth(nbytes: int = 1 << 29, repeats: int = 5) -> float:
    """Best memory bandwidth, B/s, of a numpy array copy (bytes read + bytes written)."""
    src = np.ones(nbytes // 4, dtype=np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    return _best_rate(2.0 * src.nbytes, lambda: np.copyto(dst, src), repeats)


def measure_parallel_overhead(repeats: int = 2000) -> float:
    """Median seconds of an empty Numba ``prange`` region over the cores (the fixed cost of a
    parallel kernel call)."""
    from numba import njit, prange

    @njit(parallel=True, cache=False)
    def touch(out: np.ndarray) -> None:  # pragma: no cover - compiled
        for i in prange(out.size):
            out[i] = i

    out = np.zeros(max(os.cpu_count() or 1, 1), dtype=np.float64)
    touch(out)
    samples = np.empty(repeats)
    for index in range(repeats):
        start = time.perf_counter()
        touch(out)
        samples[index] = time.perf_counter() - start
    return float(np.median(samples))


def calibrate_host(quick: bool = False) -> dict[str, Any]:
    """Measure this host and return its device spec as a mapping (catalog TOML layout)."""
    peak = measure_peak_flops(1024 if quick else 2048, 3 if quick else 5)
    bandwidth = measure_bandwidth(1 << 27 if quick else 1 << 29, 3 if quick else 5)
    overhead = measure_parallel_overhead(200 if quick else 2000)
    model = cpu_model()
    unit = {"model": "roofline", "memory": "dram", "op_overhead_s": overhead, "peak_flops": {"fp32": peak},
            "energy_per_flop_j": {"fp32": 0.0}, "efficiency": 1.0}
    return {
        "device": {"name": host_id(model), "kind": "cpu", "description": f"{model}, {os.cpu_count()} cores",
                   "default_mapper": "gpu", "power": {"idle_w": 0.0, "tdp_w": 1.0}, "price": {"usd_per_hour": 0.0}},
        "units": {"blas": {**unit, "role": "matrix"}, "cores": {**unit, "role": "vector"}},
        "memories": {"dram": {"capacity_bytes": float(memory_bytes()), "bandwidth_bytes_per_s": bandwidth,
                              "efficiency": 1.0, "energy_per_byte_j": 0.0}},
        "_measured": {"date": datetime.now(UTC).isoformat(timespec="seconds"), "quick": quick,
                      "libraries": library_versions()},
    }


def host_device(spec: dict[str, Any]) -> DeviceSpec:
    """The DeviceSpec of a :func:`calibrate_host` mapping."""
    return device_from_dict({k: v for k, v in spec.items() if not k.startswith("_")}, "<calibrated host>")


def host_spec_toml(spec: dict[str, Any]) -> str:
    """The calibrated spec as a commented TOML device file."""
    dev, units, dram = spec["device"], spec["units"], spec["memories"]["dram"]
    measured = spec["_measured"]
    how = f"decodex calibrate host, {measured['date']}"
    lines = [
        f"# {dev['description']}: measured by `decodex calibrate host` (validation/host.py), {measured['date']}",
        f"# libraries: {measured['libraries']}",
        "",
        "[device]",
        f'name = "{dev["name"]}"',
        'kind = "cpu"',
        f'description = "{dev["description"]}"',
        'default_mapper = "gpu"',
        "",
        "[device.power]",
        "idle_w = 0.0                      # not measured (calibration measures time, not power)",
        "tdp_w = 1.0                       # not measured; placeholder > 0 required by the loader",
        "",
        "[device.price]",
        "usd_per_hour = 0.0                # not priced",
    ]
    for name, unit in units.items():
        lines += [
            "",
            f"[units.{name}]",
            'model = "roofline"',
            f'role = "{unit["role"]}"',
            'memory = "dram"',
            f"op_overhead_s = {unit['op_overhead_s']:.4e}   # median empty Numba prange region ({how})",
            "efficiency = 1.0                  # the peak below is already an achieved rate",
            f"peak_flops.fp32 = {unit['peak_flops']['fp32']:.4e}   # best numpy BLAS sgemm ({how})",
            "energy_per_flop_j.fp32 = 0.0      # not measured",
        ]
    lines += [
        "",
        "[memories.dram]",
        f"capacity_bytes = {dram['capacity_bytes']:.4e}   # physical memory (sysconf)",
        f"bandwidth_bytes_per_s = {dram['bandwidth_bytes_per_s']:.4e}   # best numpy copy, read + write ({how})",
        "efficiency = 1.0                  # the bandwidth above is already achieved",
        "energy_per_byte_j = 0.0           # not measured",
    ]
    return "\n".join(lines) + "\n"
