"""Serving software specs: host time per iteration, no-eviction admission, in-flight batching,
KV memory basis, and all-at-once arrivals (TensorRT-LLM's max-throughput mode)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from decodex.core.errors import ArgumentError, SpecError
from decodex.hw_models.system import load_system
from decodex.sim.serving import kv_capacity, serve
from decodex.sim.serving.software import list_software, load_software
from decodex.sim.serving.workload import Lengths, Workload
from decodex.workloads.catalog import load_model
from decodex.workloads.parallelism import Parallelism
from decodex.workloads.precision import Precision

BURST = Workload(arrival="all-at-once", input_lengths=Lengths.fixed(128), output_lengths=Lengths.fixed(32))


def test_catalog_software_loads_with_sources() -> None:
    assert {"vllm", "trtllm"} <= set(list_software())
    trt = load_software("trtllm")
    assert trt.reserves_output and trt.scheduler == "chunked" and trt.kv_memory_basis == "free"
    assert not load_software("vllm").reserves_output
    for name in list_software():
        text = (Path(load_software(name).source)).read_text()
        for line in text.splitlines():
            if "=" in line and not line.lstrip().startswith(("#", "[", "name", "description")):
                assert "#" in line, f"{name}: {line!r} has no source comment"


def test_unknown_software_and_bad_fields_are_named(tmp_path: Path) -> None:
    with pytest.raises(ArgumentError, match="did you mean 'trtllm'"):
        load_software("trtlm")
    bad = tmp_path / "bad.toml"
    bad.write_text((Path(load_software("vllm").source)).read_text().replace("admission = \"preempt\"",
                                                                           "admission = \"evict\""))
    with pytest.raises(SpecError, match="admission"):
        load_software(bad)
    typo = tmp_path / "typo.toml"
    typo.write_text((Path(load_software("vllm").source)).read_text() + "\nmax_batchs = 3\n")
    with pytest.raises(SpecError, match="max_batchs"):
        load_software(typo)


def test_all_at_once_arrivals_start_together() -> None:
    arrivals = BURST.generate(50, seed=3)
    assert np.all(arrivals.arrival_s == 0.0)
    result = serve("llama3-8b", "h100-sxm", BURST, requests=50, software="trtllm")
    # the first iteration sees every request: all 50 prompts in one in-flight iteration
    assert result.iteration_prefills[0] == 50


def test_host_time_adds_exactly_per_iteration_and_request() -> None:
    base = replace(load_software("trtllm"), iteration_host_overhead_s=0.0, request_host_overhead_s=0.0)
    slow = replace(base, iteration_host_overhead_s=1e-3, request_host_overhead_s=2e-6)
    a = serve("llama3-8b", "h100-sxm", BURST, requests=40, software=base)
    b = serve("llama3-8b", "h100-sxm", BURST, requests=40, software=slow)
    # every request arrives at 0 s: the schedule is the same, only the host time is added
    np.testing.assert_array_equal(a.iteration_decodes, b.iteration_decodes)
    requests = a.iteration_decodes + a.iteration_prefills
    expected = a.iteration_duration_s + 1e-3 + 2e-6 * requests
    np.testing.assert_allclose(b.iteration_duration_s, expected, rtol=1e-12)
    assert b.makespan_s == pytest.approx(a.makespan_s + 1e-3 * requests.size + 2e-6 * requests.sum(), rel=1e-9)
    assert b.energy_j > a.energy_j  # the idle devices' power during the host time


def test_reserve_admission_never_preempts_and_holds_whole_requests() -> None:
    workload = Workload(arrival="all-at-once", input_lengths=Lengths.fixed(100), output_lengths=Lengths.fixed(60))
    # 64 blocks of 16 tokens = 1024 tokens: room for 6 whole requests (160 tokens = 10 blocks each)
    vllm = serve("llama3-8b", "h100-sxm", workload, requests=30, software="vllm", kv_blocks=64, block_size=16)
    trt = serve("llama3-8b", "h100-sxm", workload, requests=30, software="trtllm", kv_blocks=64, block_size=16)
    assert vllm.preemptions_per_request.sum() > 0  # vLLM admits on the prompt and then runs short
    assert trt.preemptions_per_request.sum() == 0
    assert trt.iteration_kv_blocks.max() <= 64
    assert (trt.iteration_decodes + trt.iteration_prefills).max() <= 6
    assert np.all(np.isfinite(trt.finish_s))


def test_inflight_mixes_prompts_with_decodes_within_the_token_budget() -> None:
    workload = Workload(arrival="fixed", rate=200.0, input_lengths=Lengths.fixed(300),
                        output_lengths=Lengths.fixed(20))
    result = serve("llama3-8b", "h100-sxm", workload, requests=60, software="trtllm", scheduler="inflight",
                   chunk=1000)
    mixed = (result.iteration_decodes > 0) & (result.iteration_prefills > 0)
    assert mixed.any()  # prefill and decode share iterations
    tokens = result.iteration_decodes + result.iteration_prefill_tokens
    assert tokens.max() <= 1000
    # prompts are never split: every prefill iteration's tokens are whole prompts
    assert np.all(result.iteration_prefill_tokens % 300 == 0)


def test_free_basis_gives_the_kv_cache_a_share_of_what_weights_leave() -> None:
    model, system = load_model("llama3-8b"), load_system("h100-sxm")
    kw = dict(precision=Precision.parse("bf16"), parallelism=Parallelism(), memory_utilization=0.9)
    total = kv_capacity(model, system, memory_basis="total", **kw)  # type: ignore[arg-type]
    free = kv_capacity(model, system, memory_basis="free", **kw)  # type: ignore[arg-type]
    left = total.capacity_bytes - total.weight_bytes - total.workspace_bytes
    assert free.free_bytes == pytest.approx(0.9 * left)
    assert total.free_bytes == pytest.approx(0.9 * total.capacity_bytes - total.weight_bytes - total.workspace_bytes)
    assert free.free_bytes > total.free_bytes  # 0.9 of the rest beats 0.9 of everything minus weights
    with pytest.raises(ArgumentError, match="memory_basis"):
        kv_capacity(model, system, memory_basis="half", **kw)  # type: ignore[arg-type]
