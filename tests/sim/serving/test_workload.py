"""Workload specs: arrival processes, length distributions, presets and trace files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from decodex.core.errors import ArgumentError, DecodexError
from decodex.sim.serving import Lengths, Workload
from decodex.workloads.batch import Batch
from decodex.workloads.builder import build_step_graph
from decodex.workloads.catalog import load_model
from decodex.workloads.parallelism import Parallelism
from decodex.workloads.precision import Precision


def test_lognormal_keeps_the_mean() -> None:
    lengths = Lengths.lognormal(415.0, sigma=0.8)
    draws = lengths.sample(np.random.default_rng(1), 400_000)
    assert draws.min() >= 1
    assert draws.mean() == pytest.approx(415.0, rel=0.01)


def test_uniform_and_fixed_lengths() -> None:
    rng = np.random.default_rng(0)
    uniform = Lengths.uniform(10, 20).sample(rng, 10_000)
    assert uniform.min() == 10 and uniform.max() == 20
    assert (Lengths.fixed(7).sample(rng, 5) == 7).all()
    assert (Lengths.lognormal(1000.0, 2.0, max_tokens=50).sample(rng, 1000) <= 50).all()


def test_poisson_arrivals_have_the_rate_and_are_deterministic() -> None:
    workload = Workload.preset("sharegpt", rate=4.0)
    a = workload.generate(20_000, seed=3)
    b = workload.generate(20_000, seed=3)
    c = workload.generate(20_000, seed=4)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.arrival_s, c.arrival_s)
    assert np.all(np.diff(a.arrival_s) >= 0)
    assert 1 / np.diff(a.arrival_s).mean() == pytest.approx(4.0, rel=0.03)
    assert a.input_tokens.mean() == pytest.approx(80, rel=0.05)
    assert a.output_tokens.mean() == pytest.approx(296, rel=0.05)


def test_fixed_arrivals_are_evenly_spaced() -> None:
    arrivals = Workload.preset("fixed", rate=2.0, arrival="fixed", input_len=100, output_len=10).generate(5)
    np.testing.assert_allclose(arrivals.arrival_s, [0.0, 0.5, 1.0, 1.5, 2.0])
    assert (arrivals.input_tokens == 100).all() and (arrivals.output_tokens == 10).all()


def test_presets_and_context_cap() -> None:
    workload = Workload.preset("sharegpt-long", rate=1.0)
    free = workload.generate(50_000, seed=0)
    assert free.input_tokens.mean() == pytest.approx(1730, rel=0.03)
    assert free.output_tokens.mean() == pytest.approx(415, rel=0.03)
    capped = workload.generate(50_000, seed=0, max_total_tokens=8192)
    assert (capped.input_tokens + capped.output_tokens <= 8192).all()
    assert (capped.input_tokens >= 1).all() and (capped.output_tokens >= 1).all()
    assert (capped.input_tokens <= free.input_tokens).all()
    alpaca = Workload.preset("alpaca", rate=1.0).generate(50_000)
    assert alpaca.input_tokens.mean() == pytest.approx(12, rel=0.05)
    assert alpaca.output_tokens.mean() == pytest.approx(56, rel=0.05)


def test_trace_file_loads_sorted(tmp_path: Path) -> None:
    path = tmp_path / "trace.csv"
    path.write_text("arrival_s,input_tokens,output_tokens\n0.5,10,3\n0.0,20,4\n1.25,30,5\n")
    arrivals = Workload.from_trace(path).generate()
    np.testing.assert_allclose(arrivals.arrival_s, [0.0, 0.5, 1.25])
    np.testing.assert_array_equal(arrivals.input_tokens, [20, 10, 30])
    np.testing.assert_array_equal(arrivals.output_tokens, [4, 3, 5])
    assert Workload.from_trace(path).generate(2).arrival_s.size == 2
    with pytest.raises(ArgumentError, match="requests"):
        Workload.from_trace(path).generate(4)


@pytest.mark.parametrize(("text", "column"), [
    ("arrival_s,input_tokens\n0.0,10\n", "output_tokens"),
    ("arrival_s,input_tokens,output_tokens\n0.0,ten,3\n", "input_tokens"),
    ("arrival_s,input_tokens,output_tokens\n-1.0,10,3\n", "arrival_s"),
    ("arrival_s,input_tokens,output_tokens\n0.0,10,0\n", "output_tokens"),
])
def test_bad_trace_names_file_and_column(tmp_path: Path, text: str, column: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DecodexError) as err:
        Workload.from_trace(path).generate()
    assert str(path) in str(err.value) and column in str(err.value)


def test_missing_trace_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(DecodexError, match=r"nope\.csv"):
        Workload.from_trace(tmp_path / "nope.csv").generate()


@pytest.mark.parametrize("make", [
    lambda: Workload.preset("sharegpt", rate=0.0),
    lambda: Workload.preset("sharegpt", rate=-1.0),
    lambda: Workload.preset("nope", rate=1.0),
    lambda: Workload(arrival="bursty"),
    lambda: Lengths.uniform(20, 10),
    lambda: Lengths.fixed(0),
    lambda: Lengths.lognormal(100.0, sigma=-1.0),
    lambda: Workload.preset("fixed", rate=1.0).generate(0),
])
def test_bad_workload_arguments(make: object) -> None:
    with pytest.raises(ArgumentError):
        make()  # type: ignore[operator]


def test_normal_lengths_have_the_mean_and_spread() -> None:
    values = Lengths.normal(1024, 0.25).sample(np.random.default_rng(0), 50_000)
    assert abs(values.mean() / 1024 - 1) < 0.01
    assert abs(values.std() / 256 - 1) < 0.02
    assert values.min() >= 1
    with pytest.raises(ArgumentError, match="sigma"):
        Lengths.normal(100, -1.0)


def test_relative_position_models_have_no_context_window() -> None:
    glam, opt = load_model("glam-143b"), load_model("opt-66b")
    assert glam.context_window is None and opt.context_window == 2048
    build_step_graph(glam, Batch.decode(2, 8000), Precision.parse("fp16"), Parallelism(tp=8))  # no limit
    with pytest.raises(ArgumentError, match="max_position_embeddings=2048"):
        build_step_graph(opt, Batch.decode(2, 3000), Precision.parse("fp16"), Parallelism(tp=4))
