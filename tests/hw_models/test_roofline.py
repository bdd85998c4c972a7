"""Roofline unit and collectives: bounds, monotonicity and hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from decodex.core.dtypes import DType
from decodex.hw_models.collectives import collective_cost
from decodex.hw_models.device import device_from_dict
from decodex.hw_models.memory import LinkSpec
from decodex.workloads.ops import ElementwiseOp, MatmulOp, MoEExpertsOp
from decodex.workloads.precision import Sparsity
from tests.conftest import ideal_device

IDEAL = device_from_dict(ideal_device(), "<ideal>")


def test_hand_computed_matmul() -> None:
    op = MatmulOp(name="mm", dtype=DType.BF16, m=1, n=4096, k=4096, weight_dtype=DType.BF16)
    cost = IDEAL.units["tensor"].op_cost(op, IDEAL.memories)
    # bytes: weights 4096*4096*2 + activations (4096 + 4096)*2 over 1 TB/s; FLOP 2*4096^2 over 100 TFLOP/s
    assert cost.memory_s == pytest.approx((4096 * 4096 * 2 + 8192 * 2) / 1e12)
    assert cost.compute_s == pytest.approx(2 * 4096 * 4096 / 100e12)
    assert cost.time_s == cost.memory_s and cost.bound == "memory"
    big = MatmulOp(name="mm", dtype=DType.BF16, m=8192, n=8192, k=8192, weight_dtype=DType.BF16)
    assert IDEAL.units["tensor"].op_cost(big, IDEAL.memories).bound == "compute"


def test_sparse_pattern_runs_reduced_work_only_where_supported() -> None:
    op = MatmulOp(name="mm", dtype=DType.BF16, m=8192, n=8192, k=8192, weight_dtype=DType.BF16,
                  weight_sparsity=Sparsity(2, 4))
    dense = MatmulOp(name="mm", dtype=DType.BF16, m=8192, n=8192, k=8192, weight_dtype=DType.BF16)
    tensor = IDEAL.units["tensor"]
    assert tensor.op_cost(op, IDEAL.memories).compute_s == pytest.approx(
        tensor.op_cost(dense, IDEAL.memories).compute_s / 2)
    no_sparse = device_from_dict(ideal_device(**{"units.tensor.sparsity_patterns": []}), "<x>")
    assert no_sparse.units["tensor"].op_cost(op, no_sparse.memories).compute_s == pytest.approx(
        tensor.op_cost(dense, IDEAL.memories).compute_s)


@settings(max_examples=60, deadline=None)
@given(m=st.integers(1, 4096), n=st.integers(1, 16384), k=st.integers(1, 16384),
       compute_eff=st.floats(0.05, 1.0), memory_eff=st.floats(0.05, 1.0), overhead=st.floats(0, 1e-5))
def test_time_never_beats_the_roofline(m: int, n: int, k: int, compute_eff: float, memory_eff: float,
                                       overhead: float) -> None:
    device = device_from_dict(ideal_device(**{"units.tensor.efficiency": compute_eff,
                                              "memories.hbm.efficiency": memory_eff,
                                              "units.tensor.op_overhead_s": overhead}), "<x>")
    op = MatmulOp(name="mm", dtype=DType.BF16, m=m, n=n, k=k, weight_dtype=DType.BF16)
    cost = device.units["tensor"].op_cost(op, device.memories)
    assert cost.time_s >= max(op.flops / 100e12, op.bytes / 1e12) * (1 - 1e-12)
    assert cost.time_s >= overhead


@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 4096), n=st.integers(1, 8192), k=st.integers(1, 8192), factor=st.floats(1.0, 10.0))
def test_more_bandwidth_or_compute_is_never_slower(m: int, n: int, k: int, factor: float) -> None:
    op = MatmulOp(name="mm", dtype=DType.BF16, m=m, n=n, k=k, weight_dtype=DType.BF16)
    base = IDEAL.units["tensor"].op_cost(op, IDEAL.memories).time_s
    faster_mem = device_from_dict(ideal_device(**{"memories.hbm.bandwidth_bytes_per_s": 1e12 * factor}), "<x>")
    faster_alu = device_from_dict(ideal_device(**{"units.tensor.peak_flops.bf16": 100e12 * factor}), "<x>")
    assert faster_mem.units["tensor"].op_cost(op, faster_mem.memories).time_s <= base
    assert faster_alu.units["tensor"].op_cost(op, faster_alu.memories).time_s <= base


def test_moe_waits_for_the_busiest_rank() -> None:
    tokens = np.array([[[4, 0], [0, 0]], [[1, 1], [1, 1]]])  # two draws, two ranks, two local experts
    op = MoEExpertsOp(name="experts", dtype=DType.BF16, expert_tokens=tokens, hidden=1024, intermediate=1024,
                      gated=True, weight_dtype=DType.BF16)
    cost = IDEAL.units["tensor"].op_cost(op, IDEAL.memories)
    expert_bytes = 3 * 1024 * 1024 * 2
    act = lambda t: t * (2 * 1024 + 2 * 1024 + 1024) * 2  # noqa: E731
    draw0 = (expert_bytes + act(4)) / 1e12  # rank 0 holds the only active expert
    draw1 = (2 * expert_bytes + act(2)) / 1e12  # both experts active on each rank
    assert cost.time_s == pytest.approx((draw0 + draw1) / 2)


def test_elementwise_runs_on_vector_peak() -> None:
    op = ElementwiseOp(name="norm", dtype=DType.BF16, elements=10**9, flops_per_element=100.0, tensors_read=0,
                       tensors_written=0)
    cost = IDEAL.units["simt"].op_cost(op, IDEAL.memories)
    assert cost.compute_s == pytest.approx(1e11 / 20e12) and cost.bound == "compute"


def test_ring_collectives_by_hand() -> None:
    link = LinkSpec("nvlink", 100e9, 1e-6, efficiency=0.5)
    size = 1e8
    ar = collective_cost("all_reduce", size, 8, link)
    assert ar.time_s == pytest.approx(2 * 7 / 8 * size / 50e9 + 14 * 1e-6)
    ag = collective_cost("all_gather", size, 4, link)
    assert ag.time_s == pytest.approx(3 / 4 * size / 50e9 + 3e-6)
    assert collective_cost("send_recv", size, 2, link).time_s == pytest.approx(size / 50e9 + 1e-6)
    assert collective_cost("all_reduce", size, 1, link).time_s == 0.0


def test_op_time_by_unit_name() -> None:
    from decodex.core.errors import ArgumentError
    from decodex.hw_models import op_time

    op = MatmulOp(name="mm", dtype=DType.BF16, m=1, n=1024, k=1024, weight_dtype=DType.BF16)
    assert op_time(op, "tensor", IDEAL) == IDEAL.units["tensor"].op_cost(op, IDEAL.memories)
    with pytest.raises(ArgumentError, match="no unit 'npu'"):
        op_time(op, "npu", IDEAL)


@settings(max_examples=60, deadline=None)
@given(flops=st.floats(0, 1e15), rows=st.integers(1, 4096), nbytes=st.floats(0, 1e12),
       factor=st.floats(0.1, 1.0), exponent=st.sampled_from([0.0, 1.0, 3.0]))
def test_the_pricer_is_roofline_priced(flops: float, rows: int, nbytes: float, factor: float, exponent: float) -> None:
    """``roofline_pricer`` (what the scalar fast path keeps per op) gives what ``roofline_priced``
    gives, to the bit, with curves, tiles, imperfect overlap and an overhead."""
    spec = ideal_device(**{"units.tensor.tile_m": 64, "units.tensor.overlap_exponent": exponent,
                           "units.tensor.op_overhead_s": 2e-6,
                           "units.tensor.efficiency": {"sizes": [1e6, 1e9, 1e12], "values": [0.2, 0.6, 0.9]},
                           "memories.hbm.efficiency": {"sizes": [1e3, 1e9], "values": [0.3, 0.9]}})
    device = device_from_dict(spec, "<curves>")
    unit, memory = device.units["tensor"], device.memories["hbm"]
    work = unit.tiled_work(flops, rows)
    priced = unit.roofline_priced(flops, work, nbytes, DType.BF16, memory, factor)
    assert unit.roofline_pricer(DType.BF16, memory, factor)(flops, work, nbytes) == priced
    assert priced.time_s >= max(priced.compute_s, priced.memory_s)


def test_the_pricer_raises_for_a_missing_datapath_only_when_there_is_work() -> None:
    """A dtype the unit lacks: an op without FLOP (a copy) is still priced by its bytes, as before."""
    from decodex.hw_models.cost import UnsupportedOpError

    unit, memory = IDEAL.units["tensor"], IDEAL.memories["hbm"]
    missing = next(d for d in DType if d not in unit.peak_flops_by_dtype)
    price = unit.roofline_pricer(missing, memory, 1.0)
    assert price(0.0, 0.0, 1e6).memory_s == pytest.approx(1e6 / 1e12)
    with pytest.raises(UnsupportedOpError, match=r"no .* datapath"):
        price(1e9, 1e9, 1e6)
