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


def _cases(kernel: str, dtype: str, keys: str, *rows: tuple[int, ...], cold: bool = True) -> tuple[Case, ...]:
    """One :class:`Case` per row: ``keys`` names the dimensions (space-separated), each row gives
    their values in that order; a row may leave out trailing (optional) dimensions."""
    names = keys.split()
    if any(len(row) > len(names) for row in rows):
        raise ValueError(f"{kernel}: a row has more values than the keys {names}")
    return tuple(case(kernel, dtype, cold, **dict(zip(names, row, strict=False))) for row in rows)


_ATTENTION = "batch q_heads kv_heads head_dim ctx ctx_min"  # ctx_min optional: all requests at ctx without it


CPU_CASES: tuple[Case, ...] = (
    # GEMV, memory-bound
    *_cases("gemv", "fp32", "n k", (4096, 8192), (8192, 8192), (2048, 65536), (16384, 16384)),
    *_cases("gemv", "fp16", "n k", (4096, 8192), (8192, 8192), (4096, 32768), (16384, 16384)),
    # GEMM, compute-bound
    *_cases("gemm", "fp32", "m n k", (512, 512, 512), (1024, 1024, 1024), (1024, 2048, 1024), (64, 4096, 4096)),
    *_cases("gemm", "fp16", "m n k", (512, 512, 512), (1024, 1024, 1024)),
    # decode attention
    *_cases("attention", "fp32", _ATTENTION, (8, 32, 8, 128, 2048), (1, 32, 32, 128, 8192)),
    *_cases("attention", "fp16", _ATTENTION, (16, 32, 8, 128, 4096, 512), (4, 16, 1, 128, 16384),
            (64, 32, 8, 64, 1024, 128)),
    # RMSNorm and softmax
    *_cases("rmsnorm", "fp32", "rows dim", (4096, 4096), (16384, 8192), (2048, 32768)),
    *_cases("softmax", "fp32", "rows cols", (2048, 4096), (256, 32000), (16384, 1024)),
)

GPU_CASES: tuple[Case, ...] = (
    # GEMV: L2-resident (hot and cold), then far beyond the 50 MB L2
    *_cases("gemv", "fp16", "n k", (1024, 2048), (2048, 2048), cold=False),
    case("gemv", "fp16", n=2048, k=2048),
    case("gemv", "fp16", cold=False, n=4096, k=4096),
    *_cases("gemv", "fp16", "n k", (4096, 4096), (8192, 8192), (8192, 28672), (16384, 16384), (32768, 32768),
            (8192, 262144)),
    *_cases("gemv", "fp32", "n k", (4096, 4096), (8192, 8192), (16384, 32768)),
    # SIMT GEMM, 64^3 .. 8192^3, and tile variants
    *_cases("gemm", "fp32", "m n k", *((size, size, size) for size in (64, 128, 256, 512, 1024, 2048, 4096, 8192))),
    *_cases("gemm", "fp16", "m n k", (1024, 1024, 1024), (4096, 4096, 4096)),
    *_cases("gemm", "fp32", "m n k tile reg", (2048, 2048, 2048, 16, 4), (2048, 2048, 2048, 32, 2),
            (2048, 2048, 2048, 8, 8)),
    case("gemm", "fp32", m=64, n=8192, k=8192),
    # decode attention: batch 1-256, context 128-32k, GQA / MHA / MQA, uniform and mixed lengths
    *_cases("attention", "fp16", _ATTENTION, (1, 32, 8, 128, 128), (1, 32, 8, 128, 32768), (8, 32, 8, 128, 4096),
            (8, 28, 4, 128, 4096), (16, 64, 8, 128, 8192), (32, 32, 8, 128, 8192, 1024), (64, 32, 8, 128, 2048),
            (64, 16, 1, 128, 4096, 256), (128, 32, 32, 128, 1024), (256, 32, 8, 128, 1024),
            (256, 32, 8, 128, 4096, 128)),
    *_cases("attention", "fp32", _ATTENTION, (1, 32, 8, 128, 32768), (32, 32, 8, 128, 2048)),
    # RMSNorm
    *_cases("rmsnorm", "fp32", "rows dim", (1, 4096), (64, 8192), (16384, 1024), (4096, 8192), (32768, 8192)),
    # softmax
    *_cases("softmax", "fp32", "rows cols", (64, 32000), (4096, 4096), (32768, 1024), (1024, 131072), (256, 152064)),
)

SIM_CASES: tuple[Case, ...] = (
    case("gemv", "fp32", n=5, k=40),
    case("gemv", "fp16", n=9, k=1000),
    case("gemv", "fp32", n=3, k=37),
    case("gemv", "fp16", n=4, k=30),
    case("gemm", "fp32", m=33, n=17, k=20, tile=4, reg=2),
    case("gemm", "fp16", m=20, n=24, k=9, tile=8, reg=1),
    case("gemm", "fp32", m=9, n=19, k=40, tile=4, reg=4),
    case("attention", "fp16", batch=3, q_heads=4, kv_heads=2, head_dim=32, ctx=40, ctx_min=3),
    case("attention", "fp32", batch=2, q_heads=2, kv_heads=1, head_dim=64, ctx=70, ctx_min=33, splits=2),
    case("attention", "fp16", batch=1, q_heads=2, kv_heads=1, head_dim=128, ctx=9),
    case("attention", "fp32", batch=2, q_heads=4, kv_heads=4, head_dim=32, ctx=5, ctx_min=0, splits=3),
    case("rmsnorm", "fp32", rows=5, dim=64),
    case("rmsnorm", "fp32", rows=2, dim=2100),
    case("softmax", "fp32", rows=4, cols=50),
    case("softmax", "fp32", rows=2, cols=2100),
)
