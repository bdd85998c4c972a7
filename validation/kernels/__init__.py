"""Kernels that the validation times on real hardware: GEMV, SIMT GEMM, decode attention, RMSNorm
and softmax, each as a Numba CPU kernel (:mod:`.cpu`) and a Numba CUDA kernel, with a numpy
reference and the Decodex op whose FLOPs and bytes they execute (:mod:`.cases`); the case lists
(:mod:`.shapes`) and the timing helpers (:mod:`.timing`).

CUDA code is imported by the GPU path only: :mod:`.cuda_import` (the one place that imports
``numba.cuda``; :class:`~.cuda_import.NoGpuError` when numba-cuda or a GPU is missing), :mod:`.cuda_warp` (warp
primitives, vector loads), :mod:`.cuda_matmul`, :mod:`.cuda_attention` and :mod:`.cuda_rowwise`
(the kernels), :mod:`.cuda_launch` (launchers, :class:`~.cuda_launch.CudaRun`). Importing this
package, and everything the CPU validation runs, needs neither numba-cuda nor a GPU; the launch
geometry and the shapes the CUDA kernels accept are plain Python (:mod:`.launch_geometry`).

```python
from decodex.validation.kernels import KERNELS, CPU_CASES, time_cpu
spec, case = KERNELS["gemv"], CPU_CASES[0]
inputs = spec.make_inputs(case.shape, case.dtype, np.random.default_rng(0))
t = time_cpu(spec.run_cpu, inputs, repeats=10, warmup=1)
op = spec.op(case.shape, case.dtype)          # op.flops, op.bytes; spec.unit_role == "vector"
```
"""

from decodex.validation.kernels.cases import (
    KERNELS,
    UNIT_ROLE,
    KernelSpec,
    context_lens,
    relative_error,
    scalar,
    to_device,
)
from decodex.validation.kernels.shapes import CPU_CASES, GPU_CASES, SIM_CASES, Case, case
from decodex.validation.kernels.timing import (
    L2_BYTES,
    TimingResult,
    device_copy_bandwidth,
    nbytes,
    rotation_copies,
    time_cpu,
    time_cuda,
)

__all__ = [
    "CPU_CASES",
    "GPU_CASES",
    "KERNELS",
    "L2_BYTES",
    "SIM_CASES",
    "UNIT_ROLE",
    "Case",
    "KernelSpec",
    "TimingResult",
    "case",
    "context_lens",
    "device_copy_bandwidth",
    "nbytes",
    "relative_error",
    "rotation_copies",
    "scalar",
    "time_cpu",
    "time_cuda",
    "to_device",
]
