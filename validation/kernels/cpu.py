"""Numba CPU versions of the validation kernels (``njit(parallel=True, fastmath=False)``, ``prange``).

Numba's CPU target has no float16 type: fp16 arrays are passed as their ``uint16`` bit patterns
(``a.view(np.uint16)``, free) together with :data:`HALF_TO_FLOAT`, a 65,536-entry table that
turns each bit pattern into its exact float32 value. Every kernel accumulates in float32; where a
sum would otherwise be one serial dependence chain (dot products, norms) it keeps ``LANES``
independent partial sums so that LLVM can vectorize without reassociating (``fastmath=False``).

Each public ``*_cpu`` function takes numpy arrays, writes a preallocated float32 output and
returns nothing; :mod:`validation.kernels.cases` wraps them as ``run_cpu(inputs) -> output``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

HALF_TO_FLOAT: np.ndarray = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)
"""float32 value of every fp16 bit pattern (index = the ``uint16`` bits)."""

LANES = 8
"""Independent partial sums per reduction (one AVX register of float32)."""

GEMM_BLOCK_I = 16
GEMM_BLOCK_K = 128
GEMM_BLOCK_J = 512


def as_cpu_array(a: np.ndarray) -> np.ndarray:
    """The array a CPU kernel takes: fp16 data as its ``uint16`` bits (no copy), others unchanged."""
    return a.view(np.uint16) if a.dtype == np.float16 else a


def _f32(x: float, lut: np.ndarray) -> float:  # pragma: no cover - replaced by the overload in compiled code
    """float32 value of ``x``: a fp16 bit pattern (looked up in ``lut``) or a float."""
    raise NotImplementedError


@overload(_f32, inline="always")
def _f32_overload(x, lut):  # type: ignore[no-untyped-def]  # numba reads the bare signature
    if isinstance(x, types.Integer):
        return lambda x, lut: lut[x]
    return lambda x, lut: np.float32(x)


@njit(fastmath=False, inline="always")
def _widen(src: np.ndarray, lut: np.ndarray, out: np.ndarray) -> None:
    """``out[:] =`` the float32 values of the 1-D ``src`` (fp16 bits looked up in ``lut``, or floats)."""
    for e in range(out.shape[0]):
        out[e] = _f32(src[e], lut)


@njit(fastmath=False, inline="always")
def _dot_lanes(a: np.ndarray, i: int, b: np.ndarray | None, lut: np.ndarray | None) -> float:
    """Row ``i`` of the 2-D ``a`` (floats, or fp16 bits widened through ``lut``; ``lut`` may be None
    for floats) dotted with the 1-D float32 ``b``, or with itself when ``b`` is None (sum of
    squares): a float32 sum kept in ``LANES`` independent partial sums, added in order at the end."""
    n = a.shape[1]
    main = n - n % LANES
    part = np.zeros(LANES, dtype=np.float32)
    for j in range(0, main, LANES):
        for u in range(LANES):
            v = _f32(a[i, j + u], lut)
            part[u] += v * (v if b is None else b[j + u])
    acc = np.float32(0.0)
    for u in range(LANES):
        acc += part[u]
    for j in range(main, n):
        v = _f32(a[i, j], lut)
        acc += v * (v if b is None else b[j])
    return acc


@njit(fastmath=False, inline="always")
def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """float32 dot product of two 1-D float32 arrays with eight scalar partial sums (registers)."""
    n = a.shape[0]
    main = n - n % 8
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = np.float32(0.0)
    for j in range(0, main, 8):
        s0 += a[j] * b[j]
        s1 += a[j + 1] * b[j + 1]
        s2 += a[j + 2] * b[j + 2]
        s3 += a[j + 3] * b[j + 3]
        s4 += a[j + 4] * b[j + 4]
        s5 += a[j + 5] * b[j + 5]
        s6 += a[j + 6] * b[j + 6]
        s7 += a[j + 7] * b[j + 7]
    s = ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
    for j in range(main, n):
        s += a[j] * b[j]
    return s


@njit(parallel=True, fastmath=False, cache=False)
def gemv_cpu(w: np.ndarray, x: np.ndarray, y: np.ndarray, lut: np.ndarray) -> None:
    """y = w @ x: ``w`` (n, k) float32 or fp16 bits (uint16), ``x`` (k,) float32, ``y`` (n,) float32.

    Rows in parallel; each row a dot product with ``LANES`` float32 partial sums.
    """
    for i in prange(w.shape[0]):
        y[i] = _dot_lanes(w, i, x, lut)


@njit(parallel=True, fastmath=False, cache=False)
def gemm_cpu(a: np.ndarray, b: np.ndarray, c: np.ndarray, lut: np.ndarray) -> None:
    """c = a @ b, blocked: ``a`` (m, k), ``b`` (k, n) float32 or fp16 bits (uint16), ``c`` (m, n) float32.

    Blocks of ``GEMM_BLOCK_I`` rows in parallel; inside, (k, j) blocks of ``GEMM_BLOCK_K`` x
    ``GEMM_BLOCK_J`` of ``b`` are converted to a float32 tile (L2-sized) and swept by rank-1
    updates of four rows at a time (the innermost loop over contiguous columns vectorizes).
    """
    m, k = a.shape
    n = b.shape[1]
    blocks_i = (m + GEMM_BLOCK_I - 1) // GEMM_BLOCK_I
    for bi in prange(blocks_i):
        i0 = bi * GEMM_BLOCK_I
        i1 = min(m, i0 + GEMM_BLOCK_I)
        tile = np.empty((GEMM_BLOCK_K, GEMM_BLOCK_J), dtype=np.float32)
        acc = np.zeros((GEMM_BLOCK_I, GEMM_BLOCK_J), dtype=np.float32)
        for j0 in range(0, n, GEMM_BLOCK_J):
            j1 = min(n, j0 + GEMM_BLOCK_J)
            nj = j1 - j0
            acc[:, :] = 0.0
            for k0 in range(0, k, GEMM_BLOCK_K):
                k1 = min(k, k0 + GEMM_BLOCK_K)
                for kk in range(k0, k1):
                    for jj in range(nj):
                        tile[kk - k0, jj] = _f32(b[kk, j0 + jj], lut)
                for i in range(i0, i1):
                    row = acc[i - i0]
                    for kk in range(k0, k1):
                        av = _f32(a[i, kk], lut)
                        trow = tile[kk - k0]
                        for jj in range(nj):
                            row[jj] += av * trow[jj]
            for i in range(i0, i1):
                for jj in range(nj):
                    c[i, j0 + jj] = acc[i - i0, jj]


@njit(parallel=True, fastmath=False, cache=False)
def attention_cpu(q: np.ndarray, k_cache: np.ndarray, v_cache: np.ndarray, k_new: np.ndarray,
                  v_new: np.ndarray, context_lens: np.ndarray, out: np.ndarray, lut: np.ndarray) -> None:
    """Batched GQA decode attention with KV append (the layout of :mod:`validation.kernels.cases`).

    ``q`` (batch, q_heads, d) float32; ``k_cache``/``v_cache`` (batch, max_ctx, kv_heads, d) and
    ``k_new``/``v_new`` (batch, kv_heads, d) float32 or fp16 bits; ``context_lens`` (batch,) cached
    tokens per request. Request ``b`` first stores its new K/V at position ``context_lens[b]``, then
    each query head ``h`` attends the ``context_lens[b] + 1`` keys of KV head ``h // group``
    (softmax with max subtraction, scale 1/sqrt(d)). One (request, KV head) per parallel task.
    """
    batch, q_heads, d = q.shape
    kv_heads = k_cache.shape[2]
    group = q_heads // kv_heads
    scale = np.float32(1.0 / math.sqrt(d))
    for task in prange(batch * kv_heads):
        b = task // kv_heads
        h = task % kv_heads
        c = context_lens[b]
        length = c + 1
        for e in range(d):
            k_cache[b, c, h, e] = k_new[b, h, e]
            v_cache[b, c, h, e] = v_new[b, h, e]
        qs = np.empty((group, d), dtype=np.float32)
        for g in range(group):
            for e in range(d):
                qs[g, e] = q[b, h * group + g, e] * scale
        scores = np.empty((group, length), dtype=np.float32)
        krow = np.empty(d, dtype=np.float32)
        for t in range(length):
            _widen(k_cache[b, t, h], lut, krow)
            for g in range(group):
                scores[g, t] = _dot(qs[g], krow)
        inv = np.empty(group, dtype=np.float32)
        for g in range(group):
            mx = scores[g, 0]
            for t in range(1, length):
                mx = max(mx, scores[g, t])
            total = np.float32(0.0)
            for t in range(length):
                p = np.float32(math.exp(scores[g, t] - mx))
                scores[g, t] = p
                total += p
            inv[g] = np.float32(1.0) / total
        acc = np.zeros((group, d), dtype=np.float32)
        vrow = np.empty(d, dtype=np.float32)
        for t in range(length):
            _widen(v_cache[b, t, h], lut, vrow)
            for g in range(group):
                p = scores[g, t]
                for e in range(d):
                    acc[g, e] += p * vrow[e]
        for g in range(group):
            for e in range(d):
                out[b, h * group + g, e] = acc[g, e] * inv[g]


@njit(parallel=True, fastmath=False, cache=False)
def rmsnorm_cpu(x: np.ndarray, gamma: np.ndarray, eps: float, y: np.ndarray) -> None:
    """y = x / sqrt(mean(x^2) + eps) * gamma over each row: ``x``, ``y`` (rows, dim) float32, ``gamma`` (dim,)."""
    rows, dim = x.shape
    for i in prange(rows):
        ss = _dot_lanes(x, i, None, None)
        r = np.float32(1.0) / np.float32(math.sqrt(ss / np.float32(dim) + np.float32(eps)))
        for j in range(dim):
            y[i, j] = x[i, j] * r * gamma[j]


@njit(parallel=True, fastmath=False, cache=False)
def softmax_cpu(x: np.ndarray, y: np.ndarray) -> None:
    """y = softmax(x) over each row with max subtraction: ``x``, ``y`` (rows, cols) float32."""
    rows, cols = x.shape
    for i in prange(rows):
        mx = x[i, 0]
        for j in range(1, cols):
            mx = max(mx, x[i, j])
        part = np.zeros(LANES, dtype=np.float32)
        main = cols - cols % LANES
        for j in range(0, main, LANES):
            for u in range(LANES):
                p = np.float32(math.exp(x[i, j + u] - mx))
                y[i, j + u] = p
                part[u] += p
        total = np.float32(0.0)
        for u in range(LANES):
            total += part[u]
        for j in range(main, cols):
            p = np.float32(math.exp(x[i, j] - mx))
            y[i, j] = p
            total += p
        inv = np.float32(1.0) / total
        for j in range(cols):
            y[i, j] *= inv
