"""Numba CUDA versions of the validation kernels (NVIDIA's ``numba-cuda``), CUDA cores only.

Importing this module never needs a GPU: ``numba.cuda`` is imported under a guard (``cuda`` is
``None`` when numba-cuda is missing) and kernels are built by cached factories and compiled by
Numba on their first launch. With ``NUMBA_ENABLE_CUDASIM=1`` set before numba is imported the
same kernels run on the CPU simulator; the simulator has no warps, so the warp primitives below
(shuffle reductions, 16-byte vector loads) have plain-Python stand-ins there that give the same
results (the shuffles through a per-warp barrier), and everything else is the kernel code itself.

Kernels (all accumulate in fp32 and write fp32; fp16 operands are widened in registers):

- ``gemv``: one warp per row at a time (8 rows per 256-thread block, grid-stride over rows);
  each lane loads 4 consecutive weights per access (8 B for fp16, 16 B for fp32, one vector
  load) and the matching 16 B of ``x``, four independent accesses in flight per lane, then a
  shuffle reduction. ``k % 4 != 0`` falls back to scalar coalesced loads.
- ``gemm``: ``tile x tile`` threads, each computing a ``reg x reg`` register block, over a
  ``(tile*reg) x tile`` / ``tile x (tile*reg)`` pair of shared-memory tiles (fp32 in shared).
- ``attention``: decode attention with KV append, one block of 4 warps per (request, KV head)
  and optionally per split of the request's tokens (flash-decoding; a second kernel combines the
  splits). A warp takes 32 tokens at a time: lane ``j`` computes the scores of token ``j`` for
  every query head of the group (K read once per KV head), an online softmax keeps the running
  max and sum, then lanes split ``head_dim`` to accumulate P·V.
- ``rmsnorm`` / ``softmax``: a warp (rows <= 2048 wide) or a 256-thread block per row,
  grid-stride over rows; the row is read twice (the second read hits L2) and written once.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np

SIMULATOR: bool = os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")
"""True when Numba's CUDA simulator is selected (the environment variable, read at import)."""

try:  # numba-cuda is an optional dependency (the ``gpu`` extra)
    from numba import cuda
except Exception:  # ImportError, or numba's own error when its CUDA target is absent
    cuda = None

WARP = 32
FULL_MASK = 0xFFFFFFFF
GEMV_WARPS = 8  # rows in flight per GEMV block (256 threads)
ATTN_WARPS = 4  # warps per attention block (128 threads)
ROW_THREADS = 256  # threads per block of the row-wise kernels
NEG_INF = np.float32(-np.inf)
ZERO = np.float32(0.0)
ONE = np.float32(1.0)
DEFAULT_SMS = 132  # H100/H200; used when the device cannot be asked (the simulator)


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
    """True when numba-cuda is installed and a GPU (or the simulator) is usable."""
    return cuda is not None and bool(cuda.is_available())


def _require_cuda() -> Any:
    if cuda is None:
        raise RuntimeError("numba-cuda is not installed: pip install 'decodex[gpu]'")
    return cuda


def sm_count() -> int:
    """Streaming multiprocessors of the current device (``DEFAULT_SMS`` under the simulator)."""
    dev = _require_cuda().get_current_device()
    return int(getattr(dev, "MULTIPROCESSOR_COUNT", DEFAULT_SMS))


def _jit(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """``cuda.jit`` with ``options`` (the simulator ignores launch bounds)."""
    cu = _require_cuda()
    if SIMULATOR:
        options.pop("launch_bounds", None)
    return cu.jit(**options)


# --------------------------------------------------------------------------- warp primitives

if cuda is not None and not SIMULATOR:
    from llvmlite import ir
    from numba import types
    from numba.cuda import cgutils
    from numba.cuda.extending import intrinsic

    def _make_vector_load(count: int) -> Any:
        """An intrinsic ``load(arr, idx) -> (float32,) * count``: ``count`` consecutive elements of
        the last axis starting at index tuple ``idx``, one vector load (address aligned to
        ``count * itemsize`` bytes), widened to float32."""

        @intrinsic
        def load(typingctx: Any, arr: Any, idx: Any) -> Any:
            if not isinstance(arr, types.Array) or arr.dtype not in (types.float16, types.float32):
                return None
            if not isinstance(idx, types.BaseTuple) or len(idx) != arr.ndim:
                return None
            if not all(isinstance(t, types.Integer) for t in idx):
                return None
            retty = types.UniTuple(types.float32, count)

            def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
                aryty, idxty = sig.args
                ary = context.make_array(aryty)(context, builder, value=args[0])
                raw = cgutils.unpack_tuple(builder, args[1], count=len(idxty))
                inds = [context.cast(builder, v, t, types.intp) for v, t in zip(raw, idxty, strict=True)]
                ptr = cgutils.get_item_pointer(context, builder, aryty, ary, inds)
                i32 = ir.IntType(32)
                vals = []
                if aryty.dtype == types.float32:
                    vptr = builder.bitcast(ptr, ir.VectorType(ir.FloatType(), count).as_pointer())
                    vec = builder.load(vptr, align=4 * count)
                    vals = [builder.extract_element(vec, ir.Constant(i32, i)) for i in range(count)]
                else:  # fp16: 64-bit words (one ld.u64 / ld.v2.u64), split, widened exactly
                    i64 = ir.IntType(64)
                    words = count // 4
                    vptr = builder.bitcast(ptr, ir.VectorType(i64, words).as_pointer())
                    vec = builder.load(vptr, align=2 * count)
                    for i in range(count):
                        word = builder.extract_element(vec, ir.Constant(i32, i // 4))
                        bits = builder.trunc(builder.lshr(word, ir.Constant(i64, 16 * (i % 4))), ir.IntType(16))
                        vals.append(builder.fpext(builder.bitcast(bits, ir.HalfType()), ir.FloatType()))
                return context.make_tuple(builder, retty, vals)

            return retty(arr, idx), codegen

        return load

    load4 = _make_vector_load(4)
    load8 = _make_vector_load(8)

    @cuda.jit(device=True)
    def warp_sum(v: float) -> float:
        """Sum of ``v`` over the 32 lanes of the warp, returned to every lane (xor butterfly)."""
        for off in (16, 8, 4, 2, 1):
            v += cuda.shfl_xor_sync(FULL_MASK, v, off)
        return v

    @cuda.jit(device=True)
    def warp_max(v: float) -> float:
        """Maximum of ``v`` over the 32 lanes of the warp, returned to every lane."""
        for off in (16, 8, 4, 2, 1):
            v = max(v, cuda.shfl_xor_sync(FULL_MASK, v, off))
        return v

    @cuda.jit(device=True)
    def warp_bcast(v: float, src: int) -> float:
        """``v`` of lane ``src``, returned to every lane."""
        return cuda.shfl_sync(FULL_MASK, v, src)

elif cuda is not None:
    _SIM_LOCK = threading.Lock()
    _SIM_WARPS: dict[tuple[int, ...], tuple[threading.Barrier, list[Any]]] = {}

    def _sim_exchange(v: Any) -> list[Any]:
        """The values of ``v`` of all 32 lanes of the calling thread's warp (simulator only)."""
        tx, ty, tz = cuda.threadIdx.x, cuda.threadIdx.y, cuda.threadIdx.z
        tid = tx + cuda.blockDim.x * (ty + cuda.blockDim.y * tz)
        key = (cuda.blockIdx.x, cuda.blockIdx.y, cuda.blockIdx.z, tid // WARP)
        with _SIM_LOCK:
            if key not in _SIM_WARPS:
                _SIM_WARPS[key] = (threading.Barrier(WARP, timeout=120.0), [None] * WARP)
            barrier, vals = _SIM_WARPS[key]
        vals[tid % WARP] = v
        barrier.wait()
        out = list(vals)
        barrier.wait()
        return out

    def warp_sum(v: Any) -> Any:
        """Simulator stand-in for the shuffle sum."""
        return np.float32(sum(np.float64(x) for x in _sim_exchange(v)))

    def warp_max(v: Any) -> Any:
        """Simulator stand-in for the shuffle maximum."""
        return np.float32(max(_sim_exchange(v)))

    def warp_bcast(v: Any, src: int) -> Any:
        """Simulator stand-in for ``shfl_sync``."""
        return _sim_exchange(v)[src]

    def _sim_vector_load(count: int) -> Callable[[Any, tuple[int, ...]], tuple[Any, ...]]:
        def load(arr: Any, idx: tuple[int, ...]) -> tuple[Any, ...]:
            head, last = tuple(idx[:-1]), idx[-1]
            return tuple(np.float32(arr[(*head, last + u)]) for u in range(count))

        return load

    load4 = _sim_vector_load(4)
    load8 = _sim_vector_load(8)


# --------------------------------------------------------------------------- GEMV


@cache
def gemv_kernel(vectorized: bool) -> Any:
    """The GEMV kernel ``(w, x, y)``: vector loads of 4 weights per lane (needs ``k % 4 == 0``) or
    scalar coalesced loads."""
    wpb = GEMV_WARPS
    step = 4 * WARP

    if vectorized:

        @_jit(launch_bounds=wpb * WARP)
        def gemv_vec(w, x, y):  # type: ignore[no-untyped-def]
            n = w.shape[0]
            k = w.shape[1]
            lane = cuda.threadIdx.x % WARP
            row = cuda.blockIdx.x * wpb + cuda.threadIdx.x // WARP
            nwarps = cuda.gridDim.x * wpb
            while row < n:
                acc0 = ZERO
                acc1 = ZERO
                acc2 = ZERO
                acc3 = ZERO
                c = lane * 4
                while c + 3 * step < k:
                    a0, a1, a2, a3 = load4(w, (row, c))
                    b0, b1, b2, b3 = load4(w, (row, c + step))
                    c0, c1, c2, c3 = load4(w, (row, c + 2 * step))
                    d0, d1, d2, d3 = load4(w, (row, c + 3 * step))
                    xa0, xa1, xa2, xa3 = load4(x, (c,))
                    xb0, xb1, xb2, xb3 = load4(x, (c + step,))
                    xc0, xc1, xc2, xc3 = load4(x, (c + 2 * step,))
                    xd0, xd1, xd2, xd3 = load4(x, (c + 3 * step,))
                    acc0 += a0 * xa0 + a1 * xa1 + a2 * xa2 + a3 * xa3
                    acc1 += b0 * xb0 + b1 * xb1 + b2 * xb2 + b3 * xb3
                    acc2 += c0 * xc0 + c1 * xc1 + c2 * xc2 + c3 * xc3
                    acc3 += d0 * xd0 + d1 * xd1 + d2 * xd2 + d3 * xd3
                    c += 4 * step
                while c < k:
                    a0, a1, a2, a3 = load4(w, (row, c))
                    xa0, xa1, xa2, xa3 = load4(x, (c,))
                    acc0 += a0 * xa0 + a1 * xa1 + a2 * xa2 + a3 * xa3
                    c += step
                total = warp_sum((acc0 + acc1) + (acc2 + acc3))
                if lane == 0:
                    y[row] = total
                row += nwarps

        return gemv_vec

    @_jit(launch_bounds=wpb * WARP)
    def gemv_scalar(w, x, y):  # type: ignore[no-untyped-def]
        n = w.shape[0]
        k = w.shape[1]
        lane = cuda.threadIdx.x % WARP
        row = cuda.blockIdx.x * wpb + cuda.threadIdx.x // WARP
        nwarps = cuda.gridDim.x * wpb
        while row < n:
            acc = ZERO
            for c in range(lane, k, WARP):
                acc += np.float32(w[row, c]) * x[c]
            total = warp_sum(acc)
            if lane == 0:
                y[row] = total
            row += nwarps

    return gemv_scalar


def gemv(dev: Mapping[str, Any]) -> CudaRun:
    """Launch ``y = w @ x`` on device arrays ``w`` (n, k) fp16/fp32 and ``x`` (k,) fp32; output ``y``
    (n,) fp32. Grid: ``min(ceil(n/8), 8 * SMs)`` blocks of 256 threads."""
    cu = _require_cuda()
    w, x = dev["w"], dev["x"]
    n, k = int(w.shape[0]), int(w.shape[1])
    y = cu.device_array(n, dtype=np.float32)
    vectorized = k % 4 == 0
    kernel = gemv_kernel(vectorized)
    grid = max(1, min(math.ceil(n / GEMV_WARPS), 8 * sm_count()))
    block = GEMV_WARPS * WARP
    config = LaunchConfig("gemv_vec" if vectorized else "gemv_scalar", (grid,), (block,), 0,
                          {"rows_per_block": GEMV_WARPS, "vector_elems": 4 if vectorized else 1})

    def launch() -> None:
        kernel[grid, block](w, x, y)

    launch()
    return CudaRun(y, (config,), launch)


# --------------------------------------------------------------------------- GEMM


def check_gemm_tile(tile: int, reg: int) -> None:
    """Raise ValueError unless ``tile`` (threads per side, also the k-depth of a tile) and ``reg``
    (register block side) give a launchable kernel: tile in 4..32, reg in 1..8, <= 1024 threads."""
    if tile not in (4, 8, 16, 32) or reg not in (1, 2, 4, 8):
        raise ValueError(f"gemm: tile {tile} must be 4, 8, 16 or 32 and reg {reg} 1, 2, 4 or 8")
    if tile * tile * reg * reg > 16384:
        raise ValueError(f"gemm: tile {tile} x reg {reg} needs too many registers per block")


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

    @_jit(launch_bounds=nthreads)
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


def gemm(dev: Mapping[str, Any], tile: int = 16, reg: int = 8) -> CudaRun:
    """Launch ``c = a @ b`` on device arrays ``a`` (m, k), ``b`` (k, n) (fp16/fp32 each); output ``c``
    (m, n) fp32. Grid ``(ceil(n/(tile*reg)), ceil(m/(tile*reg)))`` of ``(tile, tile)`` threads."""
    cu = _require_cuda()
    a, b = dev["a"], dev["b"]
    m, n = int(a.shape[0]), int(b.shape[1])
    c = cu.device_array((m, n), dtype=np.float32)
    kernel = gemm_kernel(tile, reg)
    bm = tile * reg
    grid = (math.ceil(n / bm), math.ceil(m / bm))
    block = (tile, tile)
    shared = 4 * (tile * (bm + 1) + tile * bm)
    config = LaunchConfig("gemm_tiled", grid, block, shared, {"tile": tile, "reg": reg, "block_tile": bm})

    def launch() -> None:
        kernel[grid, block](a, b, c)

    launch()
    return CudaRun(c, (config,), launch)


# --------------------------------------------------------------------------- decode attention


def check_attention_shape(group: int, head_dim: int) -> None:
    """Raise ValueError unless the kernel supports ``group`` query heads per KV head and
    ``head_dim``: head_dim a multiple of 32 up to 256, group * head_dim <= 2048 (shared memory)."""
    if head_dim % WARP or not 32 <= head_dim <= 256:
        raise ValueError(f"attention: head_dim {head_dim} must be a multiple of 32 in [32, 256]")
    if group < 1 or group * head_dim > 2048:
        raise ValueError(f"attention: group {group} x head_dim {head_dim} exceeds 2048")


@cache
def attention_kernel(group: int, head_dim: int, kv_itemsize: int) -> Any:
    """The decode-attention kernel ``(q, k_cache, v_cache, k_new, v_new, lens, out, ws_m, ws_l, ws_o)``
    for ``group`` query heads per KV head; grid ``(batch * kv_heads, splits)``, 128 threads."""
    check_attention_shape(group, head_dim)
    nw = ATTN_WARPS
    nthreads = nw * WARP
    dpl = head_dim // WARP  # head dims per lane in the P.V phase
    kv_vec = 16 // kv_itemsize  # elements per 16-byte K load in the score phase
    loadk = load8 if kv_vec == 8 else load4
    scale = np.float32(1.0 / math.sqrt(head_dim))
    q_shape = (group, head_dim)
    o_shape = (nw, group, head_dim)
    ml_shape = (nw, group)
    acc_shape = (group, dpl)

    @_jit(launch_bounds=nthreads)
    def attention(q, k_cache, v_cache, k_new, v_new, lens, out, ws_m, ws_l, ws_o):  # type: ignore[no-untyped-def]
        kv_heads = k_cache.shape[2]
        b = cuda.blockIdx.x // kv_heads
        h = cuda.blockIdx.x % kv_heads
        split = cuda.blockIdx.y
        nsplit = cuda.gridDim.y
        tid = cuda.threadIdx.x
        lane = tid % WARP
        warp = tid // WARP
        cached = lens[b]
        length = cached + 1
        per = ((length + WARP - 1) // WARP + nsplit - 1) // nsplit * WARP
        t_begin = split * per
        t_end = min(length, t_begin + per)

        q_s = cuda.shared.array(q_shape, np.float32)
        for i in range(tid, group * head_dim, nthreads):
            g = i // head_dim
            d = i % head_dim
            q_s[g, d] = q[b, h * group + g, d] * scale
        if t_begin <= cached and cached < t_end:  # this block owns the new token: append it
            for d in range(tid, head_dim, nthreads):
                k_cache[b, cached, h, d] = k_new[b, h, d]
                v_cache[b, cached, h, d] = v_new[b, h, d]
        cuda.syncthreads()

        m = cuda.local.array(group, np.float32)
        l_sum = cuda.local.array(group, np.float32)
        sc = cuda.local.array(group, np.float32)
        acc = cuda.local.array(acc_shape, np.float32)
        vv = cuda.local.array(dpl, np.float32)
        for g in range(group):
            m[g] = NEG_INF
            l_sum[g] = ZERO
            for e in range(dpl):
                acc[g, e] = ZERO

        start = t_begin + warp * WARP
        while start < t_end:
            t = start + lane
            valid = t < t_end
            for g in range(group):
                sc[g] = ZERO
            if valid:
                for d0 in range(0, head_dim, kv_vec):
                    kv = loadk(k_cache, (b, t, h, d0))
                    for g in range(group):
                        s = sc[g]
                        for u in range(kv_vec):
                            s += q_s[g, d0 + u] * kv[u]
                        sc[g] = s
            for g in range(group):
                x = sc[g] if valid else NEG_INF
                m_new = max(m[g], warp_max(x))
                p = np.float32(math.exp(x - m_new)) if valid else ZERO
                alpha = np.float32(math.exp(m[g] - m_new))
                l_sum[g] = l_sum[g] * alpha + warp_sum(p)
                m[g] = m_new
                for e in range(dpl):
                    acc[g, e] *= alpha
                sc[g] = p
            count = min(WARP, t_end - start)
            for j in range(count):
                tt = start + j
                if dpl % 4 == 0:  # vector loads of 4 consecutive dims
                    for e0 in range(0, dpl, 4):
                        v0, v1, v2, v3 = load4(v_cache, (b, tt, h, lane * dpl + e0))
                        vv[e0] = v0
                        vv[e0 + 1] = v1
                        vv[e0 + 2] = v2
                        vv[e0 + 3] = v3
                else:
                    for e in range(dpl):
                        vv[e] = np.float32(v_cache[b, tt, h, lane * dpl + e])
                for g in range(group):
                    p = warp_bcast(sc[g], j)
                    for e in range(dpl):
                        acc[g, e] += p * vv[e]
            start += nw * WARP

        o_s = cuda.shared.array(o_shape, np.float32)
        m_s = cuda.shared.array(ml_shape, np.float32)
        l_s = cuda.shared.array(ml_shape, np.float32)
        for g in range(group):
            for e in range(dpl):
                o_s[warp, g, lane * dpl + e] = acc[g, e]
            if lane == 0:
                m_s[warp, g] = m[g]
                l_s[warp, g] = l_sum[g]
        cuda.syncthreads()
        for i in range(tid, group * head_dim, nthreads):
            g = i // head_dim
            d = i % head_dim
            mx = NEG_INF
            for w in range(nw):
                mx = max(mx, m_s[w, g])
            tot = ZERO
            o = ZERO
            if mx > NEG_INF:
                for w in range(nw):
                    f = np.float32(math.exp(m_s[w, g] - mx))
                    tot += l_s[w, g] * f
                    o += o_s[w, g, d] * f
            hq = h * group + g
            if nsplit == 1:
                out[b, hq, d] = o / tot
            else:
                ws_o[b, hq, split, d] = o
                if d == 0:
                    ws_m[b, hq, split] = mx
                    ws_l[b, hq, split] = tot

    return attention


@cache
def attention_combine_kernel() -> Any:
    """The kernel ``(ws_m, ws_l, ws_o, out)`` that merges the per-split partial softmax states;
    one block of 128 threads per (request, query head)."""

    @_jit(launch_bounds=128)
    def combine(ws_m, ws_l, ws_o, out):  # type: ignore[no-untyped-def]
        q_heads = out.shape[1]
        b = cuda.blockIdx.x // q_heads
        hq = cuda.blockIdx.x % q_heads
        nsplit = ws_m.shape[2]
        mx = NEG_INF
        for s in range(nsplit):
            mx = max(mx, ws_m[b, hq, s])
        for d in range(cuda.threadIdx.x, out.shape[2], cuda.blockDim.x):
            tot = ZERO
            o = ZERO
            for s in range(nsplit):
                ms = ws_m[b, hq, s]
                if ms > NEG_INF:
                    f = np.float32(math.exp(ms - mx))
                    tot += ws_l[b, hq, s] * f
                    o += ws_o[b, hq, s, d] * f
            out[b, hq, d] = o / tot

    return combine


def attention_splits(batch: int, kv_heads: int, max_len: int, sms: int) -> int:
    """Splits of each request's tokens (flash-decoding) so that about ``2 * sms`` blocks run, each
    split at least 512 tokens; 1 when ``batch * kv_heads`` blocks already fill the GPU."""
    blocks = batch * kv_heads
    if blocks >= sms:
        return 1
    return max(1, min(math.ceil(2 * sms / blocks), math.ceil(max_len / 512)))


def attention(dev: Mapping[str, Any], splits: int = 0) -> CudaRun:
    """Launch decode attention with KV append on device arrays ``q`` (batch, q_heads, d) fp32,
    ``k_cache``/``v_cache`` (batch, max_ctx, kv_heads, d) and ``k_new``/``v_new`` (batch, kv_heads, d)
    fp16/fp32, ``context_lens`` (batch,) int32; output (batch, q_heads, d) fp32. ``splits`` 0:
    :func:`attention_splits`. With splits > 1 a workspace of batch*q_heads*splits*(d+2) fp32 is
    written and read back by the combine kernel (not part of the op's bytes)."""
    cu = _require_cuda()
    q, kc, vc, kn, vn, lens = (dev[key] for key in ("q", "k_cache", "v_cache", "k_new", "v_new", "context_lens"))
    batch, q_heads, head_dim = (int(s) for s in q.shape)
    kv_heads = int(kc.shape[2])
    group = q_heads // kv_heads
    host_lens = lens.copy_to_host() if hasattr(lens, "copy_to_host") else np.asarray(lens)
    max_len = int(host_lens.max()) + 1
    nsplit = splits or attention_splits(batch, kv_heads, max_len, sm_count())
    out = cu.device_array((batch, q_heads, head_dim), dtype=np.float32)
    ws_shape = (batch, q_heads, nsplit) if nsplit > 1 else (1, 1, 1)
    ws_m = cu.device_array(ws_shape, dtype=np.float32)
    ws_l = cu.device_array(ws_shape, dtype=np.float32)
    ws_o = cu.device_array((*ws_shape, head_dim if nsplit > 1 else 1), dtype=np.float32)
    kernel = attention_kernel(group, head_dim, int(kc.dtype.itemsize))
    grid = (batch * kv_heads, nsplit)
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

    launch()
    return CudaRun(out, tuple(configs), launch)


# --------------------------------------------------------------------------- RMSNorm, softmax


def row_threads(width: int) -> int:
    """Threads per row of the row-wise kernels: a warp up to 2048 elements, else a 256-thread block."""
    return WARP if width <= 2048 else ROW_THREADS


@cache
def rmsnorm_kernel(tpr: int) -> Any:
    """The RMSNorm kernel ``(x, gamma, eps, y)`` with ``tpr`` threads per row (32 or 256)."""
    rpb = ROW_THREADS // tpr
    wpr = tpr // WARP
    nred = ROW_THREADS // WARP

    @_jit(launch_bounds=ROW_THREADS)
    def rmsnorm(x, gamma, eps, y):  # type: ignore[no-untyped-def]
        rows = x.shape[0]
        dim = x.shape[1]
        tid = cuda.threadIdx.x
        gl = tid % tpr
        lane = tid % WARP
        red = cuda.shared.array(nred, np.float32)
        row = cuda.blockIdx.x * rpb + tid // tpr
        while row < rows:
            ss = ZERO
            for j in range(gl, dim, tpr):
                v = x[row, j]
                ss += v * v
            ss = warp_sum(ss)
            if wpr > 1:
                if lane == 0:
                    red[gl // WARP] = ss
                cuda.syncthreads()
                ss = ZERO
                for w in range(wpr):
                    ss += red[w]
                cuda.syncthreads()
            r = ONE / np.float32(math.sqrt(ss / np.float32(dim) + eps))
            for j in range(gl, dim, tpr):
                y[row, j] = x[row, j] * r * gamma[j]
            row += cuda.gridDim.x * rpb

    return rmsnorm


@cache
def softmax_kernel(tpr: int) -> Any:
    """The row-softmax kernel ``(x, y)`` with ``tpr`` threads per row (32 or 256): one online pass
    for the row's max and sum of exponentials, one pass writing ``exp(x - max) / sum``."""
    rpb = ROW_THREADS // tpr
    wpr = tpr // WARP
    nred = ROW_THREADS // WARP

    @_jit(launch_bounds=ROW_THREADS)
    def softmax(x, y):  # type: ignore[no-untyped-def]
        rows = x.shape[0]
        cols = x.shape[1]
        tid = cuda.threadIdx.x
        gl = tid % tpr
        lane = tid % WARP
        red_m = cuda.shared.array(nred, np.float32)
        red_s = cuda.shared.array(nred, np.float32)
        row = cuda.blockIdx.x * rpb + tid // tpr
        while row < rows:
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
                if lane == 0:
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
            row += cuda.gridDim.x * rpb

    return softmax


def _row_grid(rows: int, tpr: int) -> int:
    return max(1, min(math.ceil(rows / (ROW_THREADS // tpr)), 8 * sm_count()))


def rmsnorm(dev: Mapping[str, Any], eps: float) -> CudaRun:
    """Launch RMSNorm on device arrays ``x`` (rows, dim) and ``gamma`` (dim,) fp32; output (rows, dim) fp32."""
    cu = _require_cuda()
    x, gamma = dev["x"], dev["gamma"]
    rows, dim = int(x.shape[0]), int(x.shape[1])
    y = cu.device_array((rows, dim), dtype=np.float32)
    tpr = row_threads(dim)
    kernel = rmsnorm_kernel(tpr)
    grid = _row_grid(rows, tpr)
    eps32 = np.float32(eps)
    config = LaunchConfig("rmsnorm", (grid,), (ROW_THREADS,), 4 * ROW_THREADS // WARP, {"threads_per_row": tpr})

    def launch() -> None:
        kernel[grid, ROW_THREADS](x, gamma, eps32, y)

    launch()
    return CudaRun(y, (config,), launch)


def softmax(dev: Mapping[str, Any]) -> CudaRun:
    """Launch the row softmax on device array ``x`` (rows, cols) fp32; output (rows, cols) fp32."""
    cu = _require_cuda()
    x = dev["x"]
    rows, cols = int(x.shape[0]), int(x.shape[1])
    y = cu.device_array((rows, cols), dtype=np.float32)
    tpr = row_threads(cols)
    kernel = softmax_kernel(tpr)
    grid = _row_grid(rows, tpr)
    config = LaunchConfig("softmax", (grid,), (ROW_THREADS,), 8 * ROW_THREADS // WARP, {"threads_per_row": tpr})

    def launch() -> None:
        kernel[grid, ROW_THREADS](x, y)

    launch()
    return CudaRun(y, (config,), launch)
