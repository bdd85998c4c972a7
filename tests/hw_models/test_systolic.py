"""Systolic-array unit: hand-computed GEMM cycles, utilization, memory bound, attention, specs."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

# the imports register the "bank_pim" and "systolic" unit models until hw_models.device imports them
import decodex.hw_models.bank_pim
import decodex.hw_models.systolic  # noqa: F401
from decodex.core.dtypes import DType
from decodex.core.errors import SpecError
from decodex.hw_models.cost import UnsupportedOpError
from decodex.hw_models.device import load_device
from decodex.hw_models.system import DEVICES_DIR, load_system
from decodex.hw_models.systolic import SystolicUnit, gemm_cycles, gemm_utilization
from decodex.sim.estimate import estimate
from decodex.workloads.ops import AttentionOp, ElementwiseOp, MatmulOp

NPU = load_system("npu-only").primary_device
# the weight-stationary, batched reference unit of the hand-computed cases below (the catalog NPUs
# run the artifact's input-stationary, first-pass mapping: test_catalog_npus_run_the_artifacts_mapping)
SYSTOLIC = dataclasses.replace(NPU.units["systolic"], dataflow="weight-stationary", stream_overlap="all",
                               attention_issue="batched")
FILL = 128 + 128 - 2  # rows + cols - 2


def test_gemm_that_exactly_fills_one_array() -> None:
    # 1 tile, 1 wave: max(128, 128) streaming + 254 fill/drain
    assert gemm_cycles(128, 128, 128, rows=128, cols=128, arrays=1) == 128 + FILL == 382
    assert gemm_utilization(128, 128, 128, rows=128, cols=128, arrays=1) == pytest.approx(128 / 382)


def test_gemm_with_two_tiles_in_k() -> None:
    # k = 256: 2 weight tiles; one array runs them back to back, two arrays in one wave
    assert gemm_cycles(128, 256, 128, rows=128, cols=128, arrays=1) == 2 * 128 + FILL == 510
    assert gemm_cycles(128, 256, 128, rows=128, cols=128, arrays=2) == 382
    # 129 columns need 2 tiles in n as well: 4 tiles on 1 array
    assert gemm_cycles(128, 256, 129, rows=128, cols=128, arrays=1) == 4 * 128 + FILL


def test_gemv_has_low_utilization() -> None:
    # M = 1: each tile still holds the array for `rows` cycles (weight load)
    assert gemm_cycles(1, 128, 128, rows=128, cols=128, arrays=1) == 382
    assert gemm_utilization(1, 128, 128, rows=128, cols=128, arrays=1) == pytest.approx(1 / 382)
    # 4096 x 4096 GEMV on the NeuPIMs NPU: 1024 tiles / 8 arrays = 128 waves x 128 + 254
    assert float(SYSTOLIC.cycles(1, 4096, 4096)) == 128 * 128 + FILL == 16638
    # m = 1024: 128 waves x 1024 + 254 = 131326 cycles, utilization ~0.998
    assert float(SYSTOLIC.cycles(1024, 4096, 4096)) == 128 * 1024 + FILL
    assert float(gemm_utilization(1024, 4096, 4096, rows=128, cols=128, arrays=8)) == pytest.approx(
        1024 * 4096 * 4096 / (8 * 128 * 128 * 131326))


@settings(max_examples=60, deadline=None)
@given(m=st.integers(1, 4096), k=st.integers(1, 8192), n=st.integers(1, 8192), arrays=st.integers(1, 16))
def test_utilization_is_monotone_in_m_and_bounded(m: int, k: int, n: int, arrays: int) -> None:
    kw = {"rows": 128, "cols": 128, "arrays": arrays}
    u = float(gemm_utilization(m, k, n, **kw))
    assert 0 < u <= 1
    assert float(gemm_utilization(m + 1, k, n, **kw)) >= u * (1 - 1e-12)
    assert float(gemm_cycles(m, k, n, **kw)) <= float(gemm_cycles(m + 1, k, n, **kw))


def test_vectorized_cycles_match_scalars() -> None:
    m = np.array([1, 7, 128, 300])
    got = gemm_cycles(m, 4096, 1000, rows=128, cols=128, arrays=8)
    want = [float(gemm_cycles(int(x), 4096, 1000, rows=128, cols=128, arrays=8)) for x in m]
    assert got.tolist() == want


def test_gemv_is_memory_bound_and_large_gemm_compute_bound() -> None:
    gemv = MatmulOp(name="mm", dtype=DType.FP16, m=1, n=4096, k=4096, weight_dtype=DType.FP16)
    cost = SYSTOLIC.op_cost(gemv, NPU.memories)
    assert cost.compute_s == pytest.approx(16638 / 1e9)
    assert cost.memory_s == pytest.approx(gemv.bytes / 1.024e12)
    assert cost.bound == "memory" and cost.time_s == pytest.approx(cost.memory_s)
    big = MatmulOp(name="mm", dtype=DType.FP16, m=4096, n=4096, k=4096, weight_dtype=DType.FP16)
    cost = SYSTOLIC.op_cost(big, NPU.memories)
    assert cost.bound == "compute" and cost.compute_s == pytest.approx((128 * 4096 + FILL) / 1e9)
    assert cost.energy_j == pytest.approx(big.flops * 0.75e-12 + big.bytes * 31.76e-12)


def test_attention_as_per_request_gemms() -> None:
    # one request, MHA 32 heads of 128, 1023 cached + 1 new token -> 1024 keys:
    # scores: 32 heads x 1 x 8 tiles = 256 tiles = 32 waves x 128; values: 32 x 8 x 1 tiles likewise
    op = AttentionOp(name="attn", dtype=DType.FP16, context_lens=np.array([1023]), query_lens=np.array([1]),
                     q_heads=32, kv_heads=32, qk_dim=128, v_dim=128, kv_elements_per_token=8192,
                     kv_dtype=DType.FP16)
    assert SYSTOLIC.attention_cycles(op) == 2 * 32 * 128 + FILL == 8446
    two = AttentionOp(name="attn", dtype=DType.FP16, context_lens=np.array([1023, 1023]),
                      query_lens=np.array([1, 1]), q_heads=32, kv_heads=32, qk_dim=128, v_dim=128,
                      kv_elements_per_token=8192, kv_dtype=DType.FP16)
    assert SYSTOLIC.attention_cycles(two) == 2 * 2 * 32 * 128 + FILL  # fill/drain once per op
    # GQA: 4 query heads share a K/V head -> m = 4 rows stream through the same tiles, same cycles
    gqa = AttentionOp(name="attn", dtype=DType.FP16, context_lens=np.array([1023]), query_lens=np.array([1]),
                      q_heads=32, kv_heads=8, qk_dim=128, v_dim=128, kv_elements_per_token=2048,
                      kv_dtype=DType.FP16)
    assert SYSTOLIC.attention_cycles(gqa) == 2 * 8 * 128 + FILL
    cost = SYSTOLIC.op_cost(op, NPU.memories)
    assert cost.bound == "memory" and cost.energy_j > 0


def test_elementwise_and_unsupported_dtype_are_refused() -> None:
    norm = ElementwiseOp(name="norm", dtype=DType.FP16, elements=4096, flops_per_element=5)
    with pytest.raises(UnsupportedOpError):
        SYSTOLIC.op_cost(norm, NPU.memories)
    bf16 = MatmulOp(name="mm", dtype=DType.BF16, m=1, n=64, k=64, weight_dtype=DType.BF16)
    assert not SYSTOLIC.supports(DType.BF16)
    with pytest.raises(UnsupportedOpError):
        SYSTOLIC.op_cost(bf16, NPU.memories)
    assert NPU.units["vector"].op_cost(norm, NPU.memories).time_s > 0


def test_npu_specs_load_with_seed_numbers() -> None:
    assert isinstance(SYSTOLIC, SystolicUnit)
    assert SYSTOLIC.peak_flops(DType.FP16) == pytest.approx(262.144e12)  # 8 x 128 x 128 x 2 x 1 GHz
    assert NPU.units["vector"].peak_flops(DType.FP16) == pytest.approx(1.024e12)
    assert NPU.main_memory.bandwidth_bytes_per_s == pytest.approx(1.024e12)
    assert NPU.memories["sram"].bandwidth_bytes_per_s == 0
    assert "pim" not in NPU.units
    assert load_system("npu-only").default_mapper == "gpu"


def test_npu_only_estimates_with_the_gpu_mapper() -> None:
    result = estimate("gpt3-7b", "npu-only", 64, precision="fp16")
    assert result.step_time_s > 0 and result.energy_per_token_j > 0
    units = {r.unit for r in result.records}
    assert {"systolic", "vector"} <= units
    assert {r.unit for r in result.records if r.kind == "attention"} == {"systolic"}


# --- input-stationary dataflow (the NeuPIMs artifact's MatMul mapping) ----------------------------

IS = {"rows": 128, "cols": 128, "arrays": 8, "dataflow": "input-stationary"}


def test_input_stationary_cycles_by_hand() -> None:
    """b = max(ceil(128/8), 4) = 16 cycles per streamed block, fill/drain 128 + 128 - 2 + 16 = 270."""
    # QKV of gpt3-7b at tp4, 128 tokens: 1 x 32 activation tiles, each 128 + 23 x 16 = 496 cycles
    assert gemm_cycles(128, 4096, 3072, **IS) == 32 * 496 + 270 == 16142
    # up to 128 tokens cost the same; 129 tokens need a second row of activation tiles
    assert gemm_cycles(1, 4096, 3072, **IS) == gemm_cycles(128, 4096, 3072, **IS)
    assert gemm_cycles(129, 4096, 3072, **IS) == 2 * 32 * 496 + 270
    # one streamed block: only the preload slot
    assert gemm_cycles(128, 128, 128, **IS) == 128 + 270
    # the 4-cycle issue minimum with 64 arrays (128/64 = 2 < 4)
    assert gemm_cycles(128, 128, 256, **{**IS, "arrays": 64}) == 128 + 4 + 128 + 128 - 2 + 4
    assert gemm_cycles(0, 4096, 3072, **IS) == 0.0


@pytest.mark.parametrize("dataflow", ["weight-stationary", "input-stationary"])
def test_dataflows_never_beat_the_mac_bound_and_grow_with_each_dimension(dataflow: str) -> None:
    kw = {"rows": 128, "cols": 128, "arrays": 8, "dataflow": dataflow}
    for m, k, n in [(1, 4096, 4096), (64, 4096, 1024), (256, 7168, 5376), (512, 1024, 4096), (200, 300, 500)]:
        cycles = float(gemm_cycles(m, k, n, **kw))
        assert cycles >= m * k * n / (8 * 128 * 128)
        assert 0.0 < float(gemm_utilization(m, k, n, **kw)) <= 1.0
        for dm, dk, dn in [(1, 0, 0), (0, 128, 0), (0, 0, 128)]:
            assert float(gemm_cycles(m + dm, k + dk, n + dn, **kw)) >= cycles


def test_unit_reads_its_dataflow_and_refuses_an_unknown_one(tmp_path) -> None:
    from dataclasses import replace

    unit = replace(SYSTOLIC, dataflow="input-stationary")
    assert float(unit.cycles(128, 4096, 3072)) == 16142
    assert unit.fill_drain_cycles == 270 and SYSTOLIC.fill_drain_cycles == 254
    with pytest.raises(ValueError, match="dataflow"):
        gemm_cycles(1, 1, 1, rows=128, cols=128, arrays=8, dataflow="output-stationary")
    text = (DEVICES_DIR / "npu-only.toml").read_text().replace('cols = 128 ', 'dataflow = "diagonal"\ncols = 128 ', 1)
    (tmp_path / "npu-only.toml").write_text(text)
    with pytest.raises(SpecError, match="dataflow"):
        load_device(tmp_path / "npu-only.toml")


def test_first_pass_overlap_serializes_the_later_passes(tmp_path) -> None:
    """The artifact's GEMMs above 128 tokens: the weight stream overlaps only the first pass."""
    from dataclasses import replace

    from decodex.hw_models.memory import MemorySpec

    memory = MemorySpec("hbm", capacity_bytes=32e9, bandwidth_bytes_per_s=1.024e12)
    overlapped = replace(SYSTOLIC, dataflow="input-stationary")
    serial = replace(overlapped, stream_overlap="first-pass")
    mems = {SYSTOLIC.memory: memory}
    for m in (1, 64, 128):  # one pass: nothing changes
        op = MatmulOp(name="qkv", dtype=DType.FP16, m=m, n=3072, k=4096, weight_dtype=DType.FP16)
        assert serial.op_cost(op, mems).time_s == overlapped.op_cost(op, mems).time_s
    op = MatmulOp(name="qkv", dtype=DType.FP16, m=256, n=3072, k=4096, weight_dtype=DType.FP16)
    stream_s = op.bytes / 1.024e12
    first, whole = 16142, 2 * 32 * 496 + 270  # one pass and two passes (test_input_stationary_cycles_by_hand)
    expected = max(first * 1e-9, stream_s) + (whole - first) * 1e-9
    assert serial.op_cost(op, mems).time_s == pytest.approx(expected, rel=1e-12)
    assert serial.op_cost(op, mems).time_s > overlapped.op_cost(op, mems).time_s  # max(a, b) + c >= max(a + c, b)
    times = [serial.op_cost(MatmulOp(name="mm", dtype=DType.FP16, m=m, n=3072, k=4096, weight_dtype=DType.FP16),
                                mems).time_s for m in range(1, 700, 37)]
    assert all(b >= a for a, b in itertools.pairwise(times))  # more tokens are never faster
    text = (DEVICES_DIR / "npu-only.toml").read_text()
    text = text.replace('dataflow = "input-stationary"', 'dataflow = "weight-stationary"', 1)
    (tmp_path / "npu-only.toml").write_text(text)
    with pytest.raises(SpecError, match="input-stationary"):
        load_device(tmp_path / "npu-only.toml")


def test_catalog_npus_run_the_artifacts_mapping() -> None:
    for name in ("neupims-npu", "neupims-npu-single-rb", "npu-only"):
        unit = load_device(DEVICES_DIR / f"{name}.toml").units["systolic"]
        assert (unit.dataflow, unit.stream_overlap) == ("input-stationary", "first-pass")
        assert unit.attention_issue == ("head-serial" if name == "npu-only" else "batched")


def test_head_serial_attention_by_hand() -> None:
    """Per (request, KV head): (255 + ceil(L/8)) + ceil((L + 127)/128) x (255 + 16) cycles."""
    unit = dataclasses.replace(SYSTOLIC, attention_issue="head-serial")
    op = AttentionOp(name="attention", dtype=DType.FP16, context_lens=np.array([349, 99]), query_lens=np.array([1, 1]),
                     q_heads=8, kv_heads=8, qk_dim=128, v_dim=128, kv_elements_per_token=2048,
                     kv_dtype=DType.FP16)
    per_head = [(255 + 44) + 4 * 271, (255 + 13) + 2 * 271]  # L = 350 and 100 keys
    assert unit.attention_cycles(op) == 8 * sum(per_head)
    # latency-bound: far above the batched GEMM pricing of the same op
    assert unit.attention_cycles(op) > 3 * SYSTOLIC.attention_cycles(op)
