"""Replicas behind a global router (``serve_cluster``): one replica is exactly ``serve``, tokens
are conserved across replicas, the routers split as they say, Little's law, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from decodex.core.errors import ArgumentError
from decodex.sim.serving import Lengths, Workload, serve
from decodex.sim.serving.cluster import ROUTERS, serve_cluster

MODEL, SYSTEM = "llama3-8b", "h100-sxm"
SHORT = Workload(arrival="poisson", rate=50.0, input_lengths=Lengths.uniform(50, 400),
                 output_lengths=Lengths.uniform(1, 300))
HEAVY = Workload(arrival="poisson", rate=120.0, input_lengths=Lengths.uniform(200, 1200),
                 output_lengths=Lengths.uniform(20, 300))


@pytest.mark.parametrize(("scheduler", "kv_blocks"), [("continuous", 100), ("chunked", None)])
def test_one_replica_is_serve_exactly(scheduler: str, kv_blocks: int | None) -> None:
    alone = serve(MODEL, SYSTEM, SHORT, requests=150, scheduler=scheduler, max_batch=32, kv_blocks=kv_blocks)
    cluster = serve_cluster(MODEL, SYSTEM, SHORT, requests=150, scheduler=scheduler, max_batch=32,
                            kv_blocks=kv_blocks, router="least-kv")
    assert (cluster.replica == 0).all()
    for name in ("ttft_s", "e2e_s", "scheduled_s", "token_time_s", "preemptions_per_request"):
        assert np.array_equal(getattr(cluster, name), getattr(alone, name), equal_nan=True), name
    only = cluster.replica_results[0]
    for name in ("ttft_s", "e2e_s", "tpot_s", "iteration_start_s", "iteration_duration_s", "iteration_kv_blocks",
                 "iteration_energy_j"):
        assert np.array_equal(getattr(only, name), getattr(alone, name), equal_nan=True), name
    assert cluster.throughput_tokens_per_s == alone.throughput_tokens_per_s
    assert cluster.energy_j == pytest.approx(alone.energy_j, rel=1e-12)
    if kv_blocks is not None:
        assert alone.preemptions > 0  # the equality covers preemption too


def test_tokens_conserved_across_heterogeneous_replicas() -> None:
    workload_arrays = SHORT.generate(200, 0, max_total_tokens=8192)
    cluster = serve_cluster(MODEL, ["h100-sxm", "h100-sxm", "h200"], SHORT, requests=200, router="least-kv",
                            kv_blocks=120, max_batch=32)
    assert cluster.systems == ("h100-sxm", "h100-sxm", "h200")
    assert set(np.unique(cluster.replica)) <= {0, 1, 2} and cluster.replica.size == 200
    table = cluster.replicas
    assert table["requests"].sum() == 200
    assert table["output_tokens"].sum() == cluster.total_output_tokens == int(workload_arrays.output_tokens.sum())
    assert table["input_tokens"].sum() == int(workload_arrays.input_tokens.sum())
    for index, res in enumerate(cluster.replica_results):
        assert res.num_requests == int((cluster.replica == index).sum())
        assert res.iterations["output_tokens"].sum() == res.total_output_tokens  # no token twice
        assert np.isfinite(res.token_time_s).all() and res.token_time_s.size == res.total_output_tokens
        assert (res.iterations["kv_blocks_used"] <= 120).all()
        for request in range(res.num_requests):
            own = res.token_time_s[res.token_offsets[request]:res.token_offsets[request + 1]]
            assert own[0] == res.first_token_s[request] and own[-1] == res.finish_s[request]
            assert (np.diff(own) > 0).all()
    assert np.isfinite(cluster.token_time_s).all() and (cluster.first_token_s > cluster.arrival_s).all()
    assert cluster.preemptions == table["preemptions"].sum() > 0
    requests = cluster.requests
    assert list(requests["replica"]) == list(cluster.replica)
    assert set(requests["system"]) <= {"h100-sxm", "h200"}


def test_round_robin_splits_evenly() -> None:
    cluster = serve_cluster(MODEL, (SYSTEM, 3), SHORT, requests=151, router="round-robin")
    assert np.array_equal(cluster.replica, np.arange(151) % 3)
    assert list(cluster.replicas["requests"]) == [51, 50, 50]


def test_least_outstanding_beats_one_replica_under_load() -> None:
    one = serve(MODEL, SYSTEM, HEAVY, requests=300)
    two = serve_cluster(MODEL, SYSTEM, HEAVY, replicas=2, requests=300, router="least-outstanding")
    assert one.utilization > 0.9  # one replica is saturated
    assert two.throughput_tokens_per_s >= one.throughput_tokens_per_s
    assert np.percentile(two.ttft_s, 99) <= np.percentile(one.ttft_s, 99)
    counts = two.replicas["requests"]
    assert abs(int(counts[0]) - int(counts[1])) <= 30  # balanced by outstanding work, not by turns


def test_littles_law_on_a_steady_cluster() -> None:
    steady = Workload(arrival="poisson", rate=30.0, input_lengths=Lengths.uniform(50, 400),
                      output_lengths=Lengths.uniform(20, 200))
    cluster = serve_cluster(MODEL, (SYSTEM, 2), steady, requests=250, router="least-outstanding")
    little = cluster.request_throughput_per_s * float(np.mean(cluster.e2e_s))
    assert cluster.mean_in_system == pytest.approx(little, rel=0.1)
    assert 0 < cluster.utilization < 1


def test_deterministic_for_a_seed() -> None:
    runs = [serve_cluster(MODEL, (SYSTEM, 2), SHORT, requests=80, router="least-kv", seed=seed)
            for seed in (5, 5, 6)]
    assert np.array_equal(runs[0].replica, runs[1].replica)
    assert np.array_equal(runs[0].e2e_s, runs[1].e2e_s) and np.array_equal(runs[0].token_time_s, runs[1].token_time_s)
    assert not np.array_equal(runs[0].arrival_s, runs[2].arrival_s)
    assert runs[0].summary()["per_replica"] == runs[1].summary()["per_replica"]


@pytest.mark.parametrize(("systems", "kwargs", "name"), [
    (SYSTEM, {"router": "random"}, "router"),
    (SYSTEM, {"router": None}, "router"),
    ((SYSTEM, 0), {}, "replicas"),
    ([], {}, "replicas"),
    (SYSTEM, {"replicas": 0}, "replicas"),
    ([SYSTEM, SYSTEM], {"replicas": 3}, "replicas"),
    ((SYSTEM, 2), {"replicas": 2}, "replicas"),
    ([SYSTEM, 3.5], {}, "systems"),
    (SYSTEM, {"requests": 0}, "requests"),
])
def test_bad_arguments_name_the_argument(systems: object, kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ArgumentError, match=f"^{name}:"):
        serve_cluster(MODEL, systems, SHORT, **kwargs)  # type: ignore[arg-type]


def test_routers_registry() -> None:
    assert list(ROUTERS) == ["round-robin", "least-outstanding", "least-kv"]
    # ties go to the lowest index; least-kv breaks KV ties by outstanding requests
    assert ROUTERS["least-outstanding"]([2, 1, 1], [0.0, 0.0, 0.0], 7) == 1
    assert ROUTERS["least-kv"]([3, 2, 2], [0.0, 0.0, 0.5], 7) == 1
    assert ROUTERS["round-robin"]([0, 0, 0], [0.0, 0.0, 0.0], 7) == 1
