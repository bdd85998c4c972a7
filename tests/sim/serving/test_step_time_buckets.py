"""Step-time buckets at the model's context window: a cache must never change what is valid."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from decodex.core.errors import ArgumentError
from decodex.hw_models.system import load_system
from decodex.sim.estimate import estimate
from decodex.sim.serving import ServingResult, StepTimes, Workload, api, serve
from decodex.workloads.batch import Batch
from decodex.workloads.catalog import load_model
from decodex.workloads.model_config import ModelConfig
from decodex.workloads.parallelism import Parallelism
from decodex.workloads.precision import Precision

MODEL = load_model("llama2-7b")  # max_position_embeddings = 4096
SYSTEM = load_system("h100-sxm")
WINDOW = 4096


def _steps(width: float, model: ModelConfig = MODEL) -> StepTimes:
    return StepTimes(model, SYSTEM, precision=Precision.parse("bf16"), parallelism=Parallelism(), bucket_width=width)


class _Unclamped(StepTimes):
    """The cache before the fix: a bucket stands for its geometric sum, whatever the window."""

    def represented(self, key: tuple[int, int, int, int, int]) -> tuple[int, int]:
        decodes, prefills, _, decode_bucket, prefill_bucket = key
        return (self.bucket_tokens(decode_bucket) if decodes else 0,
                self.bucket_tokens(prefill_bucket) if prefills else 0)


def test_unclamped_bucket_of_a_full_context_passes_the_window() -> None:
    # the defect's mechanism: a decode at position 4096 (context 4095) lands in the 1 % bucket of
    # 1.01 ** 836 = 4099 tokens, a position of 4100 that estimate refuses
    old = _Unclamped(MODEL, SYSTEM, precision=Precision.parse("bf16"), parallelism=Parallelism())
    assert old.bucket_tokens(old.bucket(WINDOW - 1)) > WINDOW - 1
    assert old.batch_for((1, 0, 0, old.bucket(WINDOW - 1), -1)).max_position > WINDOW
    fixed = _steps(0.01)
    assert fixed.batch_for((1, 0, 0, fixed.bucket(WINDOW - 1), -1)).max_position == WINDOW


@pytest.mark.parametrize("width", [0.0, 0.01, 0.1])
def test_requests_at_the_window_edge_are_priced_within_the_bucket_bound(width: float) -> None:
    steps = _steps(width)
    worst = 0.0
    for decodes in (1, 2, 7, 32):
        for gap in (0, 1, 5, 13, 40):  # decodes whose prompt + output end at or just below 4096
            context = WINDOW - 1 - gap
            time_s, energy_j = steps.lookup(decodes, decodes * context, 0, 0, 0)
            exact = estimate(MODEL, SYSTEM, Batch.decode(decodes, context))
            worst = max(worst, abs(time_s / exact.step_time_s - 1), abs(energy_j / exact.energy_j - 1))
    for chunk in (1, 100, 512):  # the last chunk of a prompt that fills the window, beside full decodes
        for decodes in (0, 1, 16):
            time_s, energy_j = steps.lookup(decodes, decodes * (WINDOW - 1), 1, chunk, WINDOW - chunk)
            exact = estimate(MODEL, SYSTEM, Batch.mixed([WINDOW - 1] * decodes, [chunk], [WINDOW - chunk]))
            worst = max(worst, abs(time_s / exact.step_time_s - 1), abs(energy_j / exact.energy_j - 1))
    # the represented context sum is within w / 2 of the true one; time and energy grow at most
    # in proportion to the context (a fixed weight-streaming part plus attention linear in it)
    assert worst <= width / 2 + 1e-12
    if width == 0.0:
        assert worst == 0.0


@pytest.mark.parametrize("width", [0.0, 0.01, 0.1])
def test_unequal_prefill_chunks_at_the_edge_stay_in_the_window(width: float) -> None:
    # chunks of 1 and 2 tokens after 4095 and 4094 cached: both reach 4096; the even split must not
    # hand the longer chunk the longer context (2 + 4095 = 4097 before the fix, even unbucketed)
    steps = _steps(width)
    key = (3, 2, 3, steps.bucket(3 * (WINDOW - 1)), steps.bucket(2 * WINDOW - 3))
    rep = steps.batch_for(key)
    assert rep.max_position <= WINDOW
    if width == 0.0:
        assert steps.represented(key) == (3 * (WINDOW - 1), 2 * WINDOW - 3) and rep.max_position == WINDOW
    time_s, _ = steps.lookup(3, 3 * (WINDOW - 1), 2, 3, 2 * WINDOW - 3)
    assert time_s > 0


@settings(max_examples=300, deadline=None)
@given(window=st.integers(2, 300), width=st.sampled_from([0.0, 0.001, 0.01, 0.05, 0.1, 0.5, 1.0]),
       data=st.data())
def test_every_bucketed_batch_stays_in_the_window(window: int, width: float, data: st.DataObject) -> None:
    model = dataclasses.replace(MODEL, max_position_embeddings=window)
    steps = _steps(width, model)
    decode_ctx = data.draw(st.lists(st.integers(0, window - 1), max_size=40), label="decode contexts")
    chunks = data.draw(st.lists(st.integers(1, window), max_size=6), label="prefill chunks")
    if not decode_ctx and not chunks:
        return
    prefill_ctx = [data.draw(st.integers(0, window - c), label="prefill context") for c in chunks]
    true_decode, true_prefill = sum(decode_ctx), sum(prefill_ctx)
    key = (len(decode_ctx), len(chunks), sum(chunks), steps.bucket(true_decode), steps.bucket(true_prefill))
    rep = steps.batch_for(key)
    assert rep.max_position <= window  # every per-request position the bucket implies is valid
    decode_sum, prefill_sum = steps.represented(key)
    assert decode_sum <= len(decode_ctx) * (window - 1) and prefill_sum + sum(chunks) <= len(chunks) * window
    for represented, true in ((decode_sum, true_decode), (prefill_sum, true_prefill)):
        assert abs(represented - true) <= width / 2 * true + 0.5  # the documented bucket bound
    assert int(rep.context_lens[:len(decode_ctx)].sum()) == decode_sum
    assert int(rep.context_lens[len(decode_ctx):].sum()) == prefill_sum
    assert rep.num_tokens == len(decode_ctx) + sum(chunks)


def test_reported_long_context_serving_runs_and_matches_exact_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    # decodex serve --model llama2-7b --system h100-sxm --dataset sharegpt-long --rate 20 --scheduler chunked,
    # cut to 60 requests (seed 1) that still fill the 4096-token window
    def run(width: float) -> ServingResult:
        workload = Workload.preset("sharegpt-long", rate=20)
        return serve(MODEL, SYSTEM, workload, requests=60, scheduler="chunked", seed=1, bucket_width=width,
                     software="ideal")

    bucketed, exact = run(0.01), run(0.0)
    assert int(((bucketed.input_tokens + bucketed.output_tokens) == WINDOW).sum()) > 0
    assert bucketed.total_output_tokens == exact.total_output_tokens
    # every step time is within 0.5 % (half the bucket width) of its exact value; the run is
    # busy throughout, so its makespan (a sum of step times) and throughput move by as much at most
    assert bucketed.throughput_tokens_per_s == pytest.approx(exact.throughput_tokens_per_s, rel=5e-3)
    assert bucketed.energy_j == pytest.approx(exact.energy_j, rel=5e-3)
    assert bucketed.step_cache_misses < exact.step_cache_misses
    # the same run with the unclamped buckets reaches past the window and is refused
    monkeypatch.setattr(api, "StepTimes", _Unclamped)
    with pytest.raises(ArgumentError, match="beyond llama2-7b's max_position_embeddings=4096"):
        run(0.01)
