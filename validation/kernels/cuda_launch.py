"""Launch the CUDA validation kernels on device arrays, and record how each was launched.

Each launcher allocates the fp32 output, picks the kernel variant and grid for the shape, issues
the launch once and returns a :class:`CudaRun` whose ``launch()`` issues the same launches again
on the same buffers (what :func:`validation.kernels.timing.time_cuda` times). Inputs come from
:func:`validation.kernels.cases.to_device`; their layout is described there. Importing needs
numba-cuda (it raises :class:`validation.kernels.cuda_import.NoGpuError` otherwise) but no GPU.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from decodex.validation.kernels.cuda_attention import attention_combine_kernel, attention_kernel
from decodex.validation.kernels.cuda_import import numba_cuda
from decodex.validation.kernels.cuda_matmul import gemm_kernel, gemv_kernel
from decodex.validation.kernels.cuda_rowwise import rmsnorm_kernel, softmax_kernel
from decodex.validation.kernels.launch_geometry import (
    ATTN_WARPS,
    DEFAULT_SMS,
    GEMM_REG,
    GEMM_TILE,
    GEMV_WARPS,
    ROW_THREADS,
    WARP,
    attention_grid,
    gemm_grid,
    grid_stride_blocks,
    row_blocks,
    row_threads,
)

cuda = numba_cuda()


@dataclass(frozen=True)
class LaunchConfig:
    """One kernel launch: the kernel's name, grid and block dimensions (threads), static shared
    memory per block (bytes) and the parameters it was specialized for."""

    kernel: str
    grid: tuple[int, ...]
    block: tuple[int, ...]
    shared_bytes: int = 0
    params: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class CudaRun:
    """A launched kernel: its ``output`` device array, the ``launches`` it issued, and
    ``launch()`` to issue them again on the same buffers (no allocation, asynchronous)."""

    output: Any
    launches: tuple[LaunchConfig, ...]
    launch: Callable[[], None]


def available() -> bool:
    """True when a GPU (or the simulator) is usable."""
    return bool(cuda.is_available())


def sm_count() -> int:
    """Streaming multiprocessors of the current device (``DEFAULT_SMS`` under the simulator)."""
    return int(getattr(cuda.get_current_device(), "MULTIPROCESSOR_COUNT", DEFAULT_SMS))


def _launched(output: Any, launches: Sequence[LaunchConfig], launch: Callable[[], None]) -> CudaRun:
    """Issue ``launch`` once and return it as a run writing ``output``."""
    launch()
    return CudaRun(output, tuple(launches), launch)


def _single(config: LaunchConfig, kernel: Any, args: tuple[Any, ...], output: Any) -> CudaRun:
    """Launch ``kernel(*args)`` over ``config``'s grid and block; the run writes ``output``."""

    def launch() -> None:
        kernel[config.grid, config.block](*args)

    return _launched(output, [config], launch)


def gemv(dev: Mapping[str, Any]) -> CudaRun:
    """Launch ``y = w @ x`` on device arrays ``w`` (n, k) fp16/fp32 and ``x`` (k,) fp32; output ``y``
    (n,) fp32. Grid: ``min(ceil(n/8), 8 * SMs)`` blocks of 256 threads."""
    w, x = dev["w"], dev["x"]
    n, k = int(w.shape[0]), int(w.shape[1])
    y = cuda.device_array(n, dtype=np.float32)
    vectorized = k % 4 == 0
    grid = grid_stride_blocks(n, GEMV_WARPS, sm_count())
    config = LaunchConfig("gemv_vec" if vectorized else "gemv_scalar", (grid,), (GEMV_WARPS * WARP,), 0,
                          {"rows_per_block": GEMV_WARPS, "vector_elems": 4 if vectorized else 1})
    return _single(config, gemv_kernel(vectorized), (w, x, y), y)


def gemm(dev: Mapping[str, Any], tile: int = GEMM_TILE, reg: int = GEMM_REG) -> CudaRun:
    """Launch ``c = a @ b`` on device arrays ``a`` (m, k), ``b`` (k, n) (fp16/fp32 each); output ``c``
    (m, n) fp32. Grid ``(ceil(n/(tile*reg)), ceil(m/(tile*reg)))`` of ``(tile, tile)`` threads;
    shared memory 4 * (tile * (tile*reg + 1) + tile * tile*reg) bytes per block."""
    a, b = dev["a"], dev["b"]
    m, n = int(a.shape[0]), int(b.shape[1])
    c = cuda.device_array((m, n), dtype=np.float32)
    bm = tile * reg
    grid = gemm_grid(m, n, tile, reg)
    shared = 4 * (tile * (bm + 1) + tile * bm)
    config = LaunchConfig("gemm_tiled", grid, (tile, tile), shared, {"tile": tile, "reg": reg, "block_tile": bm})
    return _single(config, gemm_kernel(tile, reg), (a, b, c), c)


def attention(dev: Mapping[str, Any], splits: int = 0) -> CudaRun:
    """Launch decode attention with KV append on device arrays ``q`` (batch, q_heads, d) fp32,
    ``k_cache``/``v_cache`` (batch, max_ctx, kv_heads, d) and ``k_new``/``v_new`` (batch, kv_heads, d)
    fp16/fp32, ``context_lens`` (batch,) int32; output (batch, q_heads, d) fp32. ``splits`` 0:
    :func:`validation.kernels.launch_geometry.attention_splits`. With splits > 1 a workspace of
    batch*q_heads*splits*(d+2) fp32 is written and read back by the combine kernel (not part of
    the op's bytes)."""
    q, kc, vc, kn, vn, lens = (dev[key] for key in ("q", "k_cache", "v_cache", "k_new", "v_new", "context_lens"))
    batch, q_heads, head_dim = (int(s) for s in q.shape)
    kv_heads = int(kc.shape[2])
    group = q_heads // kv_heads
    host_lens = lens.copy_to_host() if hasattr(lens, "copy_to_host") else np.asarray(lens)
    grid = attention_grid(batch, kv_heads, int(host_lens.max()) + 1, sm_count(), splits)
    nsplit = grid[1]
    out = cuda.device_array((batch, q_heads, head_dim), dtype=np.float32)
    ws_shape = (batch, q_heads, nsplit) if nsplit > 1 else (1, 1, 1)
    ws_m = cuda.device_array(ws_shape, dtype=np.float32)
    ws_l = cuda.device_array(ws_shape, dtype=np.float32)
    ws_o = cuda.device_array((*ws_shape, head_dim if nsplit > 1 else 1), dtype=np.float32)
    kernel = attention_kernel(group, head_dim, int(kc.dtype.itemsize))
    block = ATTN_WARPS * WARP
    shared = 4 * (group * head_dim + ATTN_WARPS * group * (head_dim + 2))
    configs = [LaunchConfig("decode_attention", grid, (block,), shared,
                            {"group": group, "head_dim": head_dim, "splits": nsplit})]
    combine = attention_combine_kernel() if nsplit > 1 else None
    if combine is not None:
        configs.append(LaunchConfig("attention_combine", (batch * q_heads,), (128,), 0, {"splits": nsplit}))

    def launch() -> None:
        kernel[grid, block](q, kc, vc, kn, vn, lens, out, ws_m, ws_l, ws_o)
        if combine is not None:
            combine[batch * q_heads, 128](ws_m, ws_l, ws_o, out)

    return _launched(out, configs, launch)


def _rowwise(name: str, kernel_for: Callable[[int], Any], x: Any, args: tuple[Any, ...],
             shared_arrays: int) -> CudaRun:
    """Launch a row-wise kernel ``(x, *args, y)`` over ``x`` (rows, width) fp32 with a fp32 output
    of the same shape; ``shared_arrays``: per-warp fp32 reduction arrays the kernel keeps in shared."""
    rows, width = int(x.shape[0]), int(x.shape[1])
    y = cuda.device_array((rows, width), dtype=np.float32)
    tpr = row_threads(width)
    grid = row_blocks(rows, width, sm_count())
    config = LaunchConfig(name, (grid,), (ROW_THREADS,), 4 * shared_arrays * (ROW_THREADS // WARP),
                          {"threads_per_row": tpr})
    return _single(config, kernel_for(tpr), (x, *args, y), y)


def rmsnorm(dev: Mapping[str, Any], eps: float) -> CudaRun:
    """Launch RMSNorm on device arrays ``x`` (rows, dim) and ``gamma`` (dim,) fp32 with ``eps``
    (dimensionless); output (rows, dim) fp32."""
    return _rowwise("rmsnorm", rmsnorm_kernel, dev["x"], (dev["gamma"], np.float32(eps)), 1)


def softmax(dev: Mapping[str, Any]) -> CudaRun:
    """Launch the row softmax on device array ``x`` (rows, cols) fp32; output (rows, cols) fp32."""
    return _rowwise("softmax", softmax_kernel, dev["x"], (), 2)
