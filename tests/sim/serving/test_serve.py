"""Serving runs: token conservation, preemption, determinism, latency at low load, throughput
bounds, Little's law, and what distinguishes the schedulers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from decodex.core.errors import ArgumentError
from decodex.sim.estimate import estimate
from decodex.sim.serving import SCHEDULERS, Lengths, ServingResult, Workload, serve
from decodex.sim.serving.software import load_software
from decodex.workloads.batch import Batch, Routing
from decodex.workloads.parallelism import Parallelism

MODEL, SYSTEM = "llama3-8b", "h100-sxm"
SHORT = Workload(arrival="poisson", rate=50.0, input_lengths=Lengths.uniform(50, 400),
                 output_lengths=Lengths.uniform(1, 300))


def assert_tokens_conserved(result: ServingResult) -> None:
    """Every request produced exactly its output tokens, each once, in time order."""
    assert result.iterations["output_tokens"].sum() == result.total_output_tokens  # no token twice
    times = result.token_time_s
    assert np.isfinite(times).all()  # no token missing
    assert np.isfinite(result.finish_s).all() and np.isfinite(result.first_token_s).all()
    for request in range(result.num_requests):
        own = times[result.token_offsets[request]:result.token_offsets[request + 1]]
        assert own.size == result.output_tokens[request]
        assert own[0] == result.first_token_s[request] and own[-1] == result.finish_s[request]
        assert (np.diff(own) > 0).all()
    assert (result.first_token_s > result.arrival_s).all()
    assert (result.scheduled_s >= result.arrival_s).all()


@pytest.mark.parametrize("scheduler", sorted(SCHEDULERS))
def test_tokens_conserved(scheduler: str) -> None:
    result = serve(MODEL, SYSTEM, SHORT, requests=150, scheduler=scheduler, max_batch=32)
    assert_tokens_conserved(result)
    assert result.preemptions == 0
    assert result.iterations["prefill_tokens"].sum() == result.input_tokens.sum()
    assert result.iterations["batch_size"].max() <= 32
    assert (result.iterations["kv_blocks_used"] <= result.kv.total_blocks).all()


@pytest.mark.parametrize("scheduler", sorted(SCHEDULERS))
def test_tokens_conserved_under_preemption(scheduler: str) -> None:
    # 100 blocks of 16 tokens hold the longest request (<= 699 tokens) but not many at once
    result = serve(MODEL, SYSTEM, SHORT, requests=150, scheduler=scheduler, max_batch=32, kv_blocks=100)
    assert result.preemptions > 0
    assert_tokens_conserved(result)
    assert (result.iterations["kv_blocks_used"] <= 100).all()
    # recompute: a preempted request prefills its prompt and the tokens generated so far again
    assert result.iterations["prefill_tokens"].sum() > result.input_tokens.sum()


def test_tiny_memory_utilization_forces_preemption() -> None:
    workload = Workload.preset("fixed", rate=100.0, input_len=1000, output_len=1000)
    result = serve(MODEL, SYSTEM, workload, requests=60, memory_utilization=0.24)
    assert result.kv.total_blocks < 60 * 2000 / 16
    assert result.preemptions > 0
    assert_tokens_conserved(result)


def test_deterministic_for_a_seed() -> None:
    a = serve(MODEL, SYSTEM, SHORT, requests=100, seed=5, scheduler="chunked", kv_blocks=100)
    b = serve(MODEL, SYSTEM, SHORT, requests=100, seed=5, scheduler="chunked", kv_blocks=100)
    c = serve(MODEL, SYSTEM, SHORT, requests=100, seed=6, scheduler="chunked", kv_blocks=100)
    np.testing.assert_array_equal(a.token_time_s, b.token_time_s)
    np.testing.assert_array_equal(a.iteration_duration_s, b.iteration_duration_s)
    assert a.summary() == b.summary()
    assert not np.array_equal(a.arrival_s, c.arrival_s)


@pytest.mark.parametrize("scheduler", sorted(SCHEDULERS))
def test_low_load_latency_is_the_step_time(scheduler: str) -> None:
    # one request every 10 s, each done in < 1 s: the replica serves one request at a time
    prompt, output = 512, 64
    workload = Workload.preset("fixed", rate=0.1, arrival="fixed", input_len=prompt, output_len=output)
    result = serve(MODEL, SYSTEM, workload, software="ideal", requests=4, scheduler=scheduler, chunk=1024,
                   bucket_width=0.0)
    assert result.iterations["batch_size"].max() == 1
    prefill = estimate(MODEL, SYSTEM, Batch.mixed([], [prompt])).step_time_s
    np.testing.assert_allclose(result.ttft_s, prefill, rtol=1e-12)
    decode = np.array([estimate(MODEL, SYSTEM, Batch.decode(1, prompt + k)).step_time_s for k in range(output - 1)])
    for request in range(result.num_requests):
        np.testing.assert_allclose(result.request_tbt_s(request), decode, rtol=1e-9)
    np.testing.assert_allclose(result.tpot_s, decode.mean(), rtol=1e-9)
    np.testing.assert_allclose(result.e2e_s, prefill + decode.sum(), rtol=1e-9)


def test_low_load_latency_adds_the_software_host_time() -> None:
    # the default software (vllm) adds its host time to every iteration: one request at a time,
    # so every token is one iteration later by exactly that time
    prompt, output = 512, 16
    workload = Workload.preset("fixed", rate=0.1, arrival="fixed", input_len=prompt, output_len=output)
    host = load_software("vllm").iteration_host_overhead_s
    assert host > 0
    result = serve(MODEL, SYSTEM, workload, requests=2, bucket_width=0.0)
    prefill = estimate(MODEL, SYSTEM, Batch.mixed([], [prompt])).step_time_s
    np.testing.assert_allclose(result.ttft_s, prefill + host, rtol=1e-12)
    decode = np.array([estimate(MODEL, SYSTEM, Batch.decode(1, prompt + k)).step_time_s for k in range(output - 1)])
    np.testing.assert_allclose(result.request_tbt_s(0), decode + host, rtol=1e-9)


def test_low_load_tpot_with_buckets() -> None:
    workload = Workload.preset("fixed", rate=0.1, arrival="fixed", input_len=3000, output_len=100)
    result = serve(MODEL, SYSTEM, workload, software="ideal", requests=2)  # 1 % context buckets
    single = estimate(MODEL, SYSTEM, Batch.decode(1, 3050)).step_time_s
    np.testing.assert_allclose(result.tpot_s, single, rtol=1e-3)


@pytest.mark.parametrize("scheduler", ["continuous", "chunked"])
def test_throughput_bounded_by_the_batch_limited_step_rate(scheduler: str) -> None:
    max_batch = 8
    workload = Workload.preset("fixed", rate=1000.0, input_len=32, output_len=128)
    result = serve(MODEL, SYSTEM, workload, software="ideal", requests=200, scheduler=scheduler, max_batch=max_batch)
    bound = max_batch / estimate(MODEL, SYSTEM, Batch.decode(max_batch, 0)).step_time_s
    assert result.throughput_tokens_per_s <= bound
    assert result.throughput_tokens_per_s >= 0.8 * bound  # saturated: close to the bound
    assert result.utilization == pytest.approx(1.0)


def test_littles_law() -> None:
    rate = 6.0
    workload = Workload.preset("sharegpt", rate=rate)
    result = serve(MODEL, SYSTEM, workload, requests=2000, seed=1)
    mean_in_system = result.mean_in_system
    assert mean_in_system == pytest.approx(rate * result.e2e_s.mean(), rel=0.1)
    assert result.utilization <= 1.0 + 1e-9


def test_chunked_prefill_lowers_tail_time_between_tokens() -> None:
    # long prompts arrive while other requests decode: continuous batching stalls the decodes
    # for a whole prompt's prefill, chunked prefill interleaves 512-token chunks with them
    workload = Workload(arrival="poisson", rate=4.0, input_lengths=Lengths.uniform(2000, 6000),
                        output_lengths=Lengths.uniform(32, 128))
    continuous = serve(MODEL, SYSTEM, workload, requests=150, scheduler="continuous")
    chunked = serve(MODEL, SYSTEM, workload, requests=150, scheduler="chunked", chunk=512)
    p99_continuous = continuous.summary()["tbt_s"]["p99"]
    p99_chunked = chunked.summary()["tbt_s"]["p99"]
    assert p99_chunked < 0.5 * p99_continuous
    # continuous: prefill-only iterations; chunked: prompts spread over iterations, mixed with decodes
    assert (continuous.iterations.query("prefill_requests > 0")["decode_requests"] == 0).all()
    assert (chunked.iterations["prefill_tokens"] + chunked.iterations["decode_requests"] <= 512).all()
    assert ((chunked.iterations["prefill_requests"] > 0) & (chunked.iterations["decode_requests"] > 0)).any()


def test_static_batching_admits_nothing_mid_batch() -> None:
    static = serve(MODEL, SYSTEM, SHORT, requests=120, scheduler="static", max_batch=16)
    continuous = serve(MODEL, SYSTEM, SHORT, requests=120, scheduler="continuous", max_batch=16)

    def admitted_mid_batch(result: ServingResult) -> int:
        starts = result.iterations.query("prefill_requests > 0")["start_s"].to_numpy()
        busy = (result.first_token_s[None, :] <= starts[:, None]) & (starts[:, None] < result.finish_s[None, :])
        return int(busy.any(axis=1).sum())

    assert admitted_mid_batch(static) == 0
    assert admitted_mid_batch(continuous) > 0
    frame = static.iterations
    assert (frame.query("prefill_requests > 0")["decode_requests"] == 0).all()
    # inside a batch the decode count only shrinks
    batch_id = np.cumsum(frame["prefill_requests"].to_numpy() > 0)
    for _, group in frame.groupby(batch_id):
        sizes = group["batch_size"].to_numpy()
        assert (np.diff(sizes[1:]) <= 0).all() and sizes[1] <= sizes[0]


def test_trace_workload_runs(tmp_path: Path) -> None:
    path = tmp_path / "trace.csv"
    path.write_text("arrival_s,input_tokens,output_tokens\n0.0,100,10\n0.01,200,5\n0.5,50,1\n3.0,9000,20\n")
    result = serve(MODEL, SYSTEM, Workload.from_trace(path), scheduler="chunked")
    assert result.num_requests == 4
    np.testing.assert_array_equal(result.input_tokens, [100, 200, 50, 8191])  # capped at the context window
    np.testing.assert_array_equal(result.output_tokens, [10, 5, 1, 1])
    assert np.isnan(result.tpot_s[2]) and result.meets_slo[2]
    assert_tokens_conserved(result)


def test_result_tables_and_summary() -> None:
    result = serve(MODEL, SYSTEM, SHORT, requests=50)
    assert {"arrival_s", "first_token_s", "finish_s", "ttft_s", "tpot_s", "e2e_s", "input_tokens",
            "output_tokens", "preemptions"} <= set(result.requests.columns)
    assert len(result.requests) == 50
    assert {"start_s", "duration_s", "decode_requests", "prefill_tokens", "batch_size", "kv_blocks_used",
            "energy_j"} <= set(result.iterations.columns)
    summary = result.summary()
    for key in ("ttft_s", "tpot_s", "e2e_s", "tbt_s"):
        assert set(summary[key]) >= {"p50", "p90", "p99"}
        assert summary[key]["p50"] <= summary[key]["p90"] <= summary[key]["p99"]
    assert summary["requests"] == 50 and summary["output_tokens"] == result.output_tokens.sum()
    assert 0 < summary["goodput_requests_per_s"] <= summary["request_throughput_per_s"]
    assert summary["energy_per_token_j"] > 0
    assert result.tbt_s.size == result.total_output_tokens - 50


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"scheduler": "fcfs-magic"}, "scheduler"),
    ({"chunk": 0}, "chunk"),
    ({"max_batch": 0}, "max_batch"),
    ({"block_size": 0}, "block_size"),
    ({"memory_utilization": 0.0}, "memory_utilization"),
    ({"memory_utilization": 1.2}, "memory_utilization"),
    ({"kv_blocks": 3}, "kv_blocks"),
    ({"requests": 0}, "requests"),
    ({"slo_ttft_s": 0.0}, "slo_ttft_s"),
    ({"bucket_width": 2.0}, "bucket_width"),
])
def test_bad_arguments(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ArgumentError, match=name):
        serve(MODEL, SYSTEM, SHORT, **kwargs)  # type: ignore[arg-type]


def test_workload_must_be_a_workload() -> None:
    with pytest.raises(ArgumentError, match="workload"):
        serve(MODEL, SYSTEM, "sharegpt")  # type: ignore[arg-type]


def test_serve_routes_moe_tokens_as_asked() -> None:
    workload = Workload.preset("fixed", rate=1e6, input_len=64, output_len=16)
    kwargs = dict(requests=16, max_batch=16, precision="fp16", parallelism=Parallelism(tp=2))
    uniform = serve("mixtral-8x7b", "h100-sxm", workload, **kwargs)
    skewed = serve("mixtral-8x7b", "h100-sxm", workload, routing=Routing("zipf", skew=3.0), **kwargs)
    assert uniform.summary()["output_tokens"] == skewed.summary()["output_tokens"]
    assert skewed.summary()["makespan_s"] != uniform.summary()["makespan_s"]
