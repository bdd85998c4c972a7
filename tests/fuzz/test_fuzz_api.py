"""The Python API refuses bad input with one DecodexError line, never another exception type.

Part one is the census of issue 19 as regressions: each call below raised a numpy, Attribute,
Type or Value error (or was silently accepted, truncated, or ran without a bound) before; now it
raises the documented error type, on one line naming the argument. Part two fuzzes the entry
points with hypothesis: arguments drawn from small valid values and nasty ones end in a result
whose numbers are finite, or in a DecodexError. Part three: trace files with unexpected columns.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import decodex as dx
from decodex.core.errors import ArgumentError, DecodexError, SpecError
from decodex.sim.serving.workload import RATE_RANGE, Lengths

MODEL, SYSTEM = "llama3-8b", "h100-sxm"
MOE = "mixtral-8x7b"
NAN, INF = float("nan"), float("inf")
SMALL = dx.Workload.preset("fixed", 5.0, input_len=16, output_len=4)


def _serve(**options: Any) -> Any:
    return dx.serve(MODEL, SYSTEM, SMALL, **({"requests": 3} | options))


# (call, the text the message must hold: the argument's name)
BAD_CALLS: list[tuple[str, Callable[[], Any], str]] = [
    # context and batch: whole numbers (1.7 was truncated to 1), bools refused
    ("context=1.7", lambda: dx.estimate(MODEL, SYSTEM, 1, context=1.7), "context"),
    ("context=0 (a decode follows a prompt)", lambda: dx.estimate(MODEL, SYSTEM, 1, context=0), "context"),
    ("context=[5, 0]", lambda: dx.estimate(MODEL, SYSTEM, 2, context=[5, 0]), "context"),
    ("context=True", lambda: dx.estimate(MODEL, SYSTEM, 1, context=True), "context"),
    ("batch=2.5", lambda: dx.estimate(MODEL, SYSTEM, 2.5), "batch"),
    ("batch=nan", lambda: dx.estimate(MODEL, SYSTEM, NAN), "batch"),
    ("batch=array", lambda: dx.estimate(MODEL, SYSTEM, np.array([1, 2])), "batch"),
    # model and system of the wrong type
    ("model=None", lambda: dx.estimate(None, SYSTEM, 1), "model"),
    ("model=1", lambda: dx.estimate(1, SYSTEM, 1), "model"),
    ("model={}", lambda: dx.estimate({}, SYSTEM, 1), "model"),
    ("model=''", lambda: dx.estimate("", SYSTEM, 1), "model"),
    ("model=bytes", lambda: dx.load_model(b"llama3-8b"), "model"),
    ("system=None", lambda: dx.estimate(MODEL, None, 1), "system"),
    ("system=[]", lambda: dx.estimate(MODEL, [], 1), "system"),
    ("system=3.5", lambda: dx.load_system(3.5), "system"),
    ("system=''", lambda: dx.load_system(""), "system"),
    # precision, parallelism, routing, mapper of the wrong type (AttributeError before)
    ("precision=None", lambda: dx.estimate(MODEL, SYSTEM, 1, precision=None), "precision"),
    ("precision=1", lambda: dx.Precision.parse(1), "precision"),
    ("precision={}", lambda: dx.estimate(MODEL, SYSTEM, 1, precision={}), "precision"),
    ("parallelism=1", lambda: dx.estimate(MODEL, SYSTEM, 1, parallelism=1), "parallelism"),
    ("parallelism={}", lambda: dx.estimate(MODEL, SYSTEM, 1, parallelism={}), "parallelism"),
    ("routing='x'", lambda: dx.estimate(MOE, SYSTEM, 1, routing="x"), "routing"),
    ("routing=[]", lambda: dx.estimate(MOE, SYSTEM, 1, routing=[]), "routing"),
    ("mapper=''", lambda: dx.estimate(MODEL, SYSTEM, 1, mapper=""), "mapper"),
    ("mapper=[]", lambda: dx.estimate(MODEL, SYSTEM, 1, mapper=[]), "mapper"),
    # mapper options: microbatches=0 fell back to the default, -1 ran, 'x' was a TypeError
    ("microbatches=0", lambda: dx.estimate(MODEL, SYSTEM, 1, microbatches=0), "microbatches"),
    ("microbatches=-1", lambda: dx.estimate(MODEL, SYSTEM, 1, microbatches=-1), "microbatches"),
    ("microbatches='x'", lambda: dx.estimate(MODEL, SYSTEM, 1, microbatches="x"), "microbatches"),
    ("microbatches=1.5", lambda: dx.simulate(MODEL, SYSTEM, 1, microbatches=1.5), "microbatches"),
    ("rounds=10**9", lambda: dx.simulate(MODEL, SYSTEM, 1, rounds=10**9), "rounds"),
    ("software=3", lambda: dx.estimate(MODEL, SYSTEM, 1, software=3), "software"),
    ("microbatch (typo)", lambda: dx.estimate(MODEL, SYSTEM, 1, microbatch=2), "did you mean 'microbatches'"),
    ("fold='no'", lambda: dx.simulate(MODEL, SYSTEM, 1, fold="no"), "fold"),
    ("omit='x'", lambda: dx.plan_step(MODEL, SYSTEM, 1, omit="x"), "omit"),
    ("omit=3", lambda: dx.plan_step(MODEL, SYSTEM, 1, omit=3), "omit"),
    ("omit=['nope']", lambda: dx.plan_step(MODEL, SYSTEM, 1, omit=["nope"]), "omit"),
    # Parallelism, Routing, Precision, Sparsity, Batch constructors
    ("Parallelism(tp=1.5)", lambda: dx.Parallelism(tp=1.5), "parallelism.tp"),
    ("Parallelism(dp_tokens='yes')", lambda: dx.Parallelism(dp_tokens="yes"), "dp_tokens"),
    ("Routing(skew='1')", lambda: dx.Routing("zipf", skew="1"), "routing.skew"),
    ("Routing(skew=None)", lambda: dx.Routing("zipf", skew=None), "routing.skew"),
    ("Routing(skew=nan)", lambda: dx.Routing("zipf", skew=NAN), "routing.skew"),
    ("Routing(seed=-1)", lambda: dx.Routing("zipf", seed=-1), "routing.seed"),
    ("Routing(seed=1.5)", lambda: dx.Routing("zipf", seed=1.5), "routing.seed"),
    ("Routing(seed=None)", lambda: dx.Routing(seed=None), "routing.seed"),
    ("Routing(seed=2**70)", lambda: dx.Routing(seed=2**70), "routing.seed"),
    ("Routing(kind=None)", lambda: dx.Routing(None), "routing.kind"),
    ("Precision(weight_bits='4')", lambda: dx.Precision(weight_bits="4"), "wbits"),
    ("Precision(weight_bits=nan)", lambda: dx.Precision(weight_bits=NAN), "wbits"),
    ("Precision(weights=3)", lambda: dx.Precision(weights=3), "precision.w"),
    ("Precision(weights='fp7')", lambda: dx.Precision(weights="fp7"), "precision.w"),
    ("Precision(sparsity='2:4')", lambda: dx.Precision(sparsity="2:4"), "sparsity"),
    ("Sparsity('2', 4)", lambda: dx.Sparsity("2", 4), "sparsity"),
    ("Sparsity(1.5, 4)", lambda: dx.Sparsity(1.5, 4), "sparsity"),
    ("Sparsity.parse(None)", lambda: dx.Sparsity.parse(None), "sparsity"),
    ("Batch(routing=1)", lambda: dx.Batch([1], [1], [True], routing=1), "routing"),
    ("Batch.decode(routing=3)", lambda: dx.Batch.decode(1, 1, routing=3), "routing"),
    ("Batch(emits_token=['x'])", lambda: dx.Batch([1], [1], ["x"]), "emits_token"),
    ("Batch(emits_token=[2])", lambda: dx.Batch([1], [1], [2]), "emits_token"),
    ("Batch.mixed(completes=['no'])", lambda: dx.Batch.mixed([1], [5], prefill_completes=["no"]),
     "prefill_completes"),
    # Workload: rate finite in RATE_RANGE, trace a path, names strings
    ("Workload(rate=1e-9)", lambda: dx.Workload(rate=1e-9), "rate"),
    ("Workload(rate=1e10)", lambda: dx.Workload(rate=1e10), "rate"),
    ("Workload(rate=nan)", lambda: dx.Workload(rate=NAN), "rate"),
    ("Workload(rate='5')", lambda: dx.Workload(rate="5"), "rate"),
    ("Workload(rate=True)", lambda: dx.Workload(rate=True), "rate"),
    ("Workload(name=None)", lambda: dx.Workload(name=None), "workload.name"),
    ("from_trace(None)", lambda: dx.Workload.from_trace(None), "workload.trace"),
    ("from_trace(5)", lambda: dx.Workload.from_trace(5), "workload.trace"),
    ("Workload(trace=3)", lambda: dx.Workload(arrival="trace", trace=3), "workload.trace"),
    ("preset(None)", lambda: dx.Workload.preset(None, 1.0), "dataset"),
    ("Lengths(mean='5')", lambda: Lengths("fixed", mean="5"), "lengths.mean"),
    ("Lengths(mean=None)", lambda: Lengths("fixed", mean=None), "lengths.mean"),
    # serve: every argument checked before any work
    ("serve kv_blocks=10**30", lambda: _serve(kv_blocks=10**30), "kv_blocks"),
    ("serve kv_blocks=1.5", lambda: _serve(kv_blocks=1.5), "kv_blocks"),
    ("serve routing=3", lambda: _serve(routing=3), "routing"),
    ("serve routing='zipf'", lambda: _serve(routing="zipf"), "routing"),
    ("serve precision=None", lambda: _serve(precision=None), "precision"),
    ("serve parallelism=3", lambda: _serve(parallelism=3), "parallelism"),
    ("serve requests=1.5", lambda: _serve(requests=1.5), "requests"),
    ("serve scheduler=3", lambda: _serve(scheduler=3), "scheduler"),
    ("serve chunk=0", lambda: _serve(chunk=0), "chunk"),
    ("serve block_size='16'", lambda: _serve(block_size="16"), "block_size"),
    ("serve software=None", lambda: _serve(software=None), "software"),
    ("serve software='vlm'", lambda: _serve(software="vlm"), "software"),
    ("serve memory_utilization=nan", lambda: _serve(memory_utilization=NAN), "memory_utilization"),
    ("serve seed=-1", lambda: _serve(seed=-1), "seed"),
    ("serve bucket_width=None", lambda: _serve(bucket_width=None), "bucket_width"),
    ("serve model=None", lambda: dx.serve(None, SYSTEM, SMALL, requests=3), "model"),
    ("serve system=3", lambda: dx.serve(MODEL, 3, SMALL, requests=3), "system"),
    # sweep wrapper
    ("sweep(None)", lambda: dx.sweep(None), "space"),
    ("sweep([])", lambda: dx.sweep([]), "space"),
    ("sweep(mode=3)", lambda: dx.sweep({"model": MODEL}, mode=3), "mode"),
    ("sweep(bogus=1)", lambda: dx.sweep({"model": MODEL}, bogus=1), "bogus"),
    # pareto_front of the wrong types (AttributeError before)
    ("pareto_front(None)", lambda: dx.pareto_front(None, {"a": "max"}), "frame"),
    ("pareto_front(objectives=list)", lambda: dx.pareto_front(pd.DataFrame({"a": [1.0]}), ["a"]), "objectives"),
]


@pytest.mark.parametrize(("label", "call", "needle"), BAD_CALLS, ids=[case[0] for case in BAD_CALLS])
def test_bad_input_is_one_decodex_error_line(label: str, call: Callable[[], Any], needle: str) -> None:
    with pytest.raises(DecodexError) as err:
        call()
    message = str(err.value)
    assert needle in message, (label, message)
    assert "\n" not in message and len(message) < 2000, (label, message)


def test_argument_errors_are_argument_errors() -> None:
    """A bad argument is an ArgumentError (not only some DecodexError)."""
    for call in (lambda: dx.Routing(seed=-1), lambda: dx.Parallelism(tp=0), lambda: dx.Workload(rate=0.0),
                 lambda: dx.estimate(MODEL, SYSTEM, 1, microbatches=0), lambda: dx.load_model(3)):
        with pytest.raises(ArgumentError):
            call()


def test_whole_floats_and_numpy_integers_are_accepted() -> None:
    """Integral floats (2048.0) and numpy integers are whole numbers; the result is the same."""
    plain = dx.estimate(MODEL, SYSTEM, 4, context=2048)
    assert dx.estimate(MODEL, SYSTEM, 4.0, context=2048.0).step_time_s == plain.step_time_s
    assert dx.estimate(MODEL, SYSTEM, np.int64(4), context=np.int32(2048)).step_time_s == plain.step_time_s
    assert dx.Parallelism(tp=np.int64(2)).tp == 2 and type(dx.Parallelism(tp=np.int64(2)).tp) is int
    assert dx.Routing("zipf", skew=np.float32(1.5), seed=np.uint8(3)) == dx.Routing("zipf", skew=1.5, seed=3)
    assert dx.Precision(weights="int4").weights is dx.DType.INT4  # a format name is parsed
    assert dx.Batch([5], [1], [1]).emits_token.tolist() == [True]  # 0/1 flags
    assert dx.Workload(rate=RATE_RANGE[0]).rate == RATE_RANGE[0] and dx.Workload(rate=RATE_RANGE[1])


# ---------------------------------------------------------------------------------------------
# hypothesis: valid and nasty arguments end in a finite result or a DecodexError

NASTY: list[Any] = [None, -1, 0, NAN, INF, -INF, 10**30, 1.7, "8", "", [1, 2], True, {}, b"x", object()]
VALID_STEP: dict[str, st.SearchStrategy[Any]] = {
    "model": st.sampled_from(["llama3-8b", "gpt3-7b", "opt-6.7b", "mixtral-8x7b"]),
    "system": st.sampled_from(["h100-sxm", "a100-80g", "8x-h100-sxm", "cpu-host"]),
    "batch": st.sampled_from([1, 2, 8, 64, 3.0]),
    "context": st.one_of(st.sampled_from([0, 1, 100, 2048, 4096.0]), st.lists(st.integers(0, 4000), min_size=1,
                                                                             max_size=3)),
    "precision": st.sampled_from(["bf16", "fp8", "w4a16", "w=int4,a=bf16,kv=fp8", "wbits=4.1", "sparsity=2:4"]),
    "parallelism": st.builds(dx.Parallelism, tp=st.sampled_from([1, 2, 4, 8]), pp=st.sampled_from([1, 2])),
    "routing": st.builds(dx.Routing, st.sampled_from(["uniform", "zipf"]), skew=st.sampled_from([0.0, 1.0, 2.5]),
                         seed=st.sampled_from([0, 7])),
    "microbatches": st.sampled_from([1, 2]),
}
NASTY_STEP: dict[str, st.SearchStrategy[Any]] = {
    "model": st.sampled_from(["nope-model", "", "llama3-8b.json", 7, None, Path("/")]),
    "system": st.sampled_from(["nope-system", "", 3.5, None, {}]),
    "precision": st.sampled_from(["nonsense", "w=int3", "wbits=nan", "sparsity=5:4", "", 1, None]),
}
OPTIONAL_STEP = ("context", "precision", "parallelism", "routing", "microbatches")


def _finite_step(result: Any) -> None:
    assert math.isfinite(result.step_time_s) and result.step_time_s > 0
    assert math.isfinite(result.tokens_per_s) and result.tokens_per_s > 0
    assert math.isfinite(result.energy_j) and result.energy_j >= 0
    assert math.isfinite(result.memory_required_bytes) and result.memory_required_bytes > 0


def _argument(draw: st.DrawFn, name: str, valid: dict[str, st.SearchStrategy[Any]], bad: str | None,
              nasty: dict[str, st.SearchStrategy[Any]] | None = None) -> Any:
    """A valid value of argument ``name``, or a nasty one when ``name`` is the one chosen ``bad``."""
    if name != bad:
        return draw(valid[name])
    return draw(st.one_of(st.sampled_from(NASTY), (nasty or {}).get(name, st.sampled_from(NASTY))))


@st.composite
def step_calls(draw: st.DrawFn) -> tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]:
    """estimate or simulate with valid arguments but at most one nasty one (none in 1 call of 3)."""
    function = draw(st.sampled_from([dx.estimate, dx.estimate, dx.simulate]))
    bad = draw(st.sampled_from([None] * 5 + list(VALID_STEP)))
    args = tuple(_argument(draw, name, VALID_STEP, bad, NASTY_STEP) for name in ("model", "system", "batch"))
    kwargs = {name: _argument(draw, name, VALID_STEP, bad, NASTY_STEP) for name in OPTIONAL_STEP
              if name == bad or draw(st.booleans())}
    return function, args, kwargs


@settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(call=step_calls())
def test_estimate_and_simulate_return_finite_results_or_decodex_errors(
        call: tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]) -> None:
    function, args, kwargs = call
    try:
        result = function(*args, **kwargs)
    except DecodexError as err:
        assert "\n" not in str(err)
        return
    _finite_step(result)


VALID_SERVE: dict[str, st.SearchStrategy[Any]] = {
    "workload": st.builds(dx.Workload.preset, st.sampled_from(["fixed", "sharegpt", "alpaca"]),
                          st.sampled_from([1.0, 50.0, 1e-6]), input_len=st.sampled_from([None, 8, 64]),
                          output_len=st.sampled_from([None, 2, 8])),
    "requests": st.sampled_from([1, 5, 12]),
    "scheduler": st.sampled_from(["static", "continuous", "chunked"]), "chunk": st.sampled_from([64, 512]),
    "max_batch": st.sampled_from([1, 8]), "block_size": st.sampled_from([1, 16]),
    "memory_utilization": st.sampled_from([0.5, 0.9]), "kv_blocks": st.sampled_from([None, 64, 100000]),
    "seed": st.sampled_from([0, 3]), "bucket_width": st.sampled_from([0.0, 0.05]),
    "slo_ttft_s": st.sampled_from([0.5]), "max_prefill_tokens": st.sampled_from([None, 4096]),
}


@st.composite
def serve_calls(draw: st.DrawFn) -> dict[str, Any]:
    """serve's keyword arguments: valid but at most one nasty (none in about 1 call of 2)."""
    bad = draw(st.sampled_from([None] * 12 + list(VALID_SERVE)))
    return {name: _argument(draw, name, VALID_SERVE, bad) for name in VALID_SERVE
            if name in ("workload", "requests", bad) or draw(st.booleans())}


@settings(max_examples=20, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(options=serve_calls())
def test_serve_returns_finite_results_or_decodex_errors(options: dict[str, Any]) -> None:
    workload = options.pop("workload")
    try:
        result = dx.serve("llama3-8b", "h100-sxm", workload, **options)
    except DecodexError as err:
        assert "\n" not in str(err)
        return
    summary = result.summary()
    assert math.isfinite(summary["makespan_s"]) and summary["makespan_s"] > 0
    assert math.isfinite(summary["throughput_tokens_per_s"]) and summary["throughput_tokens_per_s"] > 0
    assert np.isfinite(result.first_token_s).all() and np.isfinite(result.finish_s).all()


def _maybe(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly valid values, sometimes a nasty one."""
    return st.one_of(valid, valid, valid, st.sampled_from(NASTY))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(kind=_maybe(st.sampled_from(["uniform", "zipf"])), skew=_maybe(st.floats(0, 10)),
       seed=_maybe(st.integers(0, 2**63 - 1)), tp=_maybe(st.integers(1, 16)), ep=_maybe(st.sampled_from([1, 2])),
       dp=_maybe(st.booleans()), wbits=_maybe(st.one_of(st.none(), st.floats(1, 32))),
       rate=_maybe(st.floats(RATE_RANGE[0], RATE_RANGE[1])), mean=_maybe(st.floats(1, 1e6)),
       sigma=_maybe(st.floats(0, 5)))
def test_constructors_build_a_value_or_raise_decodex_error(kind: Any, skew: Any, seed: Any, tp: Any, ep: Any,
                                                           dp: Any, wbits: Any, rate: Any, mean: Any,
                                                           sigma: Any) -> None:
    """A constructor either refuses its arguments (one DecodexError line) or holds checked values."""
    checks: list[tuple[Callable[[], Any], Callable[[Any], bool]]] = [
        (lambda: dx.Routing(kind, skew=skew, seed=seed),
         lambda r: r.kind in ("uniform", "zipf") and type(r.skew) is float and 0 <= r.skew <= 10
         and type(r.seed) is int and 0 <= r.seed < 2**63),
        (lambda: dx.Parallelism(tp=tp, ep=ep, dp_tokens=dp),
         lambda p: type(p.tp) is int and 1 <= p.tp <= 4096 and p.tp % p.ep == 0 and type(p.dp_tokens) is bool),
        (lambda: dx.Precision(weight_bits=wbits),
         lambda p: p.weight_bits is None or (type(p.weight_bits) is float and 1 <= p.weight_bits <= 32)),
        (lambda: dx.Workload(rate=rate), lambda w: RATE_RANGE[0] <= w.rate <= RATE_RANGE[1]),
        (lambda: Lengths.lognormal(mean, sigma), lambda n: math.isfinite(n.mean) and 0 <= n.sigma <= 5),
        (lambda: dx.Batch.decode(tp, seed),
         lambda b: b.num_requests >= 1 and b.context_lens.dtype == np.int64 and (b.context_lens >= 0).all()),
    ]
    for make, holds in checks:
        try:
            value = make()
        except DecodexError as err:
            assert "\n" not in str(err)
            continue
        assert holds(value), value


# ---------------------------------------------------------------------------------------------
# trace files: exactly the expected columns; every problem names the file and the line

TRACE_HEADER = "arrival_s,input_tokens,output_tokens\n"


@pytest.mark.parametrize(("text", "needles"), [
    ("arrival_s,input_tokens,output_tokens,extra\n0,10,10,1\n",
     ["line 1 (header)", "'extra'", "arrival_s, input_tokens"]),
    (TRACE_HEADER + "0,10,10,1\n1,10,10,1\n", ["line 2", "more fields than the header's 3"]),  # shifted before
    (TRACE_HEADER + "0,10,10\n\n1,10,10,1\n", ["line 4", "more fields"]),
    (TRACE_HEADER + "0,10,10\n1,10,10,1,2\n", ["line 3", "5 fields"]),
    ("arrival_s,input_tokens,output_tokens,arrival_s\n0,1,1,1\n", ["appear twice", "arrival_s"]),
    (TRACE_HEADER + "\n0,10,3\n\n1,ten,3\n", ["input_tokens", "line 5", "'ten'"]),
    (TRACE_HEADER + "0,10\n", ["output_tokens", "line 2", "no value"]),
    ("", ["empty"]),
    (TRACE_HEADER, ["no rows"]),
])
def test_trace_with_unexpected_columns_names_file_and_line(tmp_path: Path, text: str, needles: list[str]) -> None:
    path = tmp_path / "trace.csv"
    path.write_text(text)
    with pytest.raises(SpecError) as err:
        dx.Workload.from_trace(path).generate()
    message = str(err.value)
    assert str(path) in message and "\n" not in message
    for needle in needles:
        assert needle in message, (needle, message)


def test_trace_columns_in_any_order_blank_lines_and_trailing_commas_are_read(tmp_path: Path) -> None:
    path = tmp_path / "trace.csv"
    path.write_text("input_tokens, arrival_s ,output_tokens\r\n10,0.5,3,\r\n\r\n20,0.0,4\r\n")
    arrivals = dx.Workload.from_trace(path).generate()
    assert arrivals.arrival_s.tolist() == [0.0, 0.5]
    assert arrivals.input_tokens.tolist() == [20, 10] and arrivals.output_tokens.tolist() == [4, 3]


def test_trace_that_is_not_utf8_or_a_folder_is_one_spec_error(tmp_path: Path) -> None:
    latin = tmp_path / "latin.csv"
    latin.write_bytes((TRACE_HEADER + "0,1,caf\xe9\n").encode("latin-1"))
    for path in (latin, tmp_path):
        with pytest.raises(SpecError, match=str(path)):
            dx.Workload.from_trace(path).generate()
