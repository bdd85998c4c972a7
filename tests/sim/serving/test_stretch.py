"""The fast serving loops leave the record of a run unchanged, bit for bit, for every scheduler,
admission policy, preemption and arrival pattern: decode stretches (planning repeated decode-only
iterations at once) and the compiled loop, both against the Python loop stepping one iteration
at a time."""

from __future__ import annotations

import numpy as np
import pytest

from decodex.core.errors import ArgumentError
from decodex.sim.serving import SCHEDULERS, Lengths, Workload, serve
from decodex.sim.serving import engine as engine_module
from decodex.sim.serving.engine import ServingEngine
from decodex.sim.serving.kv_cache import BlockManager
from decodex.sim.serving.schedulers import get_scheduler
from decodex.sim.serving.state import ReplicaState
from decodex.sim.serving.stretch import Stretch, kv_growth, plan_stretch

MODEL, SYSTEM = "llama3-8b", "h100-sxm"
RECORD = ("scheduled_s", "first_token_s", "finish_s", "token_time_s", "iteration_start_s", "iteration_duration_s",
          "iteration_decodes", "iteration_prefills", "iteration_prefill_tokens", "iteration_output_tokens",
          "iteration_kv_blocks", "iteration_energy_j", "preemptions_per_request")
MIXED = Workload(arrival="poisson", rate=20.0, input_lengths=Lengths.uniform(20, 300),
                 output_lengths=Lengths.uniform(1, 200))


@pytest.fixture
def stretches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Iterations of every stretch the engine plans (records through the engine's own call)."""
    planned: list[int] = []

    def counting(*args: object, **kwargs: object) -> Stretch | None:
        stretch = plan_stretch(*args, **kwargs)  # type: ignore[arg-type]
        if stretch is not None:
            planned.append(stretch.steps)
        return stretch

    monkeypatch.setattr(engine_module, "plan_stretch", counting)
    return planned


def assert_same_record(stretches: list[int], **kwargs: object) -> None:
    """Serve with and without stretches: every array of the record is identical, and the fast
    run did plan stretches."""
    slow = serve(MODEL, SYSTEM, loop="step", **kwargs)  # type: ignore[arg-type]
    assert not stretches
    fast = serve(MODEL, SYSTEM, loop="stretch", **kwargs)  # type: ignore[arg-type]
    compiled = serve(MODEL, SYSTEM, loop="compiled", **kwargs)  # type: ignore[arg-type]
    for name in RECORD:
        assert np.array_equal(getattr(slow, name), getattr(fast, name), equal_nan=True), name
        assert np.array_equal(getattr(slow, name), getattr(compiled, name), equal_nan=True), name
    for name in ("step_cache_hits", "step_cache_misses", "preemptions"):
        assert getattr(slow, name) == getattr(compiled, name), name
    assert len(stretches) > 0 and sum(stretches) > 2 * len(stretches)


@pytest.mark.parametrize("scheduler", sorted(SCHEDULERS))
@pytest.mark.parametrize("software", ["vllm", "trtllm"])
def test_same_record_for_every_scheduler(scheduler: str, software: str, stretches: list[int]) -> None:
    assert_same_record(stretches, workload=MIXED, requests=200, scheduler=scheduler, software=software, max_batch=24)


@pytest.mark.parametrize("scheduler", sorted(SCHEDULERS))
def test_same_record_under_preemption(scheduler: str, stretches: list[int]) -> None:
    # 60 blocks of 16 tokens: requests outgrow the cache mid-stretch and are preempted
    assert_same_record(stretches, workload=MIXED, requests=150, scheduler=scheduler, max_batch=32, kv_blocks=60)


def test_same_record_when_decodes_fill_the_chunk_budget(stretches: list[int]) -> None:
    # a budget of 8 tokens: 8 or more decodes leave no room for prompt chunks ("finish" promise)
    assert_same_record(stretches, workload=MIXED, requests=120, scheduler="chunked", chunk=8, max_batch=16)


def test_same_record_with_ties_and_bursts(stretches: list[int]) -> None:
    # fixed gaps and all-at-once arrivals put arrivals on iteration boundaries and queues ahead of them
    for arrival in ("fixed", "all-at-once"):
        workload = Workload(arrival=arrival, rate=40.0, input_lengths=Lengths.fixed(64),
                            output_lengths=Lengths.fixed(40))
        assert_same_record(stretches, workload=workload, requests=100, max_batch=16)
        stretches.clear()


def test_same_record_on_a_trace_with_bucketed_step_times(stretches: list[int]) -> None:
    workload = Workload.from_trace("azure-conv-2023", rate_scale=4.0)
    assert_same_record(stretches, workload=workload, requests=300, bucket_width=0.05, max_batch=64)


def test_one_batch_with_nothing_arriving_decodes_in_one_stretch() -> None:
    class Steps:
        def lookup(self, *key: int) -> tuple[float, float]:
            return 0.01, 1.0

    outputs = np.full(4, 50, dtype=np.int64)
    state = ReplicaState(np.full(4, 10, dtype=np.int64), outputs, BlockManager(1000, 16, 4))
    engine = ServingEngine(np.zeros(4), state, get_scheduler("continuous")(), Steps(),  # type: ignore[arg-type]
                           fast_forward=True)
    engine.run()
    assert engine.finished == 4 and len(engine.it_start) == 50  # one prefill, 49 decodes
    assert engine.stretches == 1  # the 49 decodes in one go
    assert np.allclose(np.diff(engine.it_start), 0.01)
    assert np.allclose(engine.token_time_s.reshape(4, 50)[:, -1], 0.5)


def test_kv_growth_matches_block_by_block_counting() -> None:
    rng = np.random.default_rng(3)
    size, n, steps = 16, 40, 70
    tokens = rng.integers(1, 300, n)
    blocks = BlockManager(10_000, size, n)
    state = ReplicaState(tokens.copy(), np.full(n, 1000, dtype=np.int64), blocks)
    ids = np.arange(n)
    extra = rng.integers(0, 3, n)  # some hold more blocks than they need
    blocks.held[ids] = -(-tokens // size) + extra
    got = kv_growth(state, ids, steps)
    want = [int(np.maximum(-(-(tokens + j) // size) - blocks.held[ids], 0).sum()) for j in range(steps)]
    assert got.tolist() == want


def test_a_scheduler_of_ones_own_runs_in_python(stretches: list[int]) -> None:
    from decodex.sim.serving.compiled_engine import compiled_kind
    from decodex.sim.serving.schedulers import ContinuousScheduler

    class Mine(ContinuousScheduler):
        pass

    outputs = np.full(2, 5, dtype=np.int64)
    state = ReplicaState(np.full(2, 10, dtype=np.int64), outputs, BlockManager(100, 16, 2))
    engine = ServingEngine(np.zeros(2), state, Mine(), None, compiled=True)  # type: ignore[arg-type]
    assert compiled_kind(engine) is None


def test_an_unknown_loop_is_refused() -> None:
    with pytest.raises(ArgumentError, match="loop: 'fast' not one of compiled, stretch, step"):
        serve(MODEL, SYSTEM, MIXED, requests=10, loop="fast")
