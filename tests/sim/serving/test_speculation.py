"""Serving with speculative decoding: tokens conserved, seeded draws, the step model's verify and
draft priced per iteration, KV blocks reserved ahead, and the bounds a free draft gives."""

from __future__ import annotations

import numpy as np
import pytest

from decodex.core.errors import ArgumentError
from decodex.hw_models.system import load_system
from decodex.sim.estimate import estimate
from decodex.sim.serving import SCHEDULERS, Lengths, ServingResult, Speculation, StepTimes, Workload, serve
from decodex.sim.serving.kv_cache import BlockManager
from decodex.sim.serving.speculation import SpeculativeStepTimes
from decodex.sim.serving.state import ReplicaState
from decodex.sim.speculative import Draft, verify_step
from decodex.workloads.acceptance import ChainAcceptance, EmpiricalAcceptance
from decodex.workloads.batch import Batch
from decodex.workloads.catalog import load_model
from decodex.workloads.parallelism import Parallelism
from decodex.workloads.precision import Precision
from decodex.workloads.token_tree import TokenTree

MODEL, SYSTEM = "llama3-8b", "h100-sxm"
SHORT = Workload(arrival="poisson", rate=50.0, input_lengths=Lengths.uniform(50, 400),
                 output_lengths=Lengths.uniform(1, 300))


def free(k: int, alpha: float) -> Speculation:
    return Speculation(Draft("free"), k, ChainAcceptance((alpha,)))


def assert_conserved(result: ServingResult) -> None:
    """Every request emitted exactly its output tokens, each once, never before an earlier one."""
    assert result.iterations["output_tokens"].sum() == result.total_output_tokens
    times = result.token_time_s
    assert np.isfinite(times).all()
    for request in range(result.num_requests):
        own = times[result.token_offsets[request]:result.token_offsets[request + 1]]
        assert own.size == result.output_tokens[request]
        assert own[0] == result.first_token_s[request] and own[-1] == result.finish_s[request]
        assert (np.diff(own) >= 0).all()


@pytest.mark.parametrize("scheduler", sorted(SCHEDULERS))
def test_tokens_conserved_with_speculation(scheduler: str) -> None:
    spec = Speculation(Draft("self", layers=8), 3, ChainAcceptance((0.8, 0.6)))
    result = serve(MODEL, SYSTEM, SHORT, requests=120, scheduler=scheduler, max_batch=32, speculation=spec)
    assert_conserved(result)
    summary = result.summary()
    # each decode step emits 1 + accepted tokens: 1 .. k + 1, the mean near 1 + E[accepted] (capped at the end)
    assert 1.0 < summary["tokens_per_decode_step"] <= 1.0 + spec.expected_accepted + 1e-9
    assert summary["accepted_tokens"] <= summary["drafted_tokens"] == 3 * result.speculative_steps
    assert summary["speculation"] == "self:8 k=3"


def test_tokens_conserved_under_preemption_with_lookahead() -> None:
    result = serve(MODEL, SYSTEM, SHORT, requests=120, scheduler="continuous", max_batch=32, kv_blocks=100,
                   speculation=free(4, 0.7))
    assert result.preemptions > 0
    assert_conserved(result)
    assert (result.iterations["kv_blocks_used"] <= 100).all()


def test_same_seed_same_run_other_seed_other_draws() -> None:
    spec = free(4, 0.6)
    a = serve(MODEL, SYSTEM, SHORT, requests=60, speculation=spec, seed=3)
    b = serve(MODEL, SYSTEM, SHORT, requests=60, speculation=spec, seed=3)
    np.testing.assert_array_equal(a.token_time_s, b.token_time_s)
    assert a.accepted_tokens == b.accepted_tokens
    c = serve(MODEL, SYSTEM, SHORT, requests=60, speculation=spec, seed=4)
    assert c.accepted_tokens != a.accepted_tokens


def test_acceptance_draws_follow_the_model() -> None:
    # 400 requests x ~150 decode steps: the accepted share is the chain's E[accepted] / k within 2 %
    spec = free(4, 0.7)
    result = serve(MODEL, SYSTEM, Workload.preset("fixed", 100.0, input_len=64, output_len=400), requests=200,
                   speculation=spec)
    expected = spec.expected_accepted  # 0.7 + 0.49 + 0.343 + 0.2401
    steps = result.speculative_steps
    per_step = result.summary()["tokens_per_decode_step"] - 1
    assert per_step == pytest.approx(expected, rel=0.03)  # the last step of each request is capped
    assert steps * (1 + expected) == pytest.approx(result.total_output_tokens - result.num_requests, rel=0.03)


def test_full_acceptance_with_a_free_draft_emits_k_plus_one_per_verify() -> None:
    # one request, 1 + 4 * 10 output tokens: a prefill then exactly 10 decode iterations of 4 tokens each
    workload = Workload.preset("fixed", 1.0, input_len=100, output_len=41)
    result = serve(MODEL, SYSTEM, workload, requests=1, speculation=free(3, 1.0), bucket_width=0.0)
    it = result.iterations
    decodes = it[it["decode_requests"] == 1]
    assert len(decodes) == 10 and (decodes["output_tokens"] == 4).all()
    # each iteration is one verify of 4 tokens at the request's context, plus the software's host time
    host = result.iteration_duration_s[0] - estimate(MODEL, SYSTEM, Batch.mixed([], [100])).step_time_s
    for j, duration in enumerate(decodes["duration_s"]):
        verify = verify_step(MODEL, SYSTEM, 1, context=100 + 4 * j, tree=TokenTree.chain(3))
        assert duration == pytest.approx(verify.step_time_s + host, rel=1e-9)


def test_zero_acceptance_is_slower_than_plain_decode() -> None:
    workload = Workload.preset("fixed", 2.0, input_len=200, output_len=100)
    plain = serve(MODEL, SYSTEM, workload, requests=40)
    spec = serve(MODEL, SYSTEM, workload, requests=40, speculation=free(4, 0.0))
    assert spec.accepted_tokens == 0
    assert len(spec.iteration_start_s) == pytest.approx(len(plain.iteration_start_s), rel=0.1)
    assert spec.tpot_s.mean() > plain.tpot_s.mean()  # the same tokens, each decode verifying 5


def test_tpot_falls_with_acceptance() -> None:
    workload = Workload.preset("fixed", 4.0, input_len=200, output_len=200)
    tpots = [serve(MODEL, SYSTEM, workload, requests=60, speculation=free(4, alpha), seed=1).tpot_s.mean()
             for alpha in (0.3, 0.6, 0.9)]
    assert tpots[0] > tpots[1] > tpots[2]


def test_draft_model_steps_are_priced_and_its_memory_shared() -> None:
    model, system = load_model(MODEL), load_system(SYSTEM)
    prec, par = Precision.parse("bf16"), Parallelism()
    spec = Speculation(Draft("model", model="llama3.2-1b"), 4, ChainAcceptance((0.7,)))
    times = SpeculativeStepTimes(model, system, speculation=spec, precision=prec, parallelism=par, bucket_width=0.0)
    verify = verify_step(model, system, 8, context=1000, tree=TokenTree.chain(4))
    drafts = [estimate("llama3.2-1b", system, 8, context=1000 + j) for j in range(4)]
    expected = verify.step_time_s + sum(d.step_time_s for d in drafts)
    assert times.lookup(8, 8000, 0, 0, 0)[0] == pytest.approx(expected, rel=1e-9)
    plain = serve(MODEL, SYSTEM, SHORT, requests=20)
    shared = serve(MODEL, SYSTEM, SHORT, requests=20, speculation=spec)
    assert shared.kv.total_blocks < plain.kv.total_blocks  # the draft's weights and K/V take their share
    assert shared.kv.kv_bytes_per_token > plain.kv.kv_bytes_per_token


def test_lookahead_reserves_blocks_for_the_drafted_tokens() -> None:
    blocks = BlockManager(100, 16, 2)
    state = ReplicaState(np.array([15, 30]), np.array([10, 10]), blocks, lookahead=4)
    for request in (0, 1):
        state.admit(request)
        state.prefilled[request] = state.prompt_tokens[request]
    state.generated[:] = 1
    decodes, context = state.reserve_decodes(state.decoding())
    assert decodes.tolist() == [0, 1]
    assert context == 15 + 30  # the tokens cached before the step; the lookahead is room, not context
    assert list(blocks.held[:2]) == [2, 3]  # 16 + 4 and 31 + 4 tokens of room


def test_bad_speculation_arguments() -> None:
    with pytest.raises(ArgumentError, match="speculation: must be a Speculation"):
        serve(MODEL, SYSTEM, SHORT, requests=5, speculation="self:4")  # type: ignore[arg-type]
    with pytest.raises(ArgumentError, match=r"draft_length: 0 must be an integer in \[1,"):
        free(0, 0.5)
    with pytest.raises(ArgumentError, match="measured at"):
        Speculation(Draft("free"), 5, EmpiricalAcceptance((1, 2, 3)))
    with pytest.raises(ArgumentError, match="acceptance: a ChainAcceptance or EmpiricalAcceptance"):
        Speculation(Draft("free"), 2, 0.7)  # type: ignore[arg-type]
    cache = StepTimes(load_model(MODEL), load_system(SYSTEM), precision=Precision.parse("bf16"),
                      parallelism=Parallelism())
    with pytest.raises(ArgumentError, match="step_cache: it prices speculation"):
        serve(MODEL, SYSTEM, SHORT, requests=5, speculation=free(2, 0.5), step_cache=cache)


def test_a_cluster_speculates_on_every_replica() -> None:
    from decodex.sim.serving import serve_cluster

    spec = free(3, 0.7)
    cluster = serve_cluster(MODEL, SYSTEM, SHORT, replicas=2, requests=80, speculation=spec, seed=2)
    for replica in cluster.replica_results:
        assert replica.speculation == "free k=3" and replica.accepted_tokens > 0
        assert_conserved(replica)
    summary = cluster.summary()
    assert summary["drafted_tokens"] == sum(r.drafted_tokens for r in cluster.replica_results)
    assert 1.0 < summary["tokens_per_decode_step"] <= 1 + spec.expected_accepted + 1e-9
    again = serve_cluster(MODEL, SYSTEM, SHORT, replicas=2, requests=80, speculation=spec, seed=2)
    np.testing.assert_array_equal(again.token_time_s, cluster.token_time_s)
    # the replicas draw from their own streams: not the same tokens per step
    a, b = cluster.replica_results
    assert (a.accepted_tokens / a.speculative_steps) != (b.accepted_tokens / b.speculative_steps)


def test_the_decode_instances_of_a_disaggregated_run_speculate() -> None:
    from decodex.sim.serving import serve_disaggregated

    spec = Speculation(Draft("self", layers=8), 3, ChainAcceptance((0.7,)))
    run = serve_disaggregated(MODEL, SYSTEM, [SYSTEM, SYSTEM], SHORT, requests=60, speculation=spec, seed=1)
    summary = run.summary()
    assert summary["speculation"] == "self:8 k=3" and summary["accepted_tokens"] > 0
    assert all(r.speculation == "self:8 k=3" for r in run.decode_results)
    assert not any(r.speculation for r in run.prefill_results)
    assert np.isfinite(run.token_time_s).all() and run.token_time_s.size == run.output_tokens.sum()
    plain = serve_disaggregated(MODEL, SYSTEM, [SYSTEM, SYSTEM], SHORT, requests=60, seed=1)
    assert run.tpot_s.mean() < plain.tpot_s.mean()
    with pytest.raises(ArgumentError, match="a draft model keeps its own prompt KV cache"):
        serve_disaggregated(MODEL, SYSTEM, SYSTEM, SHORT, requests=5,
                            speculation=Speculation(Draft("model", model="llama3.2-1b"), 2, ChainAcceptance((0.5,))))


def test_capacity_with_speculation_meets_a_tighter_tpot() -> None:
    """At a TPOT SLO plain decode cannot meet at any load, an always-accepted free draft of 3 (4 tokens
    per step for about one verify's time) meets it: the search takes the speculation through."""
    from decodex.sim.serving.capacity import capacity

    workload = Workload.preset("alpaca", 1.0)
    slo = {"ttft_p99": 2.0, "tpot_p99": 0.004}
    kwargs: dict = {"workload": workload, "requests": 120, "max_batch": 16, "max_runs": 6}
    plain = capacity(MODEL, SYSTEM, slo=slo, **kwargs)
    fast = capacity(MODEL, SYSTEM, slo=slo, speculation=free(3, 1.0), **kwargs)
    assert fast.capacity_per_s > plain.capacity_per_s


def test_decoding_heads_take_their_weights_out_of_the_kv_budget() -> None:
    plain = serve(MODEL, SYSTEM, SHORT, requests=10)
    heads = serve(MODEL, SYSTEM, SHORT, requests=10,
                  speculation=Speculation(Draft("heads", heads=4), 4, ChainAcceptance((0.6,))))
    # 4 heads of Llama-3-8B: 4 x (4096^2 + 4096 + 4096 x 128256) bf16 weights, ~4.3 GB
    taken = heads.kv.weight_bytes - plain.kv.weight_bytes
    assert taken == pytest.approx(4 * (4096 * 4096 + 4096 + 4096 * 128256) * 2, rel=1e-3)
    assert heads.kv.kv_bytes_per_token == plain.kv.kv_bytes_per_token
    assert heads.kv.total_blocks == pytest.approx(plain.kv.total_blocks - taken / (16 * plain.kv.kv_bytes_per_token),
                                                  abs=1)


def heuristic(alpha: float, start: int = 5, most: int = 16) -> Speculation:
    return Speculation(Draft("free"), start, ChainAcceptance((alpha,)), schedule="heuristic", max_draft_length=most)


def test_the_heuristic_schedule_moves_each_request_s_draft_length() -> None:
    # one request: all accepted, k goes 5, 7, 9, ... up to the cap of 12; none accepted, 5, 4, 3, 2, 1, 1
    workload = Workload.preset("fixed", 1.0, input_len=100, output_len=60)
    grow = serve(MODEL, SYSTEM, workload, requests=1, speculation=heuristic(1.0, most=12))
    decodes = grow.iterations[grow.iterations["decode_requests"] == 1]["output_tokens"].tolist()
    assert decodes == [6, 8, 10, 12, 13, 10]  # the last step capped at the 10 tokens left; the prefill emitted 1
    shrink = serve(MODEL, SYSTEM, workload, requests=1, speculation=heuristic(0.0))
    it = shrink.iterations[shrink.iterations["decode_requests"] == 1]
    assert (it["output_tokens"] == 1).all()
    durations = it["duration_s"].tolist()
    assert durations[0] > durations[1] > durations[2] > durations[3] > durations[4]  # verifies of 6, 5, 4, 3, 2
    assert durations[4] == pytest.approx(durations[5], rel=0.02) and shrink.drafted_tokens == 5 + 4 + 3 + 2 + 1 * (
        len(durations) - 4)


def test_the_heuristic_schedule_serves_its_stationary_tokens_per_step() -> None:
    from decodex.sim.speculative_schedule import heuristic_tokens_per_step

    spec = heuristic(0.65)
    result = serve(MODEL, SYSTEM, Workload.preset("fixed", 50.0, input_len=64, output_len=600), requests=100,
                   speculation=spec, seed=4)
    assert_conserved(result)
    expected = heuristic_tokens_per_step(ChainAcceptance((0.65,)), 16)
    assert result.summary()["tokens_per_decode_step"] == pytest.approx(expected, rel=0.04)
    assert result.summary()["speculation"] == "free k=5..16"


def test_mixed_draft_lengths_are_priced_request_by_request() -> None:
    model, system = load_model(MODEL), load_system(SYSTEM)
    spec = Speculation(Draft("model", model="llama3.2-1b"), 2, ChainAcceptance((0.7,)), schedule="heuristic")
    times = SpeculativeStepTimes(model, system, speculation=spec, precision=Precision.parse("bf16"),
                                 parallelism=Parallelism(), bucket_width=0.0)
    # two decodes at 1000 cached tokens drafting 3 tokens in all: 2 and 1
    got = times.lookup_drafted(3, 2, 2000, 0, 0, 0)[0]
    verify = estimate(model, system, Batch(np.array([1000, 1000]), np.array([3, 2]), np.ones(2, bool),
                                           verifies=np.ones(2, bool)))
    drafts = (estimate("llama3.2-1b", system, 2, context=1000).step_time_s
              + estimate("llama3.2-1b", system, 1, context=1001).step_time_s)
    assert got == pytest.approx(verify.step_time_s + drafts, rel=1e-9)
    with pytest.raises(ArgumentError, match="only the heuristic schedule changes the length"):
        Speculation(Draft("free"), 3, ChainAcceptance((0.5,)), max_draft_length=8)
    with pytest.raises(ArgumentError, match="need as many decoding heads"):
        Speculation(Draft("heads", heads=4), 3, ChainAcceptance((0.5,)), schedule="heuristic")
