"""The vectorized analytical path: the same numbers as ``estimate`` point by point, its scope and
its cache."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from decodex.core.errors import ArgumentError
from decodex.hw_models.roofline import padded_rows
from decodex.hw_models.system import SystemSpec, load_system
from decodex.sim.estimate import estimate
from decodex.sim.grid_extract import grid_form
from decodex.sim.grid_pricing import padded_rows_many
from decodex.sim.vector_estimate import NotVectorizable, estimate_grid
from decodex.workloads.catalog import load_model
from decodex.workloads.parallelism import Parallelism

BATCHES = (1, 3, 16, 64, 100, 256)
CONTEXTS = (1, 2, 511, 2048, 8191)
FLOAT_COLUMNS = ("step_time_s", "tokens_per_s", "energy_j", "energy_per_token_j", "weight_bytes", "kv_bytes",
                 "memory_required_bytes", "memory_capacity_bytes", "flops", "bytes")
CASES = [  # (model, system, parallelism, precision): GQA, MHA (rotary and learned positions), tp, pp
    ("llama3-8b", "h100-sxm", None, "bf16"),
    ("llama3-70b", "h100-sxm", Parallelism(tp=8), "bf16"),
    ("opt-6.7b", "h800", None, "bf16"),
    ("llama3-8b", "a100-80g", Parallelism(tp=1), "fp16"),  # decode attention by kernel waves
    ("llama2-7b", "h200", Parallelism(tp=2), "fp16"),
    ("gpt3-13b", "8x-h100-sxm", Parallelism(tp=4, pp=2), "w4a16"),
    ("llama2-13b", "h200", None, "w=int4,a=bf16,kv=fp8,sparsity=2:4"),
]


def grid(model: str) -> tuple[np.ndarray, np.ndarray]:
    """Every (batch, context) pair of the test grid, contexts capped by the model's window."""
    batch, context = np.meshgrid(BATCHES, CONTEXTS, indexing="ij")
    window = load_model(model).context_window
    context = np.minimum(context, window - 1) if window is not None else context
    return batch.ravel(), context.ravel()


def assert_matches_scalar(model: str, system: str | SystemSpec, parallelism: Parallelism | None,
                          precision: str) -> None:
    batch, context = grid(model)
    frame = estimate_grid(model, system, batch, context, precision=precision, parallelism=parallelism)
    assert len(frame) == batch.size
    assert (frame["batch"].to_numpy() == batch).all() and (frame["context"].to_numpy() == context).all()
    for index, (b, c) in enumerate(zip(batch, context, strict=True)):
        want = estimate(model, system, int(b), context=int(c), precision=precision, parallelism=parallelism)
        row = frame.iloc[index]
        for column in FLOAT_COLUMNS:
            assert row[column] == pytest.approx(getattr(want, column), rel=1e-9), (b, c, column)
        assert bool(row["fits"]) == want.fits, (b, c)
        assert row["reason"] == want.reason, (b, c)


@pytest.mark.parametrize(("model", "system", "parallelism", "precision"), CASES)
def test_every_column_equals_the_scalar_estimate(model: str, system: str, parallelism: Parallelism | None,
                                                 precision: str) -> None:
    assert_matches_scalar(model, system, parallelism, precision)


def test_the_grid_includes_points_that_do_not_fit() -> None:
    batch, context = grid("llama3-8b")
    frame = estimate_grid("llama3-8b", "h100-sxm", batch, context)
    assert frame["fits"].any() and not frame["fits"].all()
    assert (frame.loc[~frame["fits"], "reason"].str.startswith("needs ")).all()
    assert (frame.loc[frame["fits"], "reason"] == "").all()


def test_a_system_object_with_mapper_options_is_priced_as_the_scalar_path() -> None:
    # the eager-attention software variant rewrites attention into four ops (mappers/gpu.py)
    system = dataclasses.replace(load_system("h100-sxm"), mapper_options={"software": "hf-pytorch-2023"})
    assert_matches_scalar("llama3-8b", system, None, "bf16")


@pytest.mark.parametrize(("model", "system"), [("mixtral-8x7b", "h100-sxm"), ("llama3-8b", "neupims"),
                                               ("llama3-8b", "npu-only"), ("llama3-8b", "2x8-duplex")])
def test_outside_the_scope_raises_not_vectorizable(model: str, system: str) -> None:
    with pytest.raises(NotVectorizable):
        estimate_grid(model, system, np.array([1, 2]), np.array([10, 20]))
    assert issubclass(NotVectorizable, ArgumentError)


def test_step_time_does_not_decrease_with_batch_or_context() -> None:
    batches = np.unique(np.geomspace(1, 1024, 60).astype(int))
    contexts = np.arange(1, 8192, 97)
    batch, context = np.meshgrid(batches, contexts, indexing="ij")
    frame = estimate_grid("llama3-70b", "h100-sxm", batch.ravel(), context.ravel(), parallelism=Parallelism(tp=8))
    time = frame["step_time_s"].to_numpy().reshape(batch.shape)
    assert (np.diff(time, axis=0) >= 0).all()
    assert (np.diff(time, axis=1) >= 0).all()


def test_points_the_scalar_path_refuses_raise_argument_errors() -> None:
    for batches, contexts in (([0], [5]), ([2], [-1]), ([2], [0]), ([2], [8192]), ([2.5], [1]), ([1, 2], [3])):
        with pytest.raises(ArgumentError):
            estimate_grid("llama3-8b", "h100-sxm", batches, contexts)
    with pytest.raises(ArgumentError):
        estimate("llama3-8b", "h100-sxm", 2, context=8192)
    assert len(estimate_grid("llama3-8b", "h100-sxm", [], [])) == 0


def test_the_extraction_is_cached_per_model_system_precision_and_parallelism() -> None:
    estimate_grid("llama3-8b", "h100-sxm", [1], [1])
    before = grid_form.cache_info()
    estimate_grid("llama3-8b", "h100-sxm", [4, 5], [100, 200])
    after = grid_form.cache_info()
    assert after.hits == before.hits + 1 and after.misses == before.misses


def test_vectorized_tile_padding_equals_padded_rows() -> None:
    rows = np.arange(0, 5000)
    for tile_m in (0, 16, 64, 256, 4096):
        want = [padded_rows(int(m), tile_m) for m in rows]
        assert (padded_rows_many(rows.astype(float), tile_m) == want).all()


def test_a_vectorized_price_that_drifts_from_evaluate_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import decodex.sim.grid_pricing as pricing

    # a pricing formula that forgets the overlap exponent must fail the check against evaluate
    monkeypatch.setattr(pricing, "_overlap", lambda compute, memory, exponent: np.maximum(compute, memory))
    grid_form.cache_clear()
    try:
        with pytest.raises(NotVectorizable, match=r"disagrees with sim\.estimate\.evaluate"):
            estimate_grid("llama3-8b", "h100-sxm", [1], [1])
    finally:
        grid_form.cache_clear()
