"""Validation kernels: CPU kernels against their numpy references, the ops' hand-checked FLOPs and
bytes, the case lists, and the timing helpers. (CUDA kernels: ``test_cuda_sim.py``.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from decodex.core.dtypes import DType
from decodex.validation.kernels import (
    CPU_CASES,
    GPU_CASES,
    KERNELS,
    L2_BYTES,
    SIM_CASES,
    case,
    context_lens,
    relative_error,
    rotation_copies,
    time_cpu,
)
from decodex.validation.kernels import cpu as kcpu
from decodex.validation.kernels.launch_geometry import (
    attention_splits,
    check_attention_shape,
    check_gemm_tile,
    grid_stride_blocks,
    row_threads,
)
from decodex.workloads.ops import AttentionOp, ElementwiseOp, MatmulOp

ROOT = Path(__file__).resolve().parents[2]

SMALL = [
    case("gemv", "fp32", n=37, k=203),
    case("gemv", "fp16", n=64, k=256),
    case("gemm", "fp32", m=45, n=70, k=33),
    case("gemm", "fp16", m=17, n=530, k=140),
    case("attention", "fp32", batch=3, q_heads=8, kv_heads=2, head_dim=64, ctx=50, ctx_min=0),
    case("attention", "fp16", batch=2, q_heads=4, kv_heads=4, head_dim=32, ctx=17),
    case("attention", "fp16", batch=4, q_heads=6, kv_heads=1, head_dim=128, ctx=300, ctx_min=20),
    case("rmsnorm", "fp32", rows=7, dim=300),
    case("softmax", "fp32", rows=9, cols=517),
]


@pytest.mark.parametrize("c", SMALL, ids=lambda c: c.label)
def test_cpu_kernel_matches_reference(c):
    spec = KERNELS[c.kernel]
    spec.check_shape(c.shape, c.dtype)
    inputs = spec.make_inputs(c.shape, c.dtype, np.random.default_rng(1))
    ref = spec.reference(inputs)
    out = spec.run_cpu(inputs)
    assert out.dtype == np.float32 and out.shape == ref.shape
    assert relative_error(out, ref) <= spec.tolerance[c.dtype]
    assert relative_error(out, ref) <= (1e-4 if c.dtype == "fp32" else 1e-3)


def test_cpu_attention_appends_new_token_and_is_idempotent():
    spec = KERNELS["attention"]
    shape = {"batch": 2, "q_heads": 4, "kv_heads": 2, "head_dim": 32, "ctx": 10, "ctx_min": 3}
    inputs = spec.make_inputs(shape, "fp32", np.random.default_rng(2))
    first = spec.run_cpu(inputs)
    for b, c in enumerate(inputs["context_lens"]):
        np.testing.assert_array_equal(inputs["k_cache"][b, c], inputs["k_new"][b])
        np.testing.assert_array_equal(inputs["v_cache"][b, c], inputs["v_new"][b])
    np.testing.assert_array_equal(spec.run_cpu(inputs), first)


def test_cpu_gemm_with_both_operands_fp16():
    rng = np.random.default_rng(3)
    a = rng.uniform(-1, 1, (33, 47)).astype(np.float16)
    b = rng.uniform(-1, 1, (47, 29)).astype(np.float16)
    c = np.empty((33, 29), dtype=np.float32)
    kcpu.gemm_cpu(kcpu.as_cpu_array(a), kcpu.as_cpu_array(b), c, kcpu.HALF_TO_FLOAT)
    assert relative_error(c, a.astype(np.float64) @ b.astype(np.float64)) < 1e-5


def test_half_table_is_exact():
    bits = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    halves = bits.view(np.float16)
    finite = np.isfinite(halves)
    np.testing.assert_array_equal(kcpu.HALF_TO_FLOAT[finite], halves[finite].astype(np.float32))


# --------------------------------------------------------------------------- ops, by hand


def test_gemv_op_by_hand():
    op = KERNELS["gemv"].op({"n": 4096, "k": 4096}, "fp16")
    assert isinstance(op, MatmulOp) and op.dtype == DType.FP32 and op.weight_dtype == DType.FP16
    assert op.flops == 2 * 4096 * 4096
    assert op.bytes == 4096 * 4096 * 2 + 4 * (4096 + 4096)
    op32 = KERNELS["gemv"].op({"n": 1000, "k": 3000}, "fp32")
    assert op32.bytes == 1000 * 3000 * 4 + 4 * (3000 + 1000)


def test_gemm_op_by_hand():
    op = KERNELS["gemm"].op({"m": 512, "n": 256, "k": 128}, "fp16")
    assert isinstance(op, MatmulOp) and op.dtype == DType.FP32
    assert op.flops == 2 * 512 * 256 * 128
    # B (k x n) fp16 once, A (m x k) and C (m x n) fp32 once
    assert op.bytes == 128 * 256 * 2 + 512 * 128 * 4 + 512 * 256 * 4
    op32 = KERNELS["gemm"].op({"m": 64, "n": 64, "k": 64}, "fp32")
    assert op32.bytes == 3 * 64 * 64 * 4 and op32.flops == 2 * 64**3


def test_attention_op_by_hand():
    shape = {"batch": 2, "q_heads": 8, "kv_heads": 2, "head_dim": 64, "ctx": 300, "ctx_min": 100}
    lens = context_lens(shape)
    assert sorted(lens.tolist()) == [100, 300]
    op = KERNELS["attention"].op(shape, "fp16")
    assert isinstance(op, AttentionOp) and op.dtype == DType.FP32 and op.kv_dtype == DType.FP16
    assert op.kv_elements_per_token == 2 * 2 * 64
    # each query head attends c + 1 keys: 2 (QK) + 2 (PV) FLOP per dim
    assert op.flops == 2 * 8 * (64 + 64) * (101 + 301)
    kv_token = 2 * 2 * 64 * 2  # K and V, 2 KV heads, 64 dims, fp16
    # cached tokens read once, the new token read (from k_new/v_new) and written once
    assert op.kv_bytes == (100 + 300 + 2 + 2) * kv_token
    assert op.activation_bytes == 2 * 8 * (64 + 64) * 4  # q read, output written, fp32
    assert op.bytes == op.kv_bytes + op.activation_bytes


def test_rmsnorm_and_softmax_ops_by_hand():
    rms = KERNELS["rmsnorm"].op({"rows": 4, "dim": 4096}, "fp32")
    assert isinstance(rms, ElementwiseOp) and rms.dtype == DType.FP32
    assert rms.flops == 4 * 4 * 4096
    assert rms.bytes == 4 * 4096 * 4 * 2 + 4096 * 4
    sm = KERNELS["softmax"].op({"rows": 3, "cols": 1000}, "fp32")
    assert sm.flops == 5 * 3000
    assert sm.bytes == 3000 * 4 * 2


def test_op_bytes_match_the_arrays_the_kernel_moves():
    """Inputs + output bytes equal op bytes (attention: plus the new token's write, minus the
    cache slots past each request's length that are allocated but never touched)."""
    rng = np.random.default_rng(4)
    for c in (case("gemv", "fp16", n=64, k=96), case("gemm", "fp16", m=8, n=24, k=16),
              case("rmsnorm", "fp32", rows=3, dim=40), case("softmax", "fp32", rows=2, cols=30)):
        spec = KERNELS[c.kernel]
        inputs = spec.make_inputs(c.shape, c.dtype, rng)
        moved = sum(v.nbytes for v in inputs.values() if v.ndim >= 1) + spec.reference(inputs).size * 4
        assert spec.op(c.shape, c.dtype).bytes == moved, c.label


# --------------------------------------------------------------------------- registry and cases


def test_registry_fields():
    assert set(KERNELS) == {"gemv", "gemm", "attention", "rmsnorm", "softmax"}
    for name, spec in KERNELS.items():
        assert spec.name == name and spec.unit_role == "vector"
        for dtype in spec.dtypes:
            assert dtype in spec.tolerance


def test_case_lists():
    assert len(CPU_CASES) >= 20 and len(GPU_CASES) >= 40 and SIM_CASES
    for c in CPU_CASES + GPU_CASES + SIM_CASES:
        KERNELS[c.kernel].check_shape(c.shape, c.dtype)
        assert KERNELS[c.kernel].op(c.shape, c.dtype).flops > 0
    cpu_kernels = {c.kernel for c in CPU_CASES}
    assert cpu_kernels == set(KERNELS)
    for c in CPU_CASES:  # working set under 2 GB on the 24 GB machine
        spec = KERNELS[c.kernel]
        assert spec.op(c.shape, c.dtype).bytes < 2e9, c.label
    gemv = [c for c in GPU_CASES if c.kernel == "gemv"]
    sizes = [KERNELS["gemv"].op(c.shape, c.dtype).weight_bytes for c in gemv]
    assert min(sizes) < 10e6 and max(sizes) >= 4e9
    gemm = [c.shape["m"] * c.shape["n"] * c.shape["k"] for c in GPU_CASES if c.kernel == "gemm"]
    assert min(gemm) == 64**3 and max(gemm) == 8192**3
    attn = [c.shape for c in GPU_CASES if c.kernel == "attention"]
    assert min(s["batch"] for s in attn) == 1 and max(s["batch"] for s in attn) == 256
    assert min(s["ctx"] for s in attn) == 128 and max(s["ctx"] for s in attn) == 32768
    assert any("ctx_min" in s for s in attn)


def test_bad_shapes_rejected():
    with pytest.raises(ValueError):
        KERNELS["gemv"].check_shape({"n": 4}, "fp32")
    with pytest.raises(ValueError):
        KERNELS["rmsnorm"].check_shape({"rows": 4, "dim": 4}, "fp16")
    with pytest.raises(ValueError):
        KERNELS["gemm"].make_inputs({"m": 4, "n": 4, "k": 4, "tile": 32, "reg": 8}, "fp32", np.random.default_rng())
    with pytest.raises(ValueError):
        KERNELS["attention"].make_inputs({"batch": 1, "q_heads": 6, "kv_heads": 4, "head_dim": 64, "ctx": 3},
                                         "fp32", np.random.default_rng())


# --------------------------------------------------------------------------- timing


def test_time_cpu():
    calls = []
    result = time_cpu(calls.append, "x", repeats=3, warmup=2)
    assert len(calls) == 5 and result.repeats == 3
    assert 0 <= result.min_s <= result.median_s


def test_rotation_rule():
    assert rotation_copies(1e9) == 1  # far above 4x L2
    assert rotation_copies(4 * L2_BYTES) == 1
    assert rotation_copies(150e6) == 2
    assert rotation_copies(10e6) == 20
    assert rotation_copies(1e3) == 64  # capped
    assert rotation_copies(10e6, cold=False) == 1


def test_import_needs_no_numba_cuda():
    """The CPU side imports no CUDA code (``test_kernels_without_cuda.py`` runs it without numba-cuda)."""
    code = ("import sys, decodex.validation.kernels, decodex.validation.kernel_validation\n"
            "cuda = [m for m in sys.modules if m.startswith(('numba.cuda', 'numba_cuda', "
            "'decodex.validation.kernels.cuda_')) and m != 'decodex.validation.kernels.cuda_import']\n"
            "assert not cuda, cuda")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_launch_geometry():
    assert [row_threads(w) for w in (1, 2048, 2049)] == [32, 32, 256]
    assert grid_stride_blocks(1, 8, 132) == 1 and grid_stride_blocks(17, 8, 132) == 3
    assert grid_stride_blocks(10**9, 8, 132) == 8 * 132
    assert attention_splits(256, 8, 4096, 132) == 1  # 2048 blocks already fill the GPU
    assert attention_splits(1, 8, 32768, 132) == 33  # about 2 blocks per SM
    assert attention_splits(1, 8, 600, 132) == 2  # at least 512 tokens per split
    check_gemm_tile(16, 8)
    check_attention_shape(8, 128)
