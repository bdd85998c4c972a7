"""The FPGA DSP engine (fpga_dsp) against hand-computed cycle counts, and its spec checks."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from decodex.core.dtypes import DType
from decodex.core.errors import SpecError
from decodex.hw_models.device import load_device
from decodex.hw_models.fpga import FpgaUnit
from decodex.hw_models.system import DEVICES_DIR
from decodex.workloads.ops import AttentionOp, ElementwiseOp, MatmulOp
from decodex.workloads.precision import Sparsity

U280 = load_device(DEVICES_DIR / "alveo-u280.toml")
MPE = U280.units["mpe"]
HBM = U280.memories["hbm"]


def _fc(m: int, sparsity: Sparsity | None = None, bits: float | None = None) -> MatmulOp:
    return MatmulOp(name="fc", dtype=DType.INT8, m=m, n=4096, k=4096, weight_dtype=DType.INT4,
                    weight_sparsity=sparsity, weight_bits=bits)


def test_decode_matvec_by_hand() -> None:
    assert isinstance(MPE, FpgaUnit)
    op = _fc(1)
    cost = MPE.op_cost(op, U280.memories)
    # MV mode: 4096 x 4096 MACs / (1024 MAC/cycle x 3 SLRs) at 225 MHz
    assert cost.compute_s == pytest.approx(4096 * 4096 / (1024 * 3) / 225e6)
    # weights (int4: 8 MiB) stream from 24 of 32 pseudo-channels at 70 % of 460 GB/s
    assert cost.memory_s == pytest.approx(4096 * 4096 * 0.5 / (460e9 * 0.7 * 24 / 32))
    assert cost.time_s == pytest.approx(max(cost.compute_s, cost.memory_s))
    assert cost.bound == "memory"


def test_prefill_uses_matrix_matrix_mode() -> None:
    op = _fc(512)
    cycles = MPE.matrix_cycles(op)
    assert cycles == pytest.approx(512 * 4096 * 4096 / (4096 * 3))  # MM: 4x the MV rate, 16-row tiles full
    assert MPE.matrix_cycles(_fc(2)) == pytest.approx(2 * 4096 * 4096 / (1024 * 3))  # MV still faster at 2 rows
    assert MPE.matrix_cycles(_fc(9)) == pytest.approx(16 * 4096 * 4096 / (4096 * 3))  # padded to 16 rows in MM


def test_sparsity_never_slows_and_cuts_the_macs() -> None:
    dense = MPE.op_cost(_fc(512), U280.memories)
    previous = dense.time_s
    for n in (8, 4, 2):
        sparse = MPE.op_cost(_fc(512, Sparsity(n, 16)), U280.memories)
        assert sparse.compute_s == pytest.approx(dense.compute_s * n / 16)
        assert sparse.time_s <= previous
        previous = sparse.time_s
    unsupported = MPE.op_cost(_fc(512, Sparsity(2, 4)), U280.memories)  # not an N:16 chain pattern: runs dense
    assert unsupported.compute_s == pytest.approx(dense.compute_s)


def test_on_chip_activations_and_access_pattern() -> None:
    op = MatmulOp(name="fc", dtype=DType.INT8, m=1, n=4096, k=4096, weight_dtype=DType.INT8)
    on = MPE.op_cost(op, U280.memories)
    off_unit = dataclasses.replace(MPE, activations_on_chip=False, access="cross")
    off = off_unit.op_cost(op, U280.memories)
    assert off_unit.moved_bytes(op) == op.bytes > MPE.moved_bytes(op) == op.weight_bytes
    assert off.memory_s == pytest.approx(op.bytes / (460e9 * 0.35 * 0.75))
    assert on.time_s < off.time_s


def _attn(context: int, query: int = 1) -> AttentionOp:
    return AttentionOp(name="attention", dtype=DType.BF16, context_lens=np.array([context]),
                       query_lens=np.array([query]), q_heads=32, kv_heads=32, qk_dim=128, v_dim=128,
                       kv_elements_per_token=8192, kv_dtype=DType.INT8)


# the U280 engine without the compiler's instruction-stream mechanisms (every such field off or 1)
PLAIN = dataclasses.replace(MPE, mv_tile_n=1, attention_in_kv_format=False, kv_append_reread=False,
                            attention_phases=False)
BW = 460e9 * 0.7 * 24 / 32  # the engine's streams: 70 % of 460 GB/s over 24 of 32 pseudo-channels
INT8_RATE = 1024 * 3 * 225e6  # MV MACs per second, 3 SLRs


def test_attention_runs_at_the_16_bit_rate_and_the_sfu_prices_elementwise() -> None:
    attn = _attn(511)
    assert PLAIN.matrix_cycles(attn) == pytest.approx(attn.flops / 2 / (1024 * 3 / 2))
    sfu = U280.units["sfu"]
    norm = ElementwiseOp(name="norm", dtype=DType.BF16, elements=4096, flops_per_element=4.0)
    assert sfu.op_cost(norm, U280.memories).compute_s == pytest.approx(4096 * 4 / (64 * 3 * 225e6))


def test_dequantization_bounds_low_bit_weights() -> None:
    slow = dataclasses.replace(MPE, dequant_weights_per_cycle_per_slr=64)
    op = _fc(1, bits=4.1)
    assert slow.dequant_weights(op) == pytest.approx(4096 * 4096)
    cost = slow.op_cost(op, U280.memories)
    assert cost.memory_s == pytest.approx(4096 * 4096 / (64 * 3 * 225e6))  # dequantization, not HBM, is the bound
    assert MPE.dequant_weights(_fc(1).__class__(name="w8", dtype=DType.INT8, m=1, n=8, k=8,
                                                weight_dtype=DType.INT8)) == 0.0


def test_dsp_budget_and_bad_fields_are_named(tmp_path) -> None:
    text = (DEVICES_DIR / "alveo-u280.toml").read_text().replace('name = "alveo-u280"', 'name = "big"')
    big = text.replace("mm_macs_per_cycle_per_slr = 4096", "mm_macs_per_cycle_per_slr = 8192")
    (tmp_path / "big.toml").write_text(big)
    with pytest.raises(SpecError, match=r"mm_macs_per_cycle_per_slr.*DSPs"):
        load_device(tmp_path / "big.toml")
    (tmp_path / "bad.toml").write_text(text.replace('name = "big"', 'name = "bad"').replace(
        'access = "local"                  # the compiler', 'access = "sideways"                  # the compiler'))
    with pytest.raises(SpecError, match=r"units\.mpe\.access"):
        load_device(tmp_path / "bad.toml")


def test_vhk158_extends_the_u280_engine() -> None:
    vhk = load_device(DEVICES_DIR / "versal-vhk158.toml")
    mpe = vhk.units["mpe"]
    assert mpe.slrs == 4 and mpe.mv_macs_per_cycle_per_slr == MPE.mv_macs_per_cycle_per_slr
    assert mpe.channel_share == 1.0 and MPE.channel_share == 0.75
    assert vhk.memories["hbm"].bandwidth_bytes_per_s == 819.2e9
    assert mpe.mv_tile_n == 512 and mpe.kv_append_reread and mpe.attention_phases  # the same compiler


def test_decode_attention_by_mechanism_by_hand() -> None:
    """Keys 512 (context 511): append re-reads the 511 cached tokens; scores 32 heads x 128 x 512
    MACs; values 32 heads x 512 keys x 512 padded columns (a 128-wide head in a 512-wide MV), INT8."""
    op = _attn(511)
    cost = MPE.op_cost(op, U280.memories)
    append = 511 * 8192 / BW
    k_stream = v_stream = op.kv_bytes / 2 / BW
    qk = 32 * 128 * 512 / INT8_RATE
    sv = 32 * 512 * 512 / INT8_RATE
    assert MPE.attention_macs(op) == (32 * 128 * 512, 32 * 512 * 512)
    assert cost.time_s == pytest.approx(append + max(k_stream, qk) + max(v_stream, sv))
    assert MPE.moved_bytes(op) == pytest.approx(op.kv_bytes + 511 * 8192)
    # one more key crosses a 512-column tile: the scores pay a second, almost empty MV
    assert MPE.attention_macs(_attn(512))[0] == 32 * 128 * 1024


def test_mechanism_fields_off_reproduce_the_plain_model_exactly() -> None:
    for op in (_attn(128), _attn(511), _attn(100, query=64), _fc(1), _fc(512, bits=4.1)):
        plain = PLAIN.op_cost(op, U280.memories)
        new_fields = {"mv_tile_n", "attention_in_kv_format", "kv_append_reread", "attention_phases"}
        old = FpgaUnit(**{f.name: getattr(MPE, f.name) for f in dataclasses.fields(FpgaUnit)
                          if f.name not in new_fields})  # the defaults are the plain model
        assert old.op_cost(op, U280.memories) == plain
        if isinstance(op, AttentionOp):
            assert plain.time_s == pytest.approx(max(op.flops / 2 / (INT8_RATE / 2), op.kv_bytes / BW))
            assert MPE.op_cost(op, U280.memories).time_s > plain.time_s  # each mechanism only adds work
        else:
            assert MPE.op_cost(op, U280.memories) == plain  # 4096 columns are whole MV tiles


def test_each_attention_mechanism_by_itself() -> None:
    op = _attn(1023)
    base = PLAIN.op_cost(op, U280.memories)
    reread = dataclasses.replace(PLAIN, kv_append_reread=True).op_cost(op, U280.memories)
    assert reread.memory_s == pytest.approx(base.memory_s + 1023 * 8192 / BW)
    int8 = dataclasses.replace(PLAIN, attention_in_kv_format=True).op_cost(op, U280.memories)
    assert int8.compute_s == pytest.approx(base.compute_s / 2)  # INT8 packs two MACs per DSP
    padded = dataclasses.replace(PLAIN, mv_tile_n=512).op_cost(op, U280.memories)
    assert padded.compute_s == pytest.approx(32 * (128 * 1024 + 512 * 1024) / (INT8_RATE / 2))
    phased = dataclasses.replace(PLAIN, attention_phases=True).op_cost(op, U280.memories)
    k = op.kv_bytes / 2 / BW
    assert phased.time_s == pytest.approx(2 * max(k, 32 * 128 * 1024 / (INT8_RATE / 2)))
    assert phased.time_s >= base.time_s


def test_mv_tiles_pad_matmul_columns_and_prefix_sums() -> None:
    tiled = dataclasses.replace(PLAIN, mv_tile_n=512)
    odd = MatmulOp(name="fc", dtype=DType.INT8, m=1, n=4000, k=4096, weight_dtype=DType.INT4)
    assert tiled.matrix_cycles(odd) == pytest.approx(4096 * 4096 / (1024 * 3))  # 4000 columns cost 8 tiles
    assert tiled.matrix_cycles(_fc(512)) == PLAIN.matrix_cycles(_fc(512))  # MM mode is not an MV
    many = tiled.attention_macs(_attn(100, query=700))[0]
    assert many == 32 * 128 * sum(-(-k // 512) * 512 for k in range(101, 801))


def test_attention_grows_with_context_and_never_shrinks() -> None:
    times = [MPE.op_cost(_attn(c), U280.memories).time_s for c in range(0, 2048, 37)]
    assert all(b >= a for a, b in itertools.pairwise(times))
    # beyond the kink (scores stream-bound, values MAC-bound), each token adds its two reads and its
    # 32 x 512 value MACs
    slope = (MPE.op_cost(_attn(500), U280.memories).time_s - MPE.op_cost(_attn(300), U280.memories).time_s) / 200
    assert slope == pytest.approx(8192 / BW + 4096 / BW + 32 * 512 / INT8_RATE)


def test_mv_tile_field_is_checked(tmp_path) -> None:
    text = (DEVICES_DIR / "alveo-u280.toml").read_text().replace('name = "alveo-u280"', 'name = "bad"')
    (tmp_path / "bad.toml").write_text(text.replace("mv_tile_n = 512 ", "mv_tile_n = 0 "))
    with pytest.raises(SpecError, match=r"units\.mpe\.mv_tile_n"):
        load_device(tmp_path / "bad.toml")
