"""CUDA kernels of batched decode attention with KV append (flash-decoding splits optional).

One block of 4 warps per (request, KV head) and optionally per split of the request's tokens; a
second kernel combines the splits. A warp takes 32 tokens at a time: lane ``j`` computes the
scores of token ``j`` for every query head of the group (K read once per KV head), an online
softmax keeps the running max and sum, then lanes split ``head_dim`` to accumulate P·V. Inputs and
layout: :mod:`validation.kernels.cases`; launch: :mod:`validation.kernels.cuda_launch`. Importing
needs numba-cuda (no GPU).
"""

from __future__ import annotations

import math
from functools import cache
from typing import Any

import numpy as np

from decodex.validation.kernels.cuda_warp import (
    NEG_INF,
    ZERO,
    cuda,
    jit,
    load4,
    load8,
    warp_bcast,
    warp_max,
    warp_sum,
)
from decodex.validation.kernels.launch_geometry import ATTN_WARPS, WARP, check_attention_shape


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

    @jit(launch_bounds=nthreads)
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

        m = cuda.local.array(group, np.float32)  # running max per query head
        l_sum = cuda.local.array(group, np.float32)  # running sum of exponentials
        acc = cuda.local.array(acc_shape, np.float32)  # this lane's dims of P.V
        for g in range(group):
            m[g] = NEG_INF
            l_sum[g] = ZERO
            for e in range(dpl):
                acc[g, e] = ZERO
        sc = cuda.local.array(group, np.float32)  # this lane's token: scores, then probabilities
        vv = cuda.local.array(dpl, np.float32)  # this lane's dims of one token's V

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

    @jit(launch_bounds=128)
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
