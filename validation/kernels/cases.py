"""Kernel specifications: inputs, numpy reference, CPU and CUDA runs, and the Decodex op of each.

A :class:`KernelSpec` ties one validation kernel to the :class:`workloads.ops.Op` whose FLOPs and
bytes describe exactly what the kernel does, so that a measured time can be set against the
simulator's prediction for that op on the device's vector (CUDA-core / CPU SIMD) unit. All kernels
compute in fp32 (``op.dtype`` is fp32); fp16 operands are widened in registers.

Shapes are ``dict[str, int]``; ``dtype`` names the storage format of the kernel's large operand:

| kernel | shape keys | dtype | inputs -> output |
|---|---|---|---|
| ``gemv`` | n, k | weights fp32/fp16 | w (n, k), x (k,) fp32 -> y (n,) fp32 |
| ``gemm`` | m, n, k [, tile, reg] | B fp32/fp16 (A is fp32) | a (m, k), b (k, n) -> c (m, n) fp32 |
| ``attention`` | batch, q_heads, kv_heads, head_dim, ctx [, ctx_min, splits] | KV cache fp32/fp16 | see below |
| ``rmsnorm`` | rows, dim | fp32 | x (rows, dim), gamma (dim,), eps -> y (rows, dim) |
| ``softmax`` | rows, cols | fp32 | x (rows, cols) -> y (rows, cols) |

Attention (one decode step, as in vLLM/FlashInfer): ``q`` (batch, q_heads, head_dim) fp32,
``k_cache``/``v_cache`` (batch, max_ctx, kv_heads, head_dim), ``k_new``/``v_new`` (batch,
kv_heads, head_dim) in the KV dtype, ``context_lens`` (batch,) int32 = tokens already cached.
The kernel stores the new token's K/V at position ``context_lens[b]`` and query head ``h``
attends all ``context_lens[b] + 1`` keys of KV head ``h // (q_heads // kv_heads)`` (softmax with
max subtraction, scale 1/sqrt(head_dim)); ``max_ctx = max(context_lens) + 1``. That is exactly
``AttentionOp(context_lens, query_lens=1)``: cached K/V read once per KV head, the new token's
K/V read once and written once, q read and the output written once. Lengths are a deterministic
function of the shape (:func:`context_lens`): ``ctx`` for every request, or spread evenly over
``[ctx_min, ctx]`` and shuffled with a fixed seed.

Launch parameters travel in the inputs as 0-d arrays (``tile``, ``reg``, ``splits``; ``eps``
is an input of RMSNorm): :func:`to_device` moves only arrays of rank >= 1 to the GPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from decodex.core.dtypes import DType
from decodex.validation.kernels import cpu
from decodex.validation.kernels.launch_geometry import GEMM_REG, GEMM_TILE, check_attention_shape, check_gemm_tile
from decodex.workloads.ops import AttentionOp, ElementwiseOp, MatmulOp, Op

Shape = Mapping[str, int]
Inputs = dict[str, np.ndarray]

UNIT_ROLE = "vector"
"""The unit these kernels run on: CUDA cores (SIMT) on a GPU, the SIMD units on a CPU."""

RMSNORM_EPS = 1e-6
_NP_DTYPES = {"fp32": np.float32, "fp16": np.float16}
_CHUNK = 1 << 24  # elements generated / referenced per chunk (bounds host memory for GB arrays)


@dataclass(frozen=True)
class KernelSpec:
    """One validation kernel.

    - ``make_inputs(shape, dtype, rng)``: host inputs (numpy) for a shape and storage dtype.
    - ``reference(inputs)``: the exact result, numpy with float64 accumulation.
    - ``run_cpu(inputs)``: the Numba CPU kernel's result (compiles on the first call).
    - ``run_cuda(device_inputs)``: launches the Numba CUDA kernel on :func:`to_device` inputs and
      returns a :class:`validation.kernels.cuda_launch.CudaRun` (device output, launch
      configurations, ``launch()`` to re-run on the same buffers). Only this imports CUDA code.
    - ``op(shape, dtype)``: the Decodex op with the kernel's FLOPs and bytes (compute dtype fp32).
    - ``tolerance[dtype]``: the largest accepted ``relative_error(out, reference)``.
    - ``unit_role``: the role of the unit that runs it (``"vector"``: CUDA cores / CPU SIMD).
    - ``shape_keys`` / ``optional_keys``: required and optional shape entries; ``dtypes``: the
      storage formats it accepts; ``mutates``: inputs the kernel writes (attention's caches).
    """

    name: str
    description: str
    shape_keys: tuple[str, ...]
    optional_keys: tuple[str, ...]
    dtypes: tuple[str, ...]
    make_inputs: Callable[[Shape, str, np.random.Generator], Inputs]
    reference: Callable[[Inputs], np.ndarray]
    run_cpu: Callable[[Inputs], np.ndarray]
    run_cuda: Callable[[Mapping[str, Any]], Any]
    op: Callable[[Shape, str], Op]
    tolerance: Mapping[str, float]
    unit_role: str = UNIT_ROLE
    mutates: tuple[str, ...] = ()

    def check_shape(self, shape: Shape, dtype: str) -> None:
        """Raise ValueError if ``shape`` lacks a required key, has an unknown one, or ``dtype`` is not accepted."""
        missing = [key for key in self.shape_keys if key not in shape]
        unknown = [key for key in shape if key not in self.shape_keys + self.optional_keys]
        if missing or unknown:
            raise ValueError(f"{self.name}: shape {dict(shape)} missing {missing}, unknown {unknown}")
        if dtype not in self.dtypes:
            raise ValueError(f"{self.name}: dtype {dtype!r} not one of {self.dtypes}")


# --------------------------------------------------------------------------- helpers


def relative_error(out: np.ndarray, ref: np.ndarray) -> float:
    """max |out - ref| / max |ref| (dimensionless; 0 for an all-zero reference that matches)."""
    diff = float(np.max(np.abs(np.asarray(out, dtype=np.float64) - ref))) if ref.size else 0.0
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    return diff / scale if scale > 0 else diff


def to_device(inputs: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Copy the arrays of rank >= 1 to the GPU (``numba.cuda.to_device``); 0-d launch parameters
    stay on the host. Needs numba-cuda (or the simulator); raises NoGpuError without it."""
    from decodex.validation.kernels.cuda_import import numba_cuda

    cuda = numba_cuda()
    return {key: cuda.to_device(v) if np.ndim(v) >= 1 else v for key, v in inputs.items()}


def scalar(value: Any) -> float:
    """A launch parameter as a Python number: a number, a 0-d array, or a 0-d device array."""
    if hasattr(value, "copy_to_host"):
        value = value.copy_to_host()
    return np.asarray(value).item()


def _uniform(rng: np.random.Generator, shape: tuple[int, ...], dtype: Any, low: float = -1.0,
             high: float = 1.0) -> np.ndarray:
    """Uniform random array in [low, high), generated in chunks (no float64 temporary of full size)."""
    out = np.empty(shape, dtype=dtype)
    flat = out.reshape(-1)
    for start in range(0, flat.size, _CHUNK):
        stop = min(flat.size, start + _CHUNK)
        block = rng.random(stop - start, dtype=np.float32)
        flat[start:stop] = block * np.float32(high - low) + np.float32(low)
    return out


def _rows_matvec(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """w @ x in float64, a chunk of rows at a time."""
    x64 = x.astype(np.float64)
    rows = max(1, _CHUNK // max(1, w.shape[1]))
    return np.concatenate([w[r:r + rows].astype(np.float64) @ x64 for r in range(0, w.shape[0], rows)])


def _dtype(name: str) -> Any:
    return _NP_DTYPES[name]


# --------------------------------------------------------------------------- GEMV


def _gemv_inputs(shape: Shape, dtype: str, rng: np.random.Generator) -> Inputs:
    n, k = shape["n"], shape["k"]
    return {"w": _uniform(rng, (n, k), _dtype(dtype)), "x": _uniform(rng, (k,), np.float32)}


def _gemv_reference(inputs: Inputs) -> np.ndarray:
    return _rows_matvec(inputs["w"], inputs["x"])


def _gemv_cpu(inputs: Inputs) -> np.ndarray:
    w = inputs["w"]
    y = np.empty(w.shape[0], dtype=np.float32)
    cpu.gemv_cpu(cpu.as_cpu_array(w), inputs["x"], y, cpu.HALF_TO_FLOAT)
    return y


def _gemv_cuda(dev: Mapping[str, Any]) -> Any:
    from decodex.validation.kernels import cuda_launch

    return cuda_launch.gemv(dev)


def _gemv_op(shape: Shape, dtype: str) -> Op:
    """GEMV as a 1 x n x k matmul: weights (n*k in ``dtype``) once, x (k) and y (n) fp32 once."""
    return MatmulOp(name="gemv", block="validation", dtype=DType.FP32, m=1, n=shape["n"], k=shape["k"],
                    weight_dtype=DType.parse(dtype))


# --------------------------------------------------------------------------- GEMM


def _gemm_inputs(shape: Shape, dtype: str, rng: np.random.Generator) -> Inputs:
    m, n, k = shape["m"], shape["n"], shape["k"]
    tile, reg = int(shape.get("tile", GEMM_TILE)), int(shape.get("reg", GEMM_REG))
    check_gemm_tile(tile, reg)
    return {"a": _uniform(rng, (m, k), np.float32), "b": _uniform(rng, (k, n), _dtype(dtype)),
            "tile": np.array(tile, dtype=np.int64), "reg": np.array(reg, dtype=np.int64)}


def _gemm_reference(inputs: Inputs) -> np.ndarray:
    a, b = inputs["a"], inputs["b"].astype(np.float64)
    rows = max(1, _CHUNK // max(1, a.shape[1]))
    return np.concatenate([a[r:r + rows].astype(np.float64) @ b for r in range(0, a.shape[0], rows)])


def _gemm_cpu(inputs: Inputs) -> np.ndarray:
    a, b = inputs["a"], inputs["b"]
    c = np.empty((a.shape[0], b.shape[1]), dtype=np.float32)
    cpu.gemm_cpu(cpu.as_cpu_array(a), cpu.as_cpu_array(b), c, cpu.HALF_TO_FLOAT)
    return c


def _gemm_cuda(dev: Mapping[str, Any]) -> Any:
    from decodex.validation.kernels import cuda_launch

    tile = int(scalar(dev["tile"])) if "tile" in dev else GEMM_TILE
    reg = int(scalar(dev["reg"])) if "reg" in dev else GEMM_REG
    return cuda_launch.gemm(dev, tile, reg)


def _gemm_op(shape: Shape, dtype: str) -> Op:
    """GEMM m x n x k: B (k*n in ``dtype``) as the weight operand once, A (m*k) and C (m*n) fp32 once."""
    return MatmulOp(name="gemm", block="validation", dtype=DType.FP32, m=shape["m"], n=shape["n"], k=shape["k"],
                    weight_dtype=DType.parse(dtype))


# --------------------------------------------------------------------------- attention


def context_lens(shape: Shape) -> np.ndarray:
    """Cached tokens per request (int32, shape (batch,)): ``ctx`` for all, or ``ctx_min..ctx`` evenly
    spaced and shuffled with a fixed seed when ``ctx_min`` is given (a function of the shape alone)."""
    batch, ctx = int(shape["batch"]), int(shape["ctx"])
    low = int(shape.get("ctx_min", ctx))
    if not 0 <= low <= ctx:
        raise ValueError(f"attention: need 0 <= ctx_min ({low}) <= ctx ({ctx})")
    if batch == 1 or low == ctx:
        return np.full(batch, ctx, dtype=np.int32)
    lens = np.rint(np.linspace(low, ctx, batch)).astype(np.int32)
    return lens[np.random.default_rng(20261121).permutation(batch)]


def _attention_dims(shape: Shape) -> tuple[int, int, int, int]:
    batch, q_heads, kv_heads, head_dim = (int(shape[key]) for key in ("batch", "q_heads", "kv_heads", "head_dim"))
    if kv_heads < 1 or q_heads % kv_heads:
        raise ValueError(f"attention: q_heads {q_heads} must be a multiple of kv_heads {kv_heads}")
    return batch, q_heads, kv_heads, head_dim


def _attention_inputs(shape: Shape, dtype: str, rng: np.random.Generator) -> Inputs:
    batch, q_heads, kv_heads, head_dim = _attention_dims(shape)
    check_attention_shape(q_heads // kv_heads, head_dim)
    lens = context_lens(shape)
    max_ctx = int(lens.max()) + 1
    kv = _dtype(dtype)
    out: Inputs = {
        "q": _uniform(rng, (batch, q_heads, head_dim), np.float32),
        "k_cache": _uniform(rng, (batch, max_ctx, kv_heads, head_dim), kv),
        "v_cache": _uniform(rng, (batch, max_ctx, kv_heads, head_dim), kv),
        "k_new": _uniform(rng, (batch, kv_heads, head_dim), kv),
        "v_new": _uniform(rng, (batch, kv_heads, head_dim), kv),
        "context_lens": lens,
    }
    if "splits" in shape:
        out["splits"] = np.array(int(shape["splits"]), dtype=np.int64)
    return out


def _attention_reference(inputs: Inputs) -> np.ndarray:
    q = inputs["q"].astype(np.float64)
    batch, q_heads, head_dim = q.shape
    kv_heads = inputs["k_cache"].shape[2]
    group = q_heads // kv_heads
    out = np.empty((batch, q_heads, head_dim), dtype=np.float64)
    for b in range(batch):
        c = int(inputs["context_lens"][b])
        k = np.concatenate([inputs["k_cache"][b, :c], inputs["k_new"][b][None]]).astype(np.float64)
        v = np.concatenate([inputs["v_cache"][b, :c], inputs["v_new"][b][None]]).astype(np.float64)
        qg = q[b].reshape(kv_heads, group, head_dim)
        scores = np.einsum("hgd,thd->hgt", qg, k) / math.sqrt(head_dim)
        scores -= scores.max(axis=-1, keepdims=True)
        p = np.exp(scores)
        p /= p.sum(axis=-1, keepdims=True)
        out[b] = np.einsum("hgt,thd->hgd", p, v).reshape(q_heads, head_dim)
    return out


def _attention_cpu(inputs: Inputs) -> np.ndarray:
    q = inputs["q"]
    out = np.empty(q.shape, dtype=np.float32)
    cpu.attention_cpu(q, *(cpu.as_cpu_array(inputs[key]) for key in ("k_cache", "v_cache", "k_new", "v_new")),
                      inputs["context_lens"], out, cpu.HALF_TO_FLOAT)
    return out


def _attention_cuda(dev: Mapping[str, Any]) -> Any:
    from decodex.validation.kernels import cuda_launch

    splits = int(scalar(dev["splits"])) if "splits" in dev else 0
    return cuda_launch.attention(dev, splits)


def _attention_op(shape: Shape, dtype: str) -> Op:
    """One decode token per request over ``context_lens`` cached tokens, GQA, K and V of head_dim."""
    batch, q_heads, kv_heads, head_dim = _attention_dims(shape)
    return AttentionOp(name="decode_attention", block="validation", dtype=DType.FP32,
                       context_lens=context_lens(shape).astype(np.int64), query_lens=np.ones(batch, dtype=np.int64),
                       q_heads=q_heads, kv_heads=kv_heads, qk_dim=head_dim, v_dim=head_dim,
                       kv_elements_per_token=kv_heads * 2 * head_dim, kv_dtype=DType.parse(dtype))


# --------------------------------------------------------------------------- RMSNorm


def _rmsnorm_inputs(shape: Shape, dtype: str, rng: np.random.Generator) -> Inputs:
    rows, dim = shape["rows"], shape["dim"]
    return {"x": _uniform(rng, (rows, dim), np.float32, -2.0, 2.0),
            "gamma": _uniform(rng, (dim,), np.float32, 0.5, 1.5),
            "eps": np.array(RMSNORM_EPS, dtype=np.float32)}


def _rmsnorm_reference(inputs: Inputs) -> np.ndarray:
    x = inputs["x"].astype(np.float64)
    eps = float(inputs["eps"])
    return x / np.sqrt((x * x).mean(axis=1, keepdims=True) + eps) * inputs["gamma"].astype(np.float64)


def _rmsnorm_cpu(inputs: Inputs) -> np.ndarray:
    x = inputs["x"]
    y = np.empty_like(x)
    cpu.rmsnorm_cpu(x, inputs["gamma"], float(inputs["eps"]), y)
    return y


def _rmsnorm_cuda(dev: Mapping[str, Any]) -> Any:
    from decodex.validation.kernels import cuda_launch

    return cuda_launch.rmsnorm(dev, float(scalar(dev["eps"])))


def _rmsnorm_op(shape: Shape, dtype: str) -> Op:
    """RMSNorm: 4 FLOP per element, x read and y written once (fp32), gamma (dim) read once."""
    return ElementwiseOp(name="rmsnorm", block="validation", dtype=DType.FP32, elements=shape["rows"] * shape["dim"],
                         flops_per_element=4, tensors_read=1, tensors_written=1, weight_elements=shape["dim"])


# --------------------------------------------------------------------------- softmax


def _softmax_inputs(shape: Shape, dtype: str, rng: np.random.Generator) -> Inputs:
    return {"x": _uniform(rng, (shape["rows"], shape["cols"]), np.float32, -8.0, 8.0)}


def _softmax_reference(inputs: Inputs) -> np.ndarray:
    x = inputs["x"].astype(np.float64)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _softmax_cpu(inputs: Inputs) -> np.ndarray:
    x = inputs["x"]
    y = np.empty_like(x)
    cpu.softmax_cpu(x, y)
    return y


def _softmax_cuda(dev: Mapping[str, Any]) -> Any:
    from decodex.validation.kernels import cuda_launch

    return cuda_launch.softmax(dev)


def _softmax_op(shape: Shape, dtype: str) -> Op:
    """Row softmax: 5 FLOP per element (the router-softmax convention), x read and y written once (fp32)."""
    return ElementwiseOp(name="softmax", block="validation", dtype=DType.FP32, elements=shape["rows"] * shape["cols"],
                         flops_per_element=5, tensors_read=1, tensors_written=1)


# --------------------------------------------------------------------------- registry

_TOL = {"fp32": 1e-4, "fp16": 1e-3}

KERNELS: dict[str, KernelSpec] = {
    spec.name: spec
    for spec in (
        KernelSpec("gemv", "y = W x, W (n, k) row-major fp32/fp16, fp32 x and y, fp32 accumulation",
                   ("n", "k"), (), ("fp32", "fp16"), _gemv_inputs, _gemv_reference, _gemv_cpu, _gemv_cuda,
                   _gemv_op, _TOL),
        KernelSpec("gemm", "C = A B on CUDA cores, shared-memory tiles and register blocks; A fp32, B fp32/fp16",
                   ("m", "n", "k"), ("tile", "reg"), ("fp32", "fp16"), _gemm_inputs, _gemm_reference, _gemm_cpu,
                   _gemm_cuda, _gemm_op, _TOL),
        KernelSpec("attention", "batched GQA decode attention with KV append, per-request context lengths",
                   ("batch", "q_heads", "kv_heads", "head_dim", "ctx"), ("ctx_min", "splits"), ("fp32", "fp16"),
                   _attention_inputs, _attention_reference, _attention_cpu, _attention_cuda, _attention_op, _TOL,
                   mutates=("k_cache", "v_cache")),
        KernelSpec("rmsnorm", "RMSNorm over rows with weight gamma and eps, fp32",
                   ("rows", "dim"), (), ("fp32",), _rmsnorm_inputs, _rmsnorm_reference, _rmsnorm_cpu, _rmsnorm_cuda,
                   _rmsnorm_op, _TOL),
        KernelSpec("softmax", "row-wise softmax with max subtraction, fp32",
                   ("rows", "cols"), (), ("fp32",), _softmax_inputs, _softmax_reference, _softmax_cpu, _softmax_cuda,
                   _softmax_op, _TOL),
    )
}
"""The validation kernels by name."""
