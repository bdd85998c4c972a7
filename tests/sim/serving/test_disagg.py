"""Prefill-decode disaggregation (``serve_disaggregated``): tokens conserved across the transfer, a
hand-computed case with a free link, monotonicity in the link and the layer-wise overlap, decode
admission limited by KV blocks, determinism, argument checks."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from decodex.core.errors import ArgumentError
from decodex.hw_models.memory import LinkSpec
from decodex.hw_models.system import load_system
from decodex.sim.serving import Lengths, StepTimes, Workload
from decodex.sim.serving.disagg import serve_disaggregated
from decodex.sim.serving.software import load_software
from decodex.workloads.catalog import load_model
from decodex.workloads.parallelism import Parallelism
from decodex.workloads.precision import Precision

MODEL, SYSTEM = "llama3-8b", "h100-sxm"
MIXED = Workload(arrival="poisson", rate=60.0, input_lengths=Lengths.uniform(50, 600),
                 output_lengths=Lengths.uniform(1, 200))


def _tokens_conserved(res) -> None:  # type: ignore[no-untyped-def]
    """Every output token made exactly once: one by the prefill, the rest by the decode instance."""
    assert np.isfinite(res.token_time_s).all()
    for i in range(res.num_requests):
        times = res.token_time_s[res.token_offsets[i]:res.token_offsets[i + 1]]
        assert times[0] == res.first_token_s[i] and times[-1] == res.finish_s[i]
        assert (np.diff(times) >= 0).all()
    assert sum(int(r.iteration_output_tokens.sum()) for r in res.prefill_results) == res.num_requests
    decoded = sum(int(r.iteration_output_tokens.sum()) for r in res.decode_results)
    assert decoded == int((res.output_tokens - 1).sum())
    assert sum(r.num_requests for r in res.prefill_results) == res.num_requests
    assert sum(r.num_requests for r in res.decode_results) == int((res.output_tokens > 1).sum())
    one = res.output_tokens == 1
    assert (res.decode_instance[one] == -1).all() and (res.decode_instance[~one] >= 0).all()
    assert np.array_equal(res.first_token_s[~one], res.transfer_end_s[~one])


@pytest.mark.parametrize("decode_kv_blocks", [None, 60])
def test_tokens_conserved_across_transfers(decode_kv_blocks: int | None) -> None:
    res = serve_disaggregated(MODEL, [SYSTEM, SYSTEM], [SYSTEM, "h20"], MIXED, requests=150,
                              decode_kv_blocks=decode_kv_blocks)
    _tokens_conserved(res)
    if decode_kv_blocks is not None:
        assert res.preemptions > 0  # the tiny decode cache preempts (recompute on the decode instance)
    summary = res.summary()
    assert summary["requests"] == 150 and summary["usd_per_hour"] > 0 and summary["tokens_per_j"] > 0


def test_free_link_matches_hand_computed_steps() -> None:
    """Two requests of 100 prompt tokens and 4 output tokens arriving together, a link with
    infinite bandwidth and no latency: TTFT = one prefill iteration of both prompts, then 3
    decode iterations of both (contexts 100, 101, 102 each), each plus the software's host time."""
    work = Workload(arrival="all-at-once", input_lengths=Lengths.fixed(100), output_lengths=Lengths.fixed(4))
    res = serve_disaggregated(MODEL, SYSTEM, SYSTEM, work, requests=2, link=math.inf, bucket_width=0.0)
    host = load_software("vllm").iteration_host_overhead_s
    steps = StepTimes(load_model(MODEL), load_system(SYSTEM), precision=Precision.parse("bf16"),
                      parallelism=Parallelism(), bucket_width=0.0)
    prefill = steps.lookup(0, 0, 2, 200, 0)[0] + host
    decodes = [steps.lookup(2, 2 * (100 + k), 0, 0, 0)[0] + host for k in range(3)]
    assert np.all(res.transfer_s == 0.0)
    np.testing.assert_allclose(res.ttft_s, [prefill, prefill], rtol=1e-12)
    np.testing.assert_allclose(res.e2e_s, [prefill + sum(decodes)] * 2, rtol=1e-12)
    np.testing.assert_allclose(res.tpot_s, [sum(decodes) / 3] * 2, rtol=1e-12)
    assert np.all(res.decode_admit_s == res.prefill_end_s)
    _tokens_conserved(res)


def test_transfer_time_from_the_link_model() -> None:
    """One request alone: transfer = latency + bytes / (bandwidth x efficiency), bytes = prompt x KV
    bytes per token (all layers, bf16); with the overlap only the last layer's share is exposed."""
    work = Workload(arrival="all-at-once", input_lengths=Lengths.fixed(1000), output_lengths=Lengths.fixed(3))
    link = LinkSpec("slow", bandwidth_bytes_per_s=1e9, latency_s=1e-3, efficiency=0.5)
    model = load_model(MODEL)
    nbytes = 1000 * model.kv_cache_bytes_per_token(Precision.parse("bf16").kv_cache)
    plain = serve_disaggregated(MODEL, SYSTEM, SYSTEM, work, requests=1, link=link, layerwise_overlap=False)
    assert plain.kv_transfer_bytes[0] == nbytes
    assert plain.transfer_s[0] == pytest.approx(1e-3 + nbytes / 0.5e9, rel=1e-12)
    fast = LinkSpec("fast", bandwidth_bytes_per_s=1e15, latency_s=1e-3)
    over = serve_disaggregated(MODEL, SYSTEM, SYSTEM, work, requests=1, link=fast)
    assert over.transfer_s[0] == pytest.approx(1e-3 + nbytes / 1e15 / model.num_layers, rel=1e-9)


def test_slower_link_never_lowers_ttft_and_overlap_never_raises_it() -> None:
    runs = {bw: serve_disaggregated(MODEL, [SYSTEM, SYSTEM], SYSTEM, MIXED, requests=120, link=bw)
            for bw in (math.inf, 50e9, 2e9, 2e8)}
    ttfts = [runs[bw].ttft_s for bw in (math.inf, 50e9, 2e9, 2e8)]
    for faster, slower in itertools.pairwise(ttfts):
        assert np.all(slower >= faster)
    assert ttfts[-1].max() > ttfts[0].max()
    for bw in (50e9, 2e8):
        plain = serve_disaggregated(MODEL, [SYSTEM, SYSTEM], SYSTEM, MIXED, requests=120, link=bw,
                                    layerwise_overlap=False)
        assert np.all(runs[bw].ttft_s <= plain.ttft_s)
        _tokens_conserved(plain)


def test_decode_admission_waits_for_kv_blocks() -> None:
    """With TensorRT-LLM's reserve admission (whole sequence, 450 tokens), a decode cache of twice
    one request's blocks holds two requests at a time: the other six wait for blocks."""
    work = Workload(arrival="all-at-once", input_lengths=Lengths.fixed(400), output_lengths=Lengths.fixed(50))
    per_request = -(-450 // load_software("trtllm").block_size)
    tight = serve_disaggregated(MODEL, SYSTEM, SYSTEM, work, requests=8, link=math.inf,
                                decode_kv_blocks=2 * per_request, software="trtllm")
    roomy = serve_disaggregated(MODEL, SYSTEM, SYSTEM, work, requests=8, link=math.inf, software="trtllm")
    assert tight.decode_results[0].kv.total_blocks == 2 * per_request
    assert int(tight.decode_results[0].iteration_kv_blocks.max()) <= 2 * per_request
    assert (tight.decode_queue_s > 0).sum() == 6
    assert tight.decode_queue_s.max() > 0.0 and tight.preemptions == 0
    assert tight.e2e_s.max() > roomy.e2e_s.max() and (roomy.decode_queue_s == 0).all()
    _tokens_conserved(tight)


def test_deterministic_for_a_seed() -> None:
    a = serve_disaggregated(MODEL, SYSTEM, [SYSTEM, "h20"], MIXED, requests=60, seed=3)
    b = serve_disaggregated(MODEL, SYSTEM, [SYSTEM, "h20"], MIXED, requests=60, seed=3)
    c = serve_disaggregated(MODEL, SYSTEM, [SYSTEM, "h20"], MIXED, requests=60, seed=4)
    assert a.requests.equals(b.requests) and a.summary() == b.summary()
    assert not np.array_equal(a.arrival_s, c.arrival_s)


@pytest.mark.parametrize("kwargs", [
    {"prefill_systems": []}, {"decode_systems": 3}, {"link": "warp"}, {"link": -1.0}, {"link": object()},
    {"layerwise_overlap": "yes"}, {"prefill_router": "random"}, {"decode_router": None},
    {"decode_kv_blocks": 0}, {"kv_blocks": 1}, {"decode_kv_blocks": 2}, {"requests": 0}, {"slo_ttft_s": 0.0},
])
def test_bad_arguments_raise(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"prefill_systems": SYSTEM, "decode_systems": SYSTEM, **kwargs}
    with pytest.raises(ArgumentError):
        serve_disaggregated(MODEL, args.pop("prefill_systems"), args.pop("decode_systems"), MIXED,  # type: ignore[arg-type]
                            requests=kwargs.get("requests", 5), **{k: v for k, v in args.items() if k != "requests"})
