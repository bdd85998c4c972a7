"""Case lists of the validation kernels: what the CPU and GPU validations time, and the tiny
shapes of the CUDA-simulator tests.

``CPU_CASES``: a 2-core, 24 GB machine; each case runs 5-200 ms there (measured with the Numba
kernels of this package) and keeps its working set under 2 GB. ``GPU_CASES``: an H100/H200
(80 GB or more); GEMV from L2-resident to 4 GB, SIMT GEMM from 64^3 to 8192^3, decode attention
with batch 1-256 and contexts 128-32k (uniform and mixed within a batch), RMSNorm and softmax at
several sizes; ``cold=False`` marks the cases meant to be timed with their data in L2 (the
rotation rule of :mod:`validation.kernels.timing` is then off). ``SIM_CASES``: tiny shapes that
cover every code path (vector and scalar GEMV, several tiles, attention with and without splits,
warp- and block-per-row norms).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Case:
    """One (kernel, shape, dtype) to run; ``dims`` is the shape as sorted (key, value) pairs
    (hashable), ``shape`` as a dict; ``cold``: time with the data coming from DRAM (GPU)."""

    kernel: str
    dims: tuple[tuple[str, int], ...]
    dtype: str
    cold: bool = True

    @property
    def shape(self) -> dict[str, int]:
        """The shape as the kernel specs take it."""
        return dict(self.dims)

    @property
    def label(self) -> str:
        """A short name, e.g. ``gemv fp16 n=4096 k=4096``."""
        dims = " ".join(f"{k}={v}" for k, v in self.dims)
        return f"{self.kernel} {self.dtype} {dims}" + ("" if self.cold else " (L2)")


def case(kernel: str, dtype: str, cold: bool = True, **dims: int) -> Case:
    """A :class:`Case` from keyword dimensions."""
    return Case(kernel, tuple(sorted(dims.items())), dtype, cold)


def _attn(dtype: str, batch: int, q_heads: int, kv_heads: int, head_dim: int, ctx: int, ctx_min: int | None = None,
          **extra: int) -> Case:
    dims = {"batch": batch, "q_heads": q_heads, "kv_heads": kv_heads, "head_dim": head_dim, "ctx": ctx, **extra}
    if ctx_min is not None:
        dims["ctx_min"] = ctx_min
    return case("attention", dtype, **dims)


CPU_CASES: tuple[Case, ...] = (
    # GEMV, memory-bound
    case("gemv", "fp32", n=4096, k=8192),
    case("gemv", "fp32", n=8192, k=8192),
    case("gemv", "fp32", n=2048, k=65536),
    case("gemv", "fp32", n=16384, k=16384),
    case("gemv", "fp16", n=4096, k=8192),
    case("gemv", "fp16", n=8192, k=8192),
    case("gemv", "fp16", n=4096, k=32768),
    case("gemv", "fp16", n=16384, k=16384),
    # GEMM, compute-bound
    case("gemm", "fp32", m=512, n=512, k=512),
    case("gemm", "fp32", m=1024, n=1024, k=1024),
    case("gemm", "fp32", m=1024, n=2048, k=1024),
    case("gemm", "fp32", m=64, n=4096, k=4096),
    case("gemm", "fp16", m=512, n=512, k=512),
    case("gemm", "fp16", m=1024, n=1024, k=1024),
    # decode attention
    _attn("fp32", 8, 32, 8, 128, 2048),
    _attn("fp16", 16, 32, 8, 128, 4096, 512),
    _attn("fp32", 1, 32, 32, 128, 8192),
    _attn("fp16", 4, 16, 1, 128, 16384),
    _attn("fp16", 64, 32, 8, 64, 1024, 128),
    # RMSNorm and softmax
    case("rmsnorm", "fp32", rows=4096, dim=4096),
    case("rmsnorm", "fp32", rows=16384, dim=8192),
    case("rmsnorm", "fp32", rows=2048, dim=32768),
    case("softmax", "fp32", rows=2048, cols=4096),
    case("softmax", "fp32", rows=256, cols=32000),
    case("softmax", "fp32", rows=16384, cols=1024),
)

GPU_CASES: tuple[Case, ...] = (
    # GEMV: L2-resident (hot and cold), then far beyond the 50 MB L2
    case("gemv", "fp16", cold=False, n=1024, k=2048),
    case("gemv", "fp16", cold=False, n=2048, k=2048),
    case("gemv", "fp16", n=2048, k=2048),
    case("gemv", "fp16", cold=False, n=4096, k=4096),
    case("gemv", "fp16", n=4096, k=4096),
    case("gemv", "fp16", n=8192, k=8192),
    case("gemv", "fp16", n=8192, k=28672),
    case("gemv", "fp16", n=16384, k=16384),
    case("gemv", "fp16", n=32768, k=32768),
    case("gemv", "fp16", n=8192, k=262144),
    case("gemv", "fp32", n=4096, k=4096),
    case("gemv", "fp32", n=8192, k=8192),
    case("gemv", "fp32", n=16384, k=32768),
    # SIMT GEMM, 64^3 .. 8192^3, and tile variants
    case("gemm", "fp32", m=64, n=64, k=64),
    case("gemm", "fp32", m=128, n=128, k=128),
    case("gemm", "fp32", m=256, n=256, k=256),
    case("gemm", "fp32", m=512, n=512, k=512),
    case("gemm", "fp32", m=1024, n=1024, k=1024),
    case("gemm", "fp32", m=2048, n=2048, k=2048),
    case("gemm", "fp32", m=4096, n=4096, k=4096),
    case("gemm", "fp32", m=8192, n=8192, k=8192),
    case("gemm", "fp16", m=1024, n=1024, k=1024),
    case("gemm", "fp16", m=4096, n=4096, k=4096),
    case("gemm", "fp32", m=2048, n=2048, k=2048, tile=16, reg=4),
    case("gemm", "fp32", m=2048, n=2048, k=2048, tile=32, reg=2),
    case("gemm", "fp32", m=2048, n=2048, k=2048, tile=8, reg=8),
    case("gemm", "fp32", m=64, n=8192, k=8192),
    # decode attention: batch 1-256, context 128-32k, GQA / MHA / MQA, uniform and mixed lengths
    _attn("fp16", 1, 32, 8, 128, 128),
    _attn("fp16", 1, 32, 8, 128, 32768),
    _attn("fp32", 1, 32, 8, 128, 32768),
    _attn("fp16", 8, 32, 8, 128, 4096),
    _attn("fp16", 8, 28, 4, 128, 4096),
    _attn("fp16", 16, 64, 8, 128, 8192),
    _attn("fp16", 32, 32, 8, 128, 8192, 1024),
    _attn("fp32", 32, 32, 8, 128, 2048),
    _attn("fp16", 64, 32, 8, 128, 2048),
    _attn("fp16", 64, 16, 1, 128, 4096, 256),
    _attn("fp16", 128, 32, 32, 128, 1024),
    _attn("fp16", 256, 32, 8, 128, 1024),
    _attn("fp16", 256, 32, 8, 128, 4096, 128),
    # RMSNorm
    case("rmsnorm", "fp32", rows=1, dim=4096),
    case("rmsnorm", "fp32", rows=64, dim=8192),
    case("rmsnorm", "fp32", rows=16384, dim=1024),
    case("rmsnorm", "fp32", rows=4096, dim=8192),
    case("rmsnorm", "fp32", rows=32768, dim=8192),
    # softmax
    case("softmax", "fp32", rows=64, cols=32000),
    case("softmax", "fp32", rows=4096, cols=4096),
    case("softmax", "fp32", rows=32768, cols=1024),
    case("softmax", "fp32", rows=1024, cols=131072),
    case("softmax", "fp32", rows=256, cols=152064),
)

SIM_CASES: tuple[Case, ...] = (
    case("gemv", "fp32", n=5, k=40),
    case("gemv", "fp16", n=9, k=1000),
    case("gemv", "fp32", n=3, k=37),
    case("gemv", "fp16", n=4, k=30),
    case("gemm", "fp32", m=33, n=17, k=20, tile=4, reg=2),
    case("gemm", "fp16", m=20, n=24, k=9, tile=8, reg=1),
    case("gemm", "fp32", m=9, n=19, k=40, tile=4, reg=4),
    _attn("fp16", 3, 4, 2, 32, 40, 3),
    _attn("fp32", 2, 2, 1, 64, 70, 33, splits=2),
    _attn("fp16", 1, 2, 1, 128, 9),
    _attn("fp32", 2, 4, 4, 32, 5, 0, splits=3),
    case("rmsnorm", "fp32", rows=5, dim=64),
    case("rmsnorm", "fp32", rows=2, dim=2100),
    case("softmax", "fp32", rows=4, cols=50),
    case("softmax", "fp32", rows=2, cols=2100),
)
