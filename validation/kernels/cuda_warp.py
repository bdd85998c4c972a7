"""Warp primitives, vector loads and thread placement shared by the CUDA validation kernels.

Importing this module needs numba-cuda (it raises :class:`validation.kernels.cuda_import.NoGpuError`
otherwise) but no GPU: kernels compile on their first launch. With ``NUMBA_ENABLE_CUDASIM=1`` set
before numba is imported the kernels run on Numba's CPU simulator; the simulator has no warps, so
the primitives here have plain-Python stand-ins there that give the same results (the shuffles
through a per-warp barrier), and everything else is the kernel code itself.

- ``warp_sum(v)`` / ``warp_max(v)``: xor-butterfly shuffle reductions, the result in every lane.
- ``warp_bcast(v, src)``: lane ``src``'s ``v`` in every lane.
- ``load4(arr, idx)`` / ``load8(arr, idx)``: 4 or 8 consecutive fp16/fp32 elements of the last axis
  from index tuple ``idx`` as one vector load (address aligned to ``count * itemsize`` bytes),
  widened to float32.
- ``row_slot(tpr, rows_per_block)``: the calling thread's first row, index within the row and row
  stride in a grid-stride loop over rows (GEMV, RMSNorm, softmax).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from decodex.validation.kernels.cuda_import import numba_cuda, simulator_selected
from decodex.validation.kernels.launch_geometry import WARP

cuda = numba_cuda()

SIMULATOR: bool = simulator_selected()
"""True when Numba's CUDA simulator is selected (the environment variable, read at import)."""

FULL_MASK = 0xFFFFFFFF
NEG_INF = np.float32(-np.inf)
ZERO = np.float32(0.0)
ONE = np.float32(1.0)


def jit(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """``cuda.jit`` with ``options`` (the simulator takes neither launch bounds nor forced inlining)."""
    if SIMULATOR:
        options.pop("launch_bounds", None)
        options.pop("forceinline", None)
    return cuda.jit(**options)


@jit(device=True, forceinline=True)
def row_slot(tpr, rows_per_block):  # type: ignore[no-untyped-def]
    """Where the calling thread works, with ``tpr`` threads per row and ``rows_per_block`` rows per
    block: ``(first row, index within the row, row stride of the grid-stride loop)``."""
    tid = cuda.threadIdx.x
    return cuda.blockIdx.x * rows_per_block + tid // tpr, tid % tpr, cuda.gridDim.x * rows_per_block


if not SIMULATOR:
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

else:
    # Simulator stand-ins. They are simulator device functions so that, while they run, the name
    # ``cuda`` of this module is the simulator's per-launch module (threadIdx, blockIdx, ...).
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

    @cuda.jit(device=True)
    def warp_sum(v: Any) -> Any:
        """Simulator stand-in for the shuffle sum."""
        return np.float32(sum(np.float64(x) for x in _sim_exchange(v)))

    @cuda.jit(device=True)
    def warp_max(v: Any) -> Any:
        """Simulator stand-in for the shuffle maximum."""
        return np.float32(max(_sim_exchange(v)))

    @cuda.jit(device=True)
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
