"""Timing of the validation kernels: CPU wall clock and CUDA events.

CPU: ``time.perf_counter`` around each call after ``warmup`` calls (the first compiles).

CUDA: launches are timed **queued behind a spin kernel**: a one-thread kernel of a dependent
FMA chain keeps the GPU busy while the host enqueues a CUDA event, ``n`` launches and a second
event, so the GPU runs the ``n`` kernels back to back and the events see GPU time only (per
launch: the kernel plus the GPU's own gap between kernels, as in a CUDA graph). Without the spin,
an event pair around one launch also holds the host's launch cost (Numba's dispatch, measured at
46-85 us on an H200 from the tiny cases of validation/records/h200/gpu-20261204T120803Z), which
is not GPU time. ``n`` makes a burst last about ``QUEUE_TARGET_S``; the spin lasts
``SPIN_PER_LAUNCH_S`` per queued launch, and a burst whose host enqueue outlasted its spin is
counted (``host_bound``). Under the simulator (no timing) one event pair per launch is used.
Every input copy gets a warm-up launch first (the first compiles).

**L2 rule**: a case meant to be HBM-bound (``cold=True``, the default) whose working set W (inputs +
output, bytes) is below 4x the L2 (``l2_bytes``, 50 MB on H100/H200) is run on ``copies =
min(max_copies, max(2, ceil(4 * L2 / W)))`` device copies of its inputs, launched in turn, so each
buffer comes back only after about 4x L2 bytes of other buffers have gone through the cache (for W
below 4 * L2 / max_copies, about 3 MB with the defaults, the distance is max_copies * W and the case
is partly L2-resident anyway). ``cold=False`` (cases meant to measure L2) and W >= 4x L2 use the
inputs as given. Kernels that write an input (attention appends to its caches) write the same values
on every launch.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from decodex.validation.kernels.cuda_import import numba_cuda, simulator_selected

L2_BYTES = 50e6
"""L2 capacity assumed by the rotation rule, B (H100 SXM / H200: 50 MB)."""
QUEUE_TARGET_S = 2e-3
"""GPU time of one queued burst of launches, s."""
SPIN_PER_LAUNCH_S = 300e-6
"""Spin time per queued launch, s: above Numba's host launch cost (46-85 us measured on an H200)."""
MAX_QUEUED = 64
"""Most launches in one burst."""


@dataclass(frozen=True)
class TimingResult:
    """Times of repeated runs, s: ``median_s``, ``min_s`` and every sample (each the mean of
    ``launches_per_sample`` queued launches); ``copies`` of the inputs rotated (1: none), the
    ``working_set_bytes`` (B) of one copy, and ``host_bound``: bursts whose host enqueue outlasted
    the spin (their samples may hold idle GPU time)."""

    median_s: float
    min_s: float
    samples_s: tuple[float, ...]
    copies: int = 1
    working_set_bytes: float = 0.0
    launches_per_sample: int = 1
    host_bound: int = 0

    @property
    def repeats(self) -> int:
        """Number of timed runs."""
        return len(self.samples_s)


def _result(samples: list[float], copies: int = 1, working_set: float = 0.0) -> TimingResult:
    return TimingResult(statistics.median(samples), min(samples), tuple(samples), copies, working_set)


def time_cpu(fn: Callable[[Any], Any], inputs: Any, repeats: int = 10, warmup: int = 1) -> TimingResult:
    """Wall-clock seconds of ``fn(inputs)``: ``warmup`` untimed calls (>= 1; the first compiles),
    then ``repeats`` timed calls (``time.perf_counter``)."""
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    for _ in range(max(1, warmup)):
        fn(inputs)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(inputs)
        samples.append(time.perf_counter() - start)
    return _result(samples)


def nbytes(arrays: Mapping[str, Any] | Any) -> float:
    """Bytes of an array or of all arrays in a mapping (host or device), B."""
    values = arrays.values() if isinstance(arrays, Mapping) else [arrays]
    return float(sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in values if np.ndim(v) >= 1))


def rotation_copies(working_set: float, cold: bool = True, l2_bytes: float = L2_BYTES, max_copies: int = 64) -> int:
    """Input copies to rotate for a working set of ``working_set`` B (the module's L2 rule)."""
    if not cold or working_set >= 4 * l2_bytes or working_set <= 0:
        return 1
    return int(min(max_copies, max(2, math.ceil(4 * l2_bytes / working_set))))


def _device_copy(dev: Mapping[str, Any]) -> dict[str, Any]:
    cuda = numba_cuda()

    out: dict[str, Any] = {}
    for key, v in dev.items():
        if np.ndim(v) >= 1 and hasattr(v, "copy_to_device"):
            clone = cuda.device_array(v.shape, dtype=v.dtype)
            clone.copy_to_device(v)
            out[key] = clone
        else:
            out[key] = v
    return out


def _events(cuda: Any) -> tuple[Any, Any]:
    """A start/end pair of timing events (the simulator's events take no arguments)."""
    try:
        return cuda.event(timing=True), cuda.event(timing=True)
    except TypeError:
        return cuda.event(), cuda.event()


def _elapsed_s(start: Any, end: Any) -> float:
    end.synchronize()
    return float(start.elapsed_time(end)) * 1e-3


def time_cuda(kernel_spec: Any, device_inputs: Mapping[str, Any], repeats: int = 20, *, cold: bool = True,
              l2_bytes: float = L2_BYTES, max_copies: int = 64) -> TimingResult:
    """GPU seconds per launch of ``kernel_spec.run_cuda`` on ``device_inputs`` (from ``to_device``),
    measured with CUDA events around each launch; inputs rotated over copies by the module's L2
    rule. Under the simulator events carry no time (samples are negative)."""
    cuda = numba_cuda()

    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    first = kernel_spec.run_cuda(device_inputs)  # warm-up, compiles
    working_set = nbytes(device_inputs) + nbytes(first.output)
    copies = rotation_copies(working_set, cold, l2_bytes, max_copies)
    runs = [first] + [kernel_spec.run_cuda(_device_copy(device_inputs)) for _ in range(copies - 1)]
    cuda.synchronize()
    start, end = _events(cuda)
    if simulator_selected():
        samples = []
        for i in range(repeats):
            start.record()
            runs[i % copies].launch()
            end.record()
            samples.append(_elapsed_s(start, end))
        return _result(samples, copies, working_set)
    return _time_queued(cuda, runs, repeats, working_set)


_SPIN: dict[str, Any] = {}


def _spin_kernel(cuda: Any) -> tuple[Any, float]:
    """The spin kernel and its iterations per second on this GPU (timed once, ~10 ms)."""
    if "kernel" not in _SPIN:

        @cuda.jit
        def spin(iterations: int, out: Any) -> None:  # pragma: no cover - compiled for the GPU
            x = out[0]
            for _ in range(iterations):
                x = x * 0.999999 + 1e-7
            out[0] = x

        sink = cuda.to_device(np.ones(1, dtype=np.float64))
        spin[1, 1](1000, sink)
        cuda.synchronize()
        start, end = _events(cuda)
        iterations = 1 << 22
        start.record()
        spin[1, 1](iterations, sink)
        end.record()
        _SPIN.update(kernel=spin, sink=sink, rate=iterations / _elapsed_s(start, end))
    return _SPIN["kernel"], float(_SPIN["rate"])


def _time_queued(cuda: Any, runs: list[Any], repeats: int, working_set: float) -> TimingResult:
    """Per-launch GPU seconds: bursts of queued launches behind the spin kernel (module docstring)."""
    spin, rate = _spin_kernel(cuda)
    start, end = _events(cuda)
    start.record()
    runs[0].launch()
    end.record()
    single = _elapsed_s(start, end)  # an upper bound: holds the host's launch cost
    n = int(min(MAX_QUEUED, max(len(runs), math.ceil(QUEUE_TARGET_S / max(single, 1e-7)))))
    bursts = max(5, math.ceil(repeats / 4))
    samples, host_bound, turn = [], 0, 0
    for _ in range(bursts):
        spin_s = SPIN_PER_LAUNCH_S * (n + 2)
        spin[1, 1](int(spin_s * rate), _SPIN["sink"])
        enqueue = time.perf_counter()
        start.record()
        for _ in range(n):
            runs[turn % len(runs)].launch()
            turn += 1
        end.record()
        host_bound += int(time.perf_counter() - enqueue > spin_s)
        samples.append(_elapsed_s(start, end) / n)
    return TimingResult(statistics.median(samples), min(samples), tuple(samples), len(runs), working_set, n,
                        host_bound)


def device_copy_bandwidth(nbytes: int = 1 << 30, repeats: int = 10) -> float:
    """Device-to-device copy bandwidth, B/s counting bytes read + written (2 * nbytes per copy):
    ``copy_to_device`` between two ``nbytes`` device buffers, median of ``repeats`` event-timed
    copies after a warm-up. NaN when events carry no time (the simulator)."""
    cuda = numba_cuda()

    src = cuda.device_array(int(nbytes), dtype=np.uint8)
    dst = cuda.device_array(int(nbytes), dtype=np.uint8)
    dst.copy_to_device(src)
    cuda.synchronize()
    start, end = _events(cuda)
    samples = []
    for _ in range(max(1, repeats)):
        start.record()
        dst.copy_to_device(src)
        end.record()
        samples.append(_elapsed_s(start, end))
    median = statistics.median(samples)
    return 2.0 * nbytes / median if median > 0 else math.nan
