"""CUDA kernels of the row-wise ops: RMSNorm and row softmax (fp32).

A warp (rows up to 2048 wide) or a 256-thread block per row (``tpr`` threads per row, see
:func:`validation.kernels.launch_geometry.row_threads`), grid-stride over rows; the row is read
twice (the second read hits L2) and written once. Importing needs numba-cuda (no GPU);
:mod:`validation.kernels.cuda_launch` launches them.
"""

from __future__ import annotations

import math
from functools import cache
from typing import Any

import numpy as np

from decodex.validation.kernels.cuda_warp import NEG_INF, ONE, ZERO, cuda, jit, row_slot, warp_max, warp_sum
from decodex.validation.kernels.launch_geometry import ROW_THREADS, WARP


@cache
def rmsnorm_kernel(tpr: int) -> Any:
    """The RMSNorm kernel ``(x, gamma, eps, y)`` with ``tpr`` threads per row (32 or 256)."""
    rpb = ROW_THREADS // tpr
    wpr = tpr // WARP
    nred = ROW_THREADS // WARP

    @jit(launch_bounds=ROW_THREADS)
    def rmsnorm(x, gamma, eps, y):  # type: ignore[no-untyped-def]
        dim = x.shape[1]
        red = cuda.shared.array(nred, np.float32)
        row, gl, stride = row_slot(tpr, rpb)
        while row < x.shape[0]:
            ss = ZERO
            for j in range(gl, dim, tpr):
                v = x[row, j]
                ss += v * v
            ss = warp_sum(ss)
            if wpr > 1:
                if gl % WARP == 0:
                    red[gl // WARP] = ss
                cuda.syncthreads()
                ss = ZERO
                for w in range(wpr):
                    ss += red[w]
                cuda.syncthreads()
            r = ONE / np.float32(math.sqrt(ss / np.float32(dim) + eps))
            for j in range(gl, dim, tpr):
                y[row, j] = x[row, j] * r * gamma[j]
            row += stride

    return rmsnorm


@cache
def softmax_kernel(tpr: int) -> Any:
    """The row-softmax kernel ``(x, y)`` with ``tpr`` threads per row (32 or 256): one online pass
    for the row's max and sum of exponentials, one pass writing ``exp(x - max) / sum``."""
    rpb = ROW_THREADS // tpr
    wpr = tpr // WARP
    nred = ROW_THREADS // WARP

    @jit(launch_bounds=ROW_THREADS)
    def softmax(x, y):  # type: ignore[no-untyped-def]
        cols = x.shape[1]
        red_m = cuda.shared.array(nred, np.float32)
        red_s = cuda.shared.array(nred, np.float32)
        row, gl, stride = row_slot(tpr, rpb)
        while row < x.shape[0]:
            mx = NEG_INF
            s = ZERO
            for j in range(gl, cols, tpr):
                v = x[row, j]
                if v > mx:
                    s = s * np.float32(math.exp(mx - v)) + ONE
                    mx = v
                else:
                    s += np.float32(math.exp(v - mx))
            row_max = warp_max(mx)
            s = warp_sum(s * np.float32(math.exp(mx - row_max)) if mx > NEG_INF else ZERO)
            if wpr > 1:
                if gl % WARP == 0:
                    red_m[gl // WARP] = row_max
                    red_s[gl // WARP] = s
                cuda.syncthreads()
                total_max = NEG_INF
                for w in range(wpr):
                    total_max = max(total_max, red_m[w])
                total = ZERO
                for w in range(wpr):
                    total += red_s[w] * np.float32(math.exp(red_m[w] - total_max))
                cuda.syncthreads()
                row_max = total_max
                s = total
            inv = ONE / s
            for j in range(gl, cols, tpr):
                y[row, j] = np.float32(math.exp(x[row, j] - row_max)) * inv
            row += stride

    return softmax
