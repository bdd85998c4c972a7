"""Weight GEMVs on the bank-level PIM (hw_models/bank_pim_gemv.py): hand counts, scaling, consistency, physics."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from decodex.core.dtypes import DType
from decodex.core.errors import ArgumentError
from decodex.hw_models.bank_pim import BankPimUnit
from decodex.hw_models.bank_pim_gemv import expert_shapes, gemv_op_cost, gemv_pass, token_flops, token_seconds
from decodex.hw_models.cost import UnsupportedOpError
from decodex.hw_models.memory import MemorySpec
from decodex.hw_models.system import load_system
from decodex.workloads.ops import ElementwiseOp, MatmulOp, MoEExpertsOp

BANK = load_system("duplex-bank-pim").primary_device
UNIT = BANK.units["pim"]
HOST = BANK.units["tensor"]

# a tiny PIM to count by hand (as in test_bank_pim.py): 2 channels x 4 banks, 4 multipliers, 16-element rows
TINY = BankPimUnit(
    name="tiny", role="matrix", memory="hbm", dtypes=(DType.FP16,), channels=2, banks_per_channel=4,
    multipliers_per_bank=4, row_bytes=32, burst_bytes=8, io_bytes=8, io_cycles=1, tck_s=1e-9, cl=3, trcd=2,
    trp=2, tras=5, tccd_s=1, tccd_l=1, tfaw=10, activates_per_row_open=1, gwrite_cycles=10,
    read_energy_j=1e-9, comp_energy_j=4e-9)
TINY_MEMORIES = {"hbm": MemorySpec(name="hbm", capacity_bytes=1e9, bandwidth_bytes_per_s=1e12)}


def weights(m: int, k: int, n: int, count: int = 1) -> MatmulOp:
    return MatmulOp(name="fc", dtype=DType.FP16, m=m, n=n, k=k, count=count, weight_dtype=DType.FP16)


def experts(tokens: list[list[list[int]]], hidden: int = 64, intermediate: int = 96) -> MoEExpertsOp:
    return MoEExpertsOp(name="experts", dtype=DType.FP16, expert_tokens=np.asarray(tokens), hidden=hidden,
                        intermediate=intermediate, gated=True, weight_dtype=DType.FP16)


def test_small_gemv_by_hand_on_a_tiny_pim() -> None:
    # K = 24, N = 10: P_DRAM = 16, P_comp = 4; chunks: 16 + 8 -> 2 GWRITEs of 10 cycles
    # rows per channel = ceil(10 / 2) = 5 -> ceil(5 / 4 banks) = 2 row groups
    # READRES = ceil(4 banks x 2 B / 8 B) x 1 = 1 cycle; tile(n, 1) = max(tRCD 2 + (n - 1) x 1 + 1, 5) + tRP 2
    # full chunk: 4 COMPs -> 6 + 2 = 8; last chunk: 2 COMPs -> 5 + 2 = 7; per row group 15
    # one token = 2 x 10 + 2 x 15 + CL 3 = 53 cycles
    one = gemv_pass(TINY, 24, 10)
    assert (one.chunks, one.rows_per_channel, one.row_groups, one.cycles) == (2, 5, 2, 53)
    # all channels: 2 channels x 2 row groups x 2 chunks = 8 tiles, 8 READRES (one per tile), 4 x (4 + 2) COMPs,
    # 2 channels x 2 GWRITEs
    assert (one.tiles, one.readres, one.comps, one.gwrites) == (8, 8, 24, 4)
    cost = gemv_op_cost(TINY, weights(3, 24, 10), TINY_MEMORIES)
    assert cost.time_s == pytest.approx(3 * 53e-9)  # three tokens: three passes
    assert cost.memory_s == 0 and cost.bound == "compute"  # concurrent memory: only the C/A bus
    # energy per token: 24 COMPs x 4 nJ + 4 GWRITEs x (32 B / 8 B) reads x 1 nJ + 8 READRES x 1 read x 1 nJ = 120 nJ
    assert cost.energy_j == pytest.approx(3 * 120e-9)
    # uneven split: N = 9 -> channels hold 5 and 4 rows (2 and 1 row groups); the slowest is the same
    uneven = gemv_pass(TINY, 24, 9)
    assert uneven.cycles == 53 and uneven.tiles == (2 + 1) * 2


def test_gemv_is_request_works_kq_with_the_whole_input_as_one_head() -> None:
    # E = K, qk_dim = K, seq = output rows of a channel, one query token; v_dim = 0 leaves only
    # the L.V GWRITEs (ceil(seq / P_DRAM)) and a second CL, removed here
    for k, rows in ((24, 5), (16, 8), (40, 3), (8, 1)):
        one = gemv_pass(TINY, k, rows * TINY.channels)
        work = TINY.request_work(np.array([rows - 1]), 1, q_heads=1, kv_heads=1, qk_dim=k, v_dim=0)
        p_row = TINY.elements_per_row(DType.FP16)
        assert one.cycles == work.cycles[0] - np.ceil(rows / p_row) * TINY.gwrite_cycles - TINY.cl
        assert one.tiles == work.tiles[0] * TINY.channels
        assert one.comps == work.comps[0] * TINY.channels
        assert one.readres == work.readres[0] * TINY.channels


@pytest.mark.parametrize("m", [1, 2, 7, 64])
def test_m_tokens_cost_m_passes_on_duplex_bank_pim(m: int) -> None:
    one = UNIT.op_cost(weights(1, 8192, 8192), BANK.memories)
    many = UNIT.op_cost(weights(m, 8192, 8192), BANK.memories)
    assert many.time_s == pytest.approx(m * one.time_s)
    assert many.energy_j == pytest.approx(m * one.energy_j)
    assert UNIT.op_cost(weights(m, 8192, 8192, count=3), BANK.memories).time_s == pytest.approx(3 * many.time_s)


def test_duplex_bank_pim_gemv_by_hand() -> None:
    # 8192 x 8192 FP16 over 320 channels of 16 banks: ceil(8192 / 320) = 26 rows -> 2 row groups;
    # 16 chunks of 512 (32 COMPs each); tile(32, 1) = max(tRCD 19 + 31 x tCCD_L 4 + READRES 2 + tRTP 6, 45)
    # + tRP 19 = 170; one token = 16 x 192 + 2 x 16 x 170 + 19 = 8531 cycles x 0.769 ns = 6.56 us
    one = gemv_pass(UNIT, 8192, 8192)
    assert (one.rows_per_channel, one.row_groups, one.chunks) == (26, 2, 16)
    assert float(UNIT.tile_cycles(32, 1)) == 170
    assert one.cycles == 16 * 192 + 2 * 16 * 170 + 19
    assert token_seconds(UNIT, ((8192, 8192),)) == pytest.approx(8531 * 0.769e-9)


def test_bank_pim_beats_the_xpu_at_opb_1_and_loses_at_high_opb() -> None:
    def speedup(m: int) -> float:
        op = weights(m, 8192, 8192)
        return HOST.op_cost(op, BANK.memories).time_s / UNIT.op_cost(op, BANK.memories).time_s

    assert speedup(1) > 4.0  # a weight GEMV at Op/B ~1: every bank reads its rows at once
    assert speedup(64) < 0.25  # Op/B ~64: 64 passes over the weights vs one read by the xPU
    speeds = [speedup(m) for m in (1, 2, 4, 8, 16, 32, 64)]
    assert all(b < a for a, b in itertools.pairwise(speeds))  # the PIM's edge falls with every doubling


def _time(k: int, n: int, **changes: int) -> float:
    unit = dataclasses.replace(UNIT, **changes)
    return unit.op_cost(weights(4, k, n), BANK.memories).time_s


@pytest.mark.parametrize(("k", "n"), [(8192, 8192), (4096, 14336), (3584, 4096), (128, 100)])
def test_a_faster_tccd_or_more_channels_is_never_slower(k: int, n: int) -> None:
    tccd = [_time(k, n, tccd_l=t) for t in (8, 6, 4, 2)]
    assert all(b <= a for a, b in itertools.pairwise(tccd))
    channels = [_time(k, n, channels=c) for c in (80, 160, 320, 640)]
    assert all(b <= a for a, b in itertools.pairwise(channels))


@pytest.mark.parametrize(("k", "n"), [(8192, 8192), (4096, 14336)])
def test_more_banks_is_never_slower_while_the_rows_fill_them(k: int, n: int) -> None:
    # at least 26 output rows per channel: every bank count up to 32 cuts the row groups per chunk
    banks = [_time(k, n, banks_per_channel=b) for b in (4, 8, 16, 32)]
    assert all(b < a for a, b in itertools.pairwise(banks))


def test_more_banks_only_lengthen_the_readres_when_a_channel_has_one_row_group() -> None:
    # N = 100 over 320 channels: one output row per channel, one row group for any bank count, so
    # doubling the banks changes only READRES (ceil(B x 2 B / 32 B) x 2 cycles: 2 at 16 banks, 4 at 32)
    few, many = (dataclasses.replace(UNIT, banks_per_channel=b) for b in (16, 32))
    one_few, one_many = gemv_pass(few, 128, 100), gemv_pass(many, 128, 100)
    assert one_few.row_groups == one_many.row_groups == 1
    assert one_many.cycles - one_few.cycles == one_few.chunks * (many.readres_cycles - few.readres_cycles) == 2


def test_experts_cost_tokens_not_active_experts() -> None:
    # 2 draws x 2 ranks x 4 experts; rank tokens: draw 0 -> 6, 3; draw 1 -> 4, 8
    op = experts([[[3, 2, 1, 0], [0, 0, 3, 0]], [[1, 1, 1, 1], [8, 0, 0, 0]]])
    per_token = token_seconds(UNIT, expert_shapes(op))
    assert expert_shapes(op) == ((64, 192), (96, 64))  # gate + up fused (2 x 96 outputs), down
    cost = UNIT.op_cost(op, BANK.memories)
    assert cost.time_s == pytest.approx((6 + 8) / 2 * per_token)  # slowest rank per draw, mean over draws
    # the same tokens on one expert or spread over four cost the same: no weights move
    one = experts([[[8, 0, 0, 0]]])
    four = experts([[[2, 2, 2, 2]]])
    assert UNIT.op_cost(one, BANK.memories).time_s == pytest.approx(UNIT.op_cost(four, BANK.memories).time_s)


def test_grouped_gemm_times_agrees_with_op_cost() -> None:
    rng = np.random.default_rng(7)
    tokens = rng.integers(0, 6, size=(3, 2, 8))
    op = experts(tokens.tolist(), hidden=4096, intermediate=3584)
    memory = BANK.memories[UNIT.memory]
    active = (tokens > 0).sum(axis=2)
    time, compute, mem = UNIT.grouped_gemm_times(op.rank_flops, active, op.rank_weight_bytes + op.rank_activation_bytes,
                                                 op.dtype, memory, shapes=expert_shapes(op))
    assert float(time.max(axis=1).mean()) == pytest.approx(UNIT.op_cost(op, BANK.memories).time_s)
    assert np.allclose(time, compute) and not mem.any()
    assert np.allclose(op.rank_flops / token_flops(expert_shapes(op)), tokens.sum(axis=2))
    with pytest.raises(ArgumentError, match="shapes"):
        UNIT.grouped_gemm_times(op.rank_flops, active, op.rank_activation_bytes, op.dtype, memory)


def test_exclusive_memory_is_held_for_the_whole_gemv() -> None:
    exclusive = {"hbm": dataclasses.replace(TINY_MEMORIES["hbm"], access="exclusive")}
    cost = gemv_op_cost(TINY, weights(2, 24, 10), exclusive)
    assert cost.compute_s > 0 and cost.memory_s == pytest.approx(cost.compute_s)


def test_refuses_activation_matmuls_other_ops_and_dtypes() -> None:
    with pytest.raises(UnsupportedOpError, match="weight"):
        UNIT.op_cost(MatmulOp(name="qk", dtype=DType.FP16, m=4, n=64, k=64), BANK.memories)
    with pytest.raises(UnsupportedOpError):
        UNIT.op_cost(ElementwiseOp(name="add", dtype=DType.FP16, elements=64, flops_per_element=1.0),
                     BANK.memories)
    with pytest.raises(UnsupportedOpError):
        UNIT.op_cost(MatmulOp(name="fc", dtype=DType.FP8, m=1, n=64, k=64, weight_dtype=DType.FP8), BANK.memories)
    with pytest.raises(ArgumentError):
        gemv_pass(TINY, 0, 4)


def test_refresh_stretches_a_gemv_as_it_stretches_attention() -> None:
    refreshed = dataclasses.replace(UNIT, trefi=3900, trfc=260)
    plain, slow = gemv_pass(UNIT, 8192, 8192), gemv_pass(refreshed, 8192, 8192)
    factor = float(refreshed.refresh_factor(32, 1.0))
    assert factor > 1.0
    assert slow.cycles - UNIT.cl == pytest.approx(factor * (plain.cycles - UNIT.cl))
