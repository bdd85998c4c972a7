"""Launch geometry of the CUDA validation kernels, in plain Python (no numba-cuda, no GPU).

Block sizes, the shapes each CUDA kernel supports, and the grid rules that do not depend on a
device array. :mod:`validation.kernels.cases` checks shapes with these before any input is made,
so the CPU validation rejects the same shapes as the GPU one without importing CUDA code.
"""

from __future__ import annotations

import math

WARP = 32
"""Threads per warp."""

GEMV_WARPS = 8
"""Rows in flight per GEMV block (8 warps, 256 threads)."""

ATTN_WARPS = 4
"""Warps per decode-attention block (128 threads)."""

ROW_THREADS = 256
"""Threads per block of the row-wise kernels (RMSNorm, softmax)."""

ROW_WARP_MAX = 2048
"""Widest row (elements) that one warp handles in the row-wise kernels; wider rows take a block."""

DEFAULT_SMS = 132
"""Streaming multiprocessors assumed when the device cannot be asked (H100/H200; the simulator)."""

GEMM_TILE = 16
"""Default threads per side of a GEMM block (also the k-depth of a shared-memory tile)."""

GEMM_REG = 8
"""Default side of the register block each GEMM thread computes."""

BLOCKS_PER_SM = 8
"""Grid-stride kernels launch at most this many blocks per SM."""


def check_gemm_tile(tile: int, reg: int) -> None:
    """Raise ValueError unless ``tile`` (threads per side, also the k-depth of a tile) and ``reg``
    (register block side) give a launchable kernel: tile in 4..32, reg in 1..8, <= 1024 threads."""
    if tile not in (4, 8, 16, 32) or reg not in (1, 2, 4, 8):
        raise ValueError(f"gemm: tile {tile} must be 4, 8, 16 or 32 and reg {reg} 1, 2, 4 or 8")
    if tile * tile * reg * reg > 16384:
        raise ValueError(f"gemm: tile {tile} x reg {reg} needs too many registers per block")


def check_attention_shape(group: int, head_dim: int) -> None:
    """Raise ValueError unless the kernel supports ``group`` query heads per KV head and
    ``head_dim``: head_dim a multiple of 32 up to 256, group * head_dim <= 2048 (shared memory)."""
    if head_dim % WARP or not 32 <= head_dim <= 256:
        raise ValueError(f"attention: head_dim {head_dim} must be a multiple of 32 in [32, 256]")
    if group < 1 or group * head_dim > 2048:
        raise ValueError(f"attention: group {group} x head_dim {head_dim} exceeds 2048")


def attention_splits(batch: int, kv_heads: int, max_len: int, sms: int) -> int:
    """Splits of each request's tokens (flash-decoding) so that about ``2 * sms`` blocks run, each
    split at least 512 tokens; 1 when ``batch * kv_heads`` blocks already fill the GPU."""
    blocks = batch * kv_heads
    if blocks >= sms:
        return 1
    return max(1, min(math.ceil(2 * sms / blocks), math.ceil(max_len / 512)))


def row_threads(width: int) -> int:
    """Threads per row of the row-wise kernels: a warp up to 2048 elements, else a 256-thread block."""
    return WARP if width <= ROW_WARP_MAX else ROW_THREADS


def grid_stride_blocks(rows: int, rows_per_block: int, sms: int) -> int:
    """Blocks of a grid-stride kernel over ``rows`` rows, ``rows_per_block`` at a time: enough to
    cover every row once, at most ``BLOCKS_PER_SM * sms``, at least 1."""
    return max(1, min(math.ceil(rows / rows_per_block), BLOCKS_PER_SM * sms))


def gemm_grid(m: int, n: int, tile: int = GEMM_TILE, reg: int = GEMM_REG) -> tuple[int, int]:
    """Grid of the GEMM kernel for an (m x n) output: one block per ``tile * reg`` square,
    ``(ceil(n / side), ceil(m / side))``."""
    side = tile * reg
    return math.ceil(n / side), math.ceil(m / side)


def attention_grid(batch: int, kv_heads: int, max_len: int, sms: int, splits: int = 0) -> tuple[int, int]:
    """Grid of the decode-attention kernel: ``(batch * kv_heads, splits)``, with ``splits`` 0 taken
    from :func:`attention_splits` (``max_len``: the longest request's tokens after the step)."""
    return batch * kv_heads, splits or attention_splits(batch, kv_heads, max_len, sms)


def row_blocks(rows: int, width: int, sms: int) -> int:
    """Blocks of a row-wise kernel (RMSNorm, softmax) over ``rows`` rows of ``width`` elements."""
    return grid_stride_blocks(rows, ROW_THREADS // row_threads(width), sms)


def case_blocks(kernel: str, shape: dict[str, int], sms: int = DEFAULT_SMS) -> int:
    """Thread blocks of a validation case's main launch on a GPU of ``sms`` multiprocessors, by the
    grid rules the launchers use (:mod:`validation.kernels.cuda_launch`): GEMV and the row-wise
    kernels grid-stride over rows, a GEMM has one block per ``tile * reg`` square of its output,
    decode attention one per (request, KV head) and split of the tokens (the shape's ``splits``,
    else :func:`attention_splits`)."""
    if kernel == "gemv":
        return grid_stride_blocks(shape["n"], GEMV_WARPS, sms)
    if kernel == "gemm":
        x, y = gemm_grid(shape["m"], shape["n"], shape.get("tile", GEMM_TILE), shape.get("reg", GEMM_REG))
        return x * y
    if kernel == "attention":
        heads, splits = attention_grid(shape["batch"], shape["kv_heads"], shape["ctx"] + 1, sms,
                                       shape.get("splits", 0))
        return heads * splits
    if kernel in ("rmsnorm", "softmax"):
        return row_blocks(shape["rows"], shape.get("dim", shape.get("cols", 0)), sms)
    raise ValueError(f"case_blocks: unknown kernel {kernel!r}")
