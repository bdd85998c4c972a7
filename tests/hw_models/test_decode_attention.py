"""The decode-attention kernel model: blocks, SM waves, split-KV and floor, checked by hand and for
monotonicity; read from a device file with its ranges; used by estimate for the decode requests
of an attention op (prefill chunks stay on the roofline)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from decodex.core.errors import SpecError
from decodex.hw_models.decode_attention import DecodeAttentionKernel
from decodex.hw_models.system import SystemSpec, load_system, system_from_dict
from decodex.sim.estimate import estimate
from decodex.workloads.batch import Batch
from decodex.workloads.catalog import load_model
from decodex.workloads.parallelism import Parallelism
from tests.conftest import ideal_device, ideal_system

KERNEL = DecodeAttentionKernel(sm_count=4, blocks_per_sm=1, split_below=0.5, floor_s=1e-6, block_overhead_s=1e-7,
                               block_bandwidth_share=1.0, memory_efficiency=0.5)
TABLE = {"sm_count": 4, "blocks_per_sm": 1, "split_below": 0.5, "floor_s": 1e-6, "block_overhead_s": 1e-7,
         "block_bandwidth_share": 1.0, "memory_efficiency": 0.5}


def test_waves_by_hand() -> None:
    # 3 requests x 2 KV heads = 6 blocks >= 0.5 x 4 SMs: no split; a full wave of 4 and one of 2.
    # Bytes per block: (99 + 1) tokens x 1000 B = 1e5 B. At 1e9 B/s: one block alone streams at most
    # 1.0 x 1e9 / 4 = 2.5e8 B/s (4e-4 s); a wave of k blocks at most 0.5 x 1e9 B/s together (k x 2e-4 s).
    time_s = KERNEL.time_s(3, 2, 1e5, 0.0, 1e9, 1e15)
    full_wave = 1e-7 + max(4e-4, 4 * 2e-4)
    last_wave = 1e-7 + max(4e-4, 2 * 2e-4)
    assert time_s == pytest.approx(1e-6 + full_wave + last_wave, rel=1e-12)


def test_few_blocks_split_the_kv() -> None:
    # 1 request x 1 KV head < 0.5 x 4: split into floor(4 / 1) = 4 partitions of 2.5e4 B, one wave
    assert KERNEL.splits(1) == 4 and KERNEL.splits(2) == 1
    time_s = KERNEL.time_s(1, 1, 1e5, 0.0, 1e9, 1e15)
    assert time_s == pytest.approx(1e-6 + 1e-7 + max(2.5e4 / 2.5e8, 4 * 2.5e4 / 5e8), rel=1e-12)


def test_compute_bounds_a_block_with_many_query_heads() -> None:
    # a block's FLOP at the SM's share of the peak: 1e9 FLOP / (1e12 / 4) = 4 ms (a full wave of 4
    # blocks together: 4e9 FLOP at 1e12 FLOP/s, the same 4 ms)
    time_s = KERNEL.time_s(4, 1, 1e5, 1e9, 1e9, 1e12)
    assert time_s == pytest.approx(1e-6 + 1e-7 + 4e-3, rel=1e-12)


@settings(max_examples=200, deadline=None)
@given(requests=st.integers(1, 600), heads=st.integers(1, 64), context=st.integers(1, 20_000),
       bandwidth=st.floats(1e11, 1e13), factor=st.floats(1.0, 4.0))
def test_more_work_is_never_faster_and_more_bandwidth_never_slower(requests: int, heads: int, context: int,
                                                                    bandwidth: float, factor: float) -> None:
    kernel = dataclasses.replace(KERNEL, sm_count=108, split_below=0.8)
    def t(r: int = requests, c: float = context, bw: float = bandwidth) -> float:
        return kernel.time_s(r, heads, 512.0 * (c + 2.0), 1024.0 * (c + 1.0), bw, 1e15)
    base = t()
    assert base >= kernel.floor_s
    assert t(r=requests + 1) >= base * (1 - 1e-12)
    assert t(c=context * factor) >= base * (1 - 1e-12)
    assert t(bw=bandwidth * factor) <= base * (1 + 1e-12)


def _system(**kernel: object) -> SystemSpec:
    """The ideal test device with a decode-attention table (``kernel`` replacing its fields)."""
    data = ideal_device()
    data["units"]["tensor"]["decode_attention"] = {**TABLE, **kernel}
    return system_from_dict(data, "<ideal+kernel>")


def test_estimate_prices_decodes_by_kernel_and_prefill_chunks_by_roofline() -> None:
    model = load_model("llama3-8b")
    plain, kernel_system = ideal_system(), _system()
    decode = estimate(model, kernel_system, Batch.decode(8, 1000))
    record = next(r for r in decode.records if r.name == "attention")
    unit = kernel_system.groups[0].device.units["tensor"]
    # per (request, KV head): K and V of 1000 cached tokens read and the new one's written (1002 x
    # 2 x 128 x 2 B), 4 query and output heads (4 x 2 x 128 x 2 B); 4 heads x 2 x 256 x 1001 FLOP
    head_bytes = 1002 * 2 * 128 * 2 + 4 * 2 * 128 * 2
    expected = unit.decode_attention.time_s(8, 8, head_bytes, 4 * 2.0 * 256 * 1001, 1e12,
                                            unit.peak_flops(record_dtype(record)))
    assert record.time_s == pytest.approx(expected, rel=1e-9)
    assert record.time_s >= max(record.compute_s, record.memory_s)
    # a mixed batch: the kernel for its decodes plus the roofline of its prefill chunk alone
    mixed = estimate(model, kernel_system, Batch.mixed([1000] * 8, [256], [0]))
    prefill = estimate(model, plain, Batch.mixed([], [256], [0]))
    mixed_time = next(r for r in mixed.records if r.name == "attention").time_s
    prefill_time = next(r for r in prefill.records if r.name == "attention").time_s
    assert mixed_time == pytest.approx(expected + prefill_time, rel=1e-9)
    # energy is the roofline's count either way
    plain_decode = estimate(model, plain, Batch.decode(8, 1000))
    assert record.energy_j == pytest.approx(next(r for r in plain_decode.records if r.name == "attention").energy_j)


def record_dtype(record: object) -> object:
    from decodex.core.dtypes import DType

    return DType(record.dtype)  # type: ignore[attr-defined]


@pytest.mark.parametrize(("field", "value"), [("sm_count", 0), ("blocks_per_sm", 0), ("split_below", 1.5),
                                              ("floor_s", -1e-6), ("block_bandwidth_share", 0.0),
                                              ("memory_efficiency", 1.2), ("floor_s", "fast")])
def test_bad_kernel_fields_name_the_field(field: str, value: object) -> None:
    with pytest.raises(SpecError, match=f"decode_attention.{field}"):
        _system(**{field: value})


def test_a_misspelled_kernel_field_is_refused() -> None:
    with pytest.raises(SpecError, match="did you mean 'floor_s'"):
        _system(flor_s=1e-6)


def test_the_vectorized_path_prices_kernel_units_as_the_scalar_one() -> None:
    from decodex.sim.estimate import estimate
    from decodex.sim.vector_estimate import estimate_grid

    batches = np.array([1, 2, 3, 7, 13, 27, 54, 108, 217, 300])
    contexts = np.array([1, 32, 100, 3136, 500, 2048, 16, 4000, 4095, 64])
    for model, tp in (("llama3-8b", 1), ("llama2-7b", 2), ("llama3-8b", 8)):
        par = Parallelism(tp=tp)
        frame = estimate_grid(model, "8x-a100-80g", batches, contexts, precision="fp16", parallelism=par)
        scalar = [estimate(model, "8x-a100-80g", int(b), context=int(c), precision="fp16", parallelism=par).step_time_s
                  for b, c in zip(batches, contexts, strict=True)]
        np.testing.assert_allclose(frame["step_time_s"].to_numpy(), scalar, rtol=1e-12)


def test_kernel_time_many_is_the_scalar_time() -> None:
    kernel = load_system("a100-80g").primary_device.units["tensor"].decode_attention  # type: ignore[attr-defined]
    rng = np.random.default_rng(3)
    requests = rng.integers(1, 500, 500)
    head_bytes = rng.uniform(1e3, 1e8, 500)
    flops = head_bytes * rng.uniform(0.25, 8.0, 500)
    for kv_heads in (1, 2, 8, 32):
        many = kernel.time_many(requests, kv_heads, head_bytes, flops, 2.0e12, 312e12)
        one = [kernel.time_s(int(r), kv_heads, b, f, 2.0e12, 312e12)
               for r, b, f in zip(requests, head_bytes, flops, strict=True)]
        np.testing.assert_allclose(many, one, rtol=1e-12)
