"""CUDA kernels of the matrix products: GEMV and the SIMT (CUDA-core) tiled GEMM.

Both accumulate in fp32 and write fp32; fp16 operands are widened in registers. Importing needs
numba-cuda (no GPU); :mod:`validation.kernels.cuda_launch` launches them.

- ``gemv``: one warp per row at a time (8 rows per 256-thread block, grid-stride over rows);
  each lane loads 4 consecutive weights per access (8 B for fp16, 16 B for fp32, one vector
  load) and the matching 16 B of ``x``, four independent accesses in flight per lane, then a
  shuffle reduction. ``k % 4 != 0`` falls back to scalar coalesced loads.
- ``gemm``: ``tile x tile`` threads, each computing a ``reg x reg`` register block, over a
  ``(tile*reg) x tile`` / ``tile x (tile*reg)`` pair of shared-memory tiles (fp32 in shared).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np

from decodex.validation.kernels.cuda_warp import ZERO, cuda, jit, load4, row_slot, warp_sum
from decodex.validation.kernels.launch_geometry import GEMV_WARPS, WARP, check_gemm_tile

_STEP = 4 * WARP  # elements a warp covers with one 4-wide load per lane


@jit(device=True, forceinline=True)
def gemv_row_dot_vector(w, x, row, lane):  # type: ignore[no-untyped-def]
    """This lane's share of ``w[row] @ x`` (fp32): 4 weights per vector load, four loads in flight
    (needs ``k % 4 == 0``); the warp's shares add up to the row's dot product."""
    k = w.shape[1]
    acc0 = ZERO
    acc1 = ZERO
    acc2 = ZERO
    acc3 = ZERO
    c = lane * 4
    while c + 3 * _STEP < k:
        a0, a1, a2, a3 = load4(w, (row, c))
        b0, b1, b2, b3 = load4(w, (row, c + _STEP))
        c0, c1, c2, c3 = load4(w, (row, c + 2 * _STEP))
        d0, d1, d2, d3 = load4(w, (row, c + 3 * _STEP))
        xa0, xa1, xa2, xa3 = load4(x, (c,))
        xb0, xb1, xb2, xb3 = load4(x, (c + _STEP,))
        xc0, xc1, xc2, xc3 = load4(x, (c + 2 * _STEP,))
        xd0, xd1, xd2, xd3 = load4(x, (c + 3 * _STEP,))
        acc0 += a0 * xa0 + a1 * xa1 + a2 * xa2 + a3 * xa3
        acc1 += b0 * xb0 + b1 * xb1 + b2 * xb2 + b3 * xb3
        acc2 += c0 * xc0 + c1 * xc1 + c2 * xc2 + c3 * xc3
        acc3 += d0 * xd0 + d1 * xd1 + d2 * xd2 + d3 * xd3
        c += 4 * _STEP
    while c < k:
        a0, a1, a2, a3 = load4(w, (row, c))
        xa0, xa1, xa2, xa3 = load4(x, (c,))
        acc0 += a0 * xa0 + a1 * xa1 + a2 * xa2 + a3 * xa3
        c += _STEP
    return (acc0 + acc1) + (acc2 + acc3)


@jit(device=True, forceinline=True)
def gemv_row_dot_scalar(w, x, row, lane):  # type: ignore[no-untyped-def]
    """This lane's share of ``w[row] @ x`` (fp32) with scalar coalesced loads (any ``k``)."""
    acc = ZERO
    for c in range(lane, w.shape[1], WARP):
        acc += np.float32(w[row, c]) * x[c]
    return acc


@cache
def gemv_kernel(vectorized: bool) -> Any:
    """The GEMV kernel ``(w, x, y)``: vector loads of 4 weights per lane (needs ``k % 4 == 0``) or
    scalar coalesced loads."""
    wpb = GEMV_WARPS
    row_dot = gemv_row_dot_vector if vectorized else gemv_row_dot_scalar

    @jit(launch_bounds=wpb * WARP)
    def gemv(w, x, y):  # type: ignore[no-untyped-def]
        row, lane, stride = row_slot(WARP, wpb)  # a warp per row
        while row < w.shape[0]:
            total = warp_sum(row_dot(w, x, row, lane))
            if lane == 0:
                y[row] = total
            row += stride

    return gemv


@cache
def gemm_kernel(tile: int, reg: int) -> Any:
    """The tiled GEMM kernel ``(a, b, c)`` for ``tile x tile`` threads, each computing a ``reg x reg``
    block of ``c``; the block computes a ``(tile*reg)^2`` tile of ``c`` in steps of ``tile`` along k."""
    check_gemm_tile(tile, reg)
    bm = tile * reg
    bk = tile
    nthreads = tile * tile
    a_shape = (bk, bm + 1)  # +1: conflict-free transposed stores
    b_shape = (bk, bm)
    acc_shape = (reg, reg)

    @jit(launch_bounds=nthreads)
    def gemm(a, b, c):  # type: ignore[no-untyped-def]
        m = a.shape[0]
        kdim = a.shape[1]
        n = b.shape[1]
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        tid = ty * tile + tx
        row0 = cuda.blockIdx.y * bm
        col0 = cuda.blockIdx.x * bm
        a_s = cuda.shared.array(a_shape, np.float32)
        b_s = cuda.shared.array(b_shape, np.float32)
        acc = cuda.local.array(acc_shape, np.float32)
        ra = cuda.local.array(reg, np.float32)
        rb = cuda.local.array(reg, np.float32)
        for i in range(reg):
            for j in range(reg):
                acc[i, j] = ZERO
        for k0 in range(0, kdim, bk):
            for s in range(reg):
                e = tid + s * nthreads
                r = e // bk
                kk = e % bk
                gr = row0 + r
                gk = k0 + kk
                a_s[kk, r] = np.float32(a[gr, gk]) if gr < m and gk < kdim else ZERO
                kb = e // bm
                cb = e % bm
                gk = k0 + kb
                gc = col0 + cb
                b_s[kb, cb] = np.float32(b[gk, gc]) if gk < kdim and gc < n else ZERO
            cuda.syncthreads()
            for kk in range(bk):
                for i in range(reg):
                    ra[i] = a_s[kk, ty + tile * i]
                for j in range(reg):
                    rb[j] = b_s[kk, tx + tile * j]
                for i in range(reg):
                    for j in range(reg):
                        acc[i, j] += ra[i] * rb[j]
            cuda.syncthreads()
        for i in range(reg):
            r = row0 + ty + tile * i
            if r < m:
                for j in range(reg):
                    cc = col0 + tx + tile * j
                    if cc < n:
                        c[r, cc] = acc[i, j]

    return gemm
