"""Bank-level PIM unit: hand-computed request cycles, channel assignment, batch time, sharing, specs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

# the imports register the "bank_pim" and "systolic" unit models until hw_models.device imports them
import decodex.hw_models.bank_pim
import decodex.hw_models.systolic  # noqa: F401
from decodex.core.dtypes import DType
from decodex.core.errors import ArgumentError
from decodex.hw_models.bank_pim import BankPimUnit, assign_channels, channel_loads
from decodex.hw_models.cost import UnsupportedOpError
from decodex.hw_models.system import load_system
from decodex.workloads.ops import AttentionOp, MatmulOp

NEUPIMS = load_system("neupims").primary_device
NAIVE = load_system("npu-pim-naive").primary_device
PIM = NEUPIMS.units["pim"]

# a tiny PIM to count by hand: 2 channels x 4 banks, 4 multipliers, 16-element rows
TINY = BankPimUnit(
    name="tiny", role="matrix", memory="hbm", dtypes=(DType.FP16,), channels=2, banks_per_channel=4,
    multipliers_per_bank=4, row_bytes=32, burst_bytes=8, io_bytes=8, io_cycles=1, tck_s=1e-9, cl=3, trcd=2,
    trp=2, tras=5, tccd_s=1, tccd_l=1, tfaw=10, activates_per_row_open=1, gwrite_cycles=10,
    read_energy_j=1e-9, comp_energy_j=4e-9)


def attention(context: list[int], *, q_heads: int = 32, kv_heads: int = 32, dim: int = 128) -> AttentionOp:
    lens = np.asarray(context)
    return AttentionOp(name="attn", dtype=DType.FP16, context_lens=lens, query_lens=np.ones_like(lens),
                       q_heads=q_heads, kv_heads=kv_heads, qk_dim=dim, v_dim=dim,
                       kv_elements_per_token=2 * kv_heads * dim, kv_dtype=DType.FP16)


def test_one_request_by_hand_on_a_tiny_pim() -> None:
    # GQA 2 query heads / 1 KV head of 8, 7 cached + 1 new token: seq = 8; P_DRAM = 16, P_comp = 4,
    # READRES = ceil(4 banks x 2 B / 8 B) x 1 = 1 cycle; separate commands, one rank, no header, tRTP 0,
    # one precharge: tile(n, h) = max(tRCD 2 + (n - 1) x 1 + h x 1, tRAS 5) + max(1, tRP 2)
    # K·q: E = 8 -> 1 chunk of 8: 2 COMPs, 1 READRES, tile = max(4, 5) + 2 = 7; seq / 4 banks = 2 tiles;
    #      pass = 1 GWRITE x 10 + 2 x 7 = 24; 2 passes (one per query head of the group) = 48
    # L·V: per query head 1 seq chunk of 8 -> 1 GWRITE; ceil(8 / 4 banks) = 2 tiles of 2 COMPs = 7 each
    #      = 10 + 14 = 24; 2 heads = 48
    # + 2 x CL = 6; + new K/V 2 x 8 x 2 B = 32 B = 4 writes x 1 cycle -> 48 + 48 + 6 + 4 = 106
    work = TINY.request_work(np.array([7]), 1, q_heads=2, kv_heads=1, qk_dim=8, v_dim=8, kv_bytes_per_token=32)
    assert work.cycles.tolist() == [106]
    assert work.comps.tolist() == [2 * 2 * 2 + 2 * 2 * 2]
    assert work.gwrites.tolist() == [2 + 2]
    assert work.tiles.tolist() == [4 + 4]
    # instructions (separate, no header): GWRITEs 4 + COMPs 16 + READRES 8
    assert work.instructions.tolist() == [4 + 16 + 8]


def test_tiles_take_the_cycles_the_artifact_measured() -> None:
    # NeuPIMs (fused COMPS_READRES): P_HEADER 1 + 8 G_ACTs (4 per rank, one per tFAW 30, ranks 1 cycle
    # apart: 91) + tRCD 14 + 3 x 2 x (8 + 1) + tRTP 5 + 32 per-bank precharges = 197 (logit tile: 32 COMPs,
    # 4 heads); one head: 1 + 91 + 14 + 5 + 32 = 143 whatever its COMPs (the artifact's command trace)
    assert PIM.activation_spread_cycles == 91
    assert float(PIM.tile_cycles(32, 4)) == 197
    assert [float(PIM.tile_cycles(c, 1)) for c in (4, 16, 32)] == [143, 143, 143]
    # naive (Newton, separate COMP and READRES commands 2 cycles apart): 1 + 91 + 14 + (32 + 4 - 1) x 2
    # + 5 + 32 = 213; one head of c COMPs: 143 + 2c
    naive = NAIVE.units["pim"]
    assert float(naive.tile_cycles(32, 4)) == 213
    assert [float(naive.tile_cycles(c, 1)) for c in (3, 16, 32)] == [149, 175, 207]


def test_refresh_stalls_by_hand() -> None:
    # logit tile: guard = 32 precharges x tRTP 5 + 91 + 14 + 54 = 319; stall per refresh = 319 - 197 / 2
    # + 16 precharges of the rank + tRP 14 + tRFC 260 = 510.5; 2 ranks per tREFI 3900
    stall = 319 - 197 / 2 + 16 + 14 + 260
    assert float(PIM.refresh_factor(32, 4)) == pytest.approx(1 / (1 - 2 * stall / 3900))
    no_refresh = dataclasses.replace(PIM, trefi=0)
    assert float(no_refresh.refresh_factor(32, 4)) == 1.0
    ctx = np.array([300, 900])
    kwargs = {"q_heads": 8, "kv_heads": 8, "qk_dim": 128, "v_dim": 128}
    assert np.all(PIM.request_cycles(ctx, **kwargs) > no_refresh.request_cycles(ctx, **kwargs))
    # a longer refresh or more frequent refreshes never speed the PIM up
    slower = dataclasses.replace(PIM, trfc=400)
    assert np.all(slower.request_cycles(ctx, **kwargs) > PIM.request_cycles(ctx, **kwargs))


def test_one_request_by_hand_on_neupims() -> None:
    # GPT-3 7B at TP1: 32 heads of 128, 1023 cached + 1 new = 1024 keys; P_DRAM = 512, P_comp = 16
    # K·q: E = 4096 = 8 chunks of 512 (32 COMPs, 4 heads -> 4 fused COMPS_READRES): tile 197;
    #      8 GWRITEs x 96 + 1024/32 = 32 token groups x 8 chunks x 197, times the logit refresh factor
    # L·V: per head 2 chunks of 512 -> 2 GWRITEs + 128/32 = 4 tiles x 2 chunks x 143; x 32 heads, times
    #      the one-head refresh factor (guard 160 + 91 + 14 = 265)
    # + 2 CL = 28; + new K/V 16384 B / 64 B = 256 writes x 2 = 512
    kq_factor = 1 / (1 - 2 * (319 - 197 / 2 + 16 + 14 + 260) / 3900)
    lv_factor = 1 / (1 - 2 * (265 - 143 / 2 + 16 + 14 + 260) / 3900)
    expected = (kq_factor * (8 * 96 + 32 * 8 * 197) + lv_factor * 32 * (2 * 96 + 4 * 2 * 143) + 28 + 512)
    cycles = PIM.request_cycles(np.array([1023]), 1, q_heads=32, kv_heads=32, qk_dim=128, v_dim=128,
                                kv_bytes_per_token=16384)
    assert cycles[0] == pytest.approx(expected, rel=1e-12)
    # with E a multiple of P_DRAM, the counts are the paper's (seq/B_ch)(E/P_DRAM) and (E/N_head/B_ch)(seq/P_DRAM)N_head
    work = PIM.op_work(attention([1023]))
    assert work.tiles.tolist() == [32 * 8 + 4 * 2 * 32]
    assert work.gwrites.tolist() == [8 + 2 * 32]
    # fused: a header per tile, a GWRITE per chunk, one COMPS_READRES per READRES
    assert work.instructions.tolist() == [work.tiles[0] + work.gwrites[0] + work.readres[0]]


def test_batch_time_is_the_slowest_channel() -> None:
    op = attention([100, 2000, 50, 700, 3000])
    per_request = PIM.op_work(op).cycles * PIM.tck_s
    channels = np.array([0, 1, 0, 2, 2])
    time_s, per_channel = PIM.attention_time(op, channels)
    assert per_channel[0] == pytest.approx(per_request[0] + per_request[2])
    assert per_channel[2] == pytest.approx(per_request[3] + per_request[4])
    assert per_channel[3:].sum() == 0
    assert time_s == pytest.approx(per_channel.max()) == pytest.approx(per_request[3] + per_request[4])
    # op_cost without an assignment is round-robin: 5 requests on 32 channels -> the longest request
    cost = PIM.op_cost(op, NEUPIMS.memories)
    assert cost.compute_s == pytest.approx(per_request.max())
    with pytest.raises(ArgumentError):
        PIM.attention_time(op, np.array([0, 1, 2]))


def test_round_robin_and_greedy_assignments() -> None:
    assert assign_channels(np.array([5, 4, 3, 3, 3]), 2, "round_robin").tolist() == [0, 1, 0, 1, 0]
    lengths = np.array([10, 1, 1, 1, 9, 8])
    greedy = assign_channels(lengths, 2, "greedy")
    # LPT: 10 -> c0, 9 -> c1, 8 -> c1, then the 1s -> c0: loads 13 / 17; round-robin: 20 / 10
    assert channel_loads(lengths, greedy, 2).tolist() == [13, 17]
    assert channel_loads(lengths, assign_channels(lengths, 2, "round_robin"), 2).tolist() == [20, 10]
    # LPT loses to this round-robin on [5, 4, 3, 3, 3] x 2 channels (10 > 9): greedy falls back
    odd = np.array([3, 5, 3, 4, 3])
    assert channel_loads(odd, assign_channels(odd, 2, "greedy"), 2).max() == 9
    with pytest.raises(ArgumentError):
        assign_channels(lengths, 2, "random")


@settings(max_examples=100, deadline=None)
@given(lengths=st.lists(st.integers(0, 8192), min_size=1, max_size=300), channels=st.integers(1, 40))
def test_greedy_never_worse_than_round_robin(lengths: list[int], channels: int) -> None:
    loads = np.asarray(lengths, dtype=np.float64)
    greedy = assign_channels(loads, channels, "greedy")
    robin = assign_channels(loads, channels, "round_robin")
    assert sorted(np.bincount(greedy, minlength=channels).nonzero()[0]) == sorted(set(greedy.tolist()))
    assert greedy.min() >= 0 and greedy.max() < channels and greedy.shape == loads.shape
    assert channel_loads(loads, greedy, channels).max() <= channel_loads(loads, robin, channels).max()


@settings(max_examples=40, deadline=None)
@given(lengths=st.lists(st.integers(0, 4096), min_size=1, max_size=64), multipliers=st.integers(1, 32),
       factor=st.sampled_from([2, 4]))
def test_more_multipliers_or_channels_never_slower(lengths: list[int], multipliers: int, factor: int) -> None:
    op = attention(lengths)
    base = dataclasses.replace(PIM, multipliers_per_bank=multipliers)
    more = dataclasses.replace(PIM, multipliers_per_bank=multipliers + 1)
    assert (more.op_work(op).cycles <= base.op_work(op).cycles).all()
    # round-robin on k x channels puts on each channel a subset of what it had
    wide = dataclasses.replace(base, channels=base.channels * factor)
    assert wide.op_cost(op, NEUPIMS.memories).time_s <= base.op_cost(op, NEUPIMS.memories).time_s
    loads = base.op_work(op).cycles
    greedy = assign_channels(loads, base.channels, "greedy")
    assert base.attention_time(op, greedy)[0] <= base.op_cost(op, NEUPIMS.memories).compute_s * (1 + 1e-12)


def test_cycles_grow_with_context_and_energy_is_positive() -> None:
    contexts = np.arange(0, 4096, 97)
    cycles = PIM.request_cycles(contexts, 1, q_heads=32, kv_heads=32, qk_dim=128, v_dim=128)
    assert (np.diff(cycles) >= 0).all()
    cost = PIM.op_cost(attention([512, 1024]), NEUPIMS.memories)
    assert cost.energy_j > 0
    work = PIM.op_work(attention([512, 1024]))
    assert cost.energy_j == pytest.approx(work.comps.sum() * 8.13e-9 + work.gwrites.sum() * 16 * 2.033e-9
                                          + (work.readres.sum() + work.io_writes.sum()) * 2.033e-9)


def test_dual_row_buffers_share_only_the_command_bus() -> None:
    op = attention([1024] * 64)
    dual = NEUPIMS.units["pim"].op_cost(op, NEUPIMS.memories)
    single = NAIVE.units["pim"].op_cost(op, NAIVE.memories)
    # dual: concurrent, the PIM holds only its command-bus share (moved_bytes), not the whole memory
    assert dual.memory_s == pytest.approx(dual.compute_s)
    assert PIM.moved_bytes(op) < 0.5 * dual.compute_s * PIM.bus_bandwidth_bytes_per_s
    assert single.memory_s == pytest.approx(single.compute_s)  # holds the single row buffer throughout
    assert NEUPIMS.main_memory.access == "concurrent" and NAIVE.main_memory.access == "exclusive"
    # the naive baseline's separate COMP commands issued one instruction per cycle are slower
    assert single.time_s > dual.time_s


def test_issue_rate_bounds_when_each_channel_can_start() -> None:
    from decodex.hw_models.bank_pim import channel_finish_cycles

    cycles = np.array([100.0, 50.0, 80.0, 10.0])
    instructions = np.array([30.0, 20.0, 40.0, 10.0])
    channel = np.array([1, 0, 1, 0])
    # unbounded issue: each channel's busy time
    assert channel_finish_cycles(cycles, instructions, channel, 3).tolist() == [60.0, 180.0, 0.0]
    # one instruction per cycle, channel by channel in request order: channel 0's requests (1, 3) are
    # issued over cycles 0-20 and 20-30, channel 1's (0, 2) over 30-60 and 60-100
    # channel 0: max(0 + 50 + 10, 20 + 10, issue end 30) = 60; channel 1: max(30 + 180, 60 + 80, 100) = 210
    assert channel_finish_cycles(cycles, instructions, channel, 3, 1.0).tolist() == [60.0, 210.0, 0.0]
    # issue-bound: tiny work finishes when its last instruction is issued
    assert channel_finish_cycles(np.array([1.0, 1.0]), np.array([50.0, 50.0]), np.array([0, 1]), 2, 1.0).tolist() \
        == [50.0, 100.0]
    # a faster issue is never slower
    for rate in (0.5, 1.0, 4.0):
        slow = channel_finish_cycles(cycles, instructions, channel, 3, rate)
        fast = channel_finish_cycles(cycles, instructions, channel, 3, 2 * rate)
        assert np.all(fast <= slow)


def test_pim_refuses_weightless_matmuls_and_other_dtypes() -> None:
    # a matmul without resident weights (activation x activation) has nothing in the banks to multiply
    with pytest.raises(UnsupportedOpError):
        PIM.op_cost(MatmulOp(name="mm", dtype=DType.FP16, m=1, n=8, k=8), NEUPIMS.memories)
    bf16 = AttentionOp(name="attn", dtype=DType.BF16, context_lens=np.array([8]), query_lens=np.array([1]),
                       q_heads=2, kv_heads=2, qk_dim=8, v_dim=8, kv_elements_per_token=32, kv_dtype=DType.BF16)
    with pytest.raises(UnsupportedOpError):
        PIM.op_cost(bf16, NEUPIMS.memories)


def test_neupims_specs_load_with_seed_numbers() -> None:
    assert isinstance(PIM, BankPimUnit)
    assert (PIM.channels, PIM.banks_per_channel, PIM.multipliers_per_bank) == (32, 32, 16)
    assert PIM.gwrite_cycles == (PIM.tccd_s + PIM.tccd_l) * 32 == 96
    assert PIM.comp_energy_j == pytest.approx(4 * PIM.read_energy_j, rel=1e-3)
    assert PIM.peak_flops(DType.FP16) == pytest.approx(32 * 32 * 16 * 2 / 2e-9)
    assert list(NEUPIMS.units) == ["systolic", "vector", "pim"] and list(NAIVE.units) == list(NEUPIMS.units)
    for name, policy in (("neupims", "greedy"), ("npu-pim-naive", "round_robin")):
        system = load_system(name)
        assert system.default_mapper == "neupims"
        assert system.mapper_options["channel_policy"] == policy


def test_a_shared_command_bus_takes_the_pims_commands_from_the_host() -> None:
    op = attention([300, 900, 50, 2000])
    work = PIM.op_work(op)
    # per tile: P_HEADER + 8 G_ACTs + 32 precharges; one COMPS_READRES and a 2-cycle result per READRES;
    # a GWRITE moves a 1 KB row = 16 x 2 cycles
    lost = work.tiles.sum() * (1 + 8 + 32) + work.readres.sum() * (1 + 2) + work.gwrites.sum() * 16 * 2
    assert PIM.bus_share(work) == pytest.approx(lost / work.cycles.sum())
    assert 0.1 < PIM.bus_share(work) < 0.3  # the artifact's NPU keeps ~75 % of a channel beside its PIM
    cost = PIM.op_cost(op, NEUPIMS.memories)
    assert cost.memory_s == cost.compute_s  # the share is held for the whole op
    time_s, _ = PIM.attention_time(op, np.arange(4) % PIM.channels)
    assert PIM.moved_bytes(op) == pytest.approx(PIM.bus_share(work) * time_s * 32 * 64 / 2e-9)
    # without the shared bus (a separate PIM command path) the PIM takes nothing from the host
    separate = dataclasses.replace(PIM, command_bus_shared=False)
    assert separate.op_cost(op, NEUPIMS.memories).memory_s == 0
    assert separate.moved_bytes(op) == op.bytes
