"""The scalar fast path of ``estimate`` (sim.point_estimate) returns what the general path returns."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest

from decodex.core.errors import ArgumentError, DecodexError
from decodex.hw_models.roofline import RooflineUnit
from decodex.hw_models.system import load_system
from decodex.sim import point_estimate as pe
from decodex.sim.estimate import FAST_PATH, estimate, evaluate, plan_step
from decodex.sim.grid_extract import NotVectorizable
from decodex.workloads.batch import Batch, Routing
from decodex.workloads.catalog import load_model
from decodex.workloads.parallelism import Parallelism
from decodex.workloads.precision import Precision

CASES = [  # (model, system, precision, parallelism)
    ("llama3-8b", "h100-sxm", "bf16", Parallelism()),
    ("llama2-7b", "a100-80g", "w8a16", Parallelism()),
    ("llama3-70b", "8x-h100-sxm", "w4a16", Parallelism(tp=8)),
    ("gpt3-7b", "h200", "bf16", Parallelism(tp=1)),
    ("opt-6.7b", "4x-h100-sxm", "bf16", Parallelism(tp=2, pp=2)),
    ("llama3.1-8b", "cpu-host", "bf16", Parallelism()),
    ("llama2-13b", "2x8-h100-sxm", "fp8", Parallelism(tp=8, pp=2)),
]


def _reference(model: str, system: str, precision: str, par: Parallelism, batch: int, context: int):
    plan = plan_step(model, system, Batch.decode(batch, context), precision=precision, parallelism=par)
    return evaluate(plan)


_real_price = pe.price_point
_real_build = pe.build_point_form


@pytest.fixture(autouse=True)
def _fresh_cache(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(FAST_PATH, "armed", True)  # as after a process's first estimate
    pe.clear_cache()
    yield
    pe.clear_cache()


def test_the_first_estimate_of_a_process_does_not_load_the_fast_path() -> None:
    code = ("import sys; from decodex.sim.estimate import estimate; estimate('llama3-8b', 'h100-sxm', 8); "
            "print('decodex.sim.point_estimate' in sys.modules); estimate('llama3-8b', 'h100-sxm', 8); "
            "print('decodex.sim.point_estimate' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True"]


@pytest.mark.parametrize(("model", "system", "precision", "par"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_fast_path_equals_the_general_path(model: str, system: str, precision: str, par: Parallelism) -> None:
    """Every field and every op record within 1e-12 at random points (batch 1-4096, context up to
    the model's window) and at the corners of the range."""
    form = None
    for _ in range(2):  # built on the second sighting
        form = pe.cached_form(load_model(model), load_system(system), Precision.parse(precision), par)
    assert form is not None
    rng = np.random.default_rng(11)
    points = [(form.min_batch, 1), (form.min_batch, form.max_context), (4096, form.max_context)]
    points += [(int(b), int(c)) for b, c in zip(rng.integers(form.min_batch, 4097, 6),
                                                 rng.integers(1, form.max_context + 1, 6), strict=True)]
    for batch, context in points:
        fast = pe.point_estimate(model, system, batch, context, precision, par)
        assert fast is not None
        want = _reference(model, system, precision, par, batch, context)
        assert pe.differences(fast, want) == [], (batch, context)
        assert fast.step_time_s > 0 and len(fast.records) == len(want.records)


def test_estimate_takes_the_fast_path_from_the_second_call(monkeypatch: pytest.MonkeyPatch) -> None:
    built, priced = [], []
    monkeypatch.setattr(pe, "build_point_form", lambda *a: built.append(a) or _real_build(*a))
    monkeypatch.setattr(pe, "price_point", lambda *a: priced.append(a[1:]) or _real_price(*a))
    first = estimate("llama3-8b", "h100-sxm", 8, context=2048)
    assert built == [] and priced == []  # one estimate does not pay for the extraction
    second = estimate("llama3-8b", "h100-sxm", 16, context=100)
    third = estimate("llama3-8b", "h100-sxm", 8, context=2048)
    assert len(built) == 1 and priced[-2:] == [(16, 100), (8, 2048)]
    assert pe.differences(third, first) == []
    assert second.batch_size == 16 and second.mean_context == 100.0


@pytest.mark.parametrize("call", [
    dict(model="mixtral-8x7b", system="h100-sxm", batch=8),  # MoE routing draws
    dict(model="llama3-8b", system="neupims", batch=8),  # another mapper
    dict(model="llama3-8b", system="h100-sxm", batch=8, context=np.array([100] * 8)),  # per-request contexts
    dict(model="llama3-8b", system="h100-sxm", batch=np.int64(8)),
    dict(model="llama2-7b", system="h100-sxm", batch=8, context=4096),  # beyond the window: the general path says so
    dict(model="llama3-8b", system="h100-sxm", batch=2**21),
], ids=["moe", "neupims", "contexts", "numpy-batch", "window", "huge-batch"])
def test_points_outside_the_fast_path_take_the_general_path(call: dict) -> None:
    args = (call["model"], call["system"], call["batch"], call.get("context", 512), "bf16", None)
    for _ in range(3):
        assert pe.point_estimate(*args) is None


def test_other_options_skip_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """A mapper other than gpu, mapper options or a routing reach the general path unchanged."""
    monkeypatch.setitem(FAST_PATH, "point_estimate", lambda *a: pytest.fail("fast path taken"))
    estimate("llama3-8b", "h100-sxm", 8, routing=Routing(seed=1))
    with pytest.raises(ArgumentError, match="not an option"):
        estimate("llama3-8b", "h100-sxm", 8, nonsense=2)
    assert estimate("llama3-8b", "neupims", 8, precision="fp16", mapper="neupims").mapper == "neupims"


def test_a_key_the_general_path_refuses_stays_there() -> None:
    """A precision the device has no datapath for: the form is not built, the general path's error
    is raised on every call."""
    for _ in range(3):
        with pytest.raises(DecodexError, match="fp8"):
            estimate("llama3-8b", "a100-80g", 8, precision="fp8")


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(batch=0), "batch"), (dict(batch=8, context=0), "context"), (dict(batch=True), "batch"),
    (dict(batch=8, precision="w3z"), "precision|w3z"), (dict(batch=8, parallelism="tp2"), "parallelism"),
])
def test_bad_arguments_raise_as_before(kwargs: dict, match: str) -> None:
    for _ in range(2):
        estimate("llama3-8b", "h100-sxm", 8, context=64)  # the key's form exists
    with pytest.raises(ArgumentError, match=match):
        estimate("llama3-8b", "h100-sxm", **kwargs)


def test_a_form_that_disagrees_with_evaluate_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fast-path formula drifting from the units' is caught when the form is built: the key then
    stays on the general path, whose numbers are returned."""
    def drifted(form, batch, context):
        return dataclasses.replace(_real_price(form, batch, context), step_time_s=1.0)

    monkeypatch.setattr(pe, "price_point", drifted)
    with pytest.raises(NotVectorizable, match="step_time_s"):
        pe.build_point_form(load_model("llama3-8b"), load_system("h100-sxm"), Precision.parse("bf16"), Parallelism())
    for _ in range(3):
        got = estimate("llama3-8b", "h100-sxm", 8, context=300)
    assert pe.differences(got, _reference("llama3-8b", "h100-sxm", "bf16", Parallelism(), 8, 300)) == []


def test_an_edited_system_is_a_new_key() -> None:
    """A system spec changed in memory (a what-if) is priced with its own numbers."""
    spec = load_system("h100-sxm")
    device = spec.primary_device
    units = {name: dataclasses.replace(unit, op_overhead_s=unit.op_overhead_s + 1e-5) if isinstance(unit, RooflineUnit)
             else unit for name, unit in device.units.items()}
    slower = dataclasses.replace(spec, groups=tuple(
        dataclasses.replace(g, device=dataclasses.replace(g.device, units=units)) for g in spec.groups))
    for _ in range(3):
        base = estimate("llama3-8b", spec, 8, context=512)
        edited = estimate("llama3-8b", slower, 8, context=512)
    assert edited.step_time_s > base.step_time_s
    assert pe.differences(edited, evaluate(plan_step("llama3-8b", slower, 8, context=512))) == []
    assert pe.differences(base, evaluate(plan_step("llama3-8b", spec, 8, context=512))) == []


def test_threads_share_the_cache_safely(monkeypatch: pytest.MonkeyPatch) -> None:
    """Estimates from several threads (the dashboard) over more keys than the cache holds (one):
    no error, and every result equals the general path's."""
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setattr(pe, "CACHED_KEYS", 1)
    keys = [(b, c) for b in (1, 2, 3) for c in (64, 128)]

    def work(i: int) -> list[str]:
        batch, context = keys[i % len(keys)]
        got = estimate("llama3-8b", "h100-sxm", batch, context=context, precision="bf16",
                       parallelism=Parallelism(tp=1 + i % 2))
        return pe.differences(got, _reference("llama3-8b", "h100-sxm", "bf16", Parallelism(tp=1 + i % 2),
                                              batch, context))

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert all(wrong == [] for wrong in pool.map(work, range(60)))


def test_a_repeated_key_is_found_by_identity_and_an_equal_copy_by_value() -> None:
    """The loaders return one object per unchanged file, so a repeated key is found by the specs'
    identity; an equal model built anew (another object) finds the same form by value."""
    model, system, precision = load_model("llama3-8b"), load_system("h100-sxm"), Precision.parse("bf16")
    assert pe.cached_form(model, system, precision, Parallelism()) is None  # first sighting
    form = pe.cached_form(model, system, precision, Parallelism())
    assert form is not None
    assert pe.cached_form(load_model("llama3-8b"), load_system("h100-sxm"), Precision.parse("bf16"),
                          Parallelism(tp=1)) is form
    copy = dataclasses.replace(model)
    assert copy is not model and copy == model
    assert pe.cached_form(copy, system, precision, Parallelism()) is form
    assert pe.cached_form(model, system, precision, Parallelism(tp=2)) is None  # another key: first sighting
    pe.clear_cache()
    assert pe.cached_form(model, system, precision, Parallelism()) is None  # forgotten, identity entries too


def test_the_workspace_keeps_only_the_polynomials_that_can_be_largest() -> None:
    """Dropping the activation polynomials that another bounds term by term (and repeats) never
    changes the largest one at any batch >= 1 and context >= 1, negative coefficients included."""
    rng = np.random.default_rng(5)
    for _ in range(200):
        polys = [tuple(float(x) for x in rng.choice([-3.0, 0.0, 1.0, 2.0, 5e3], 4)) for _ in range(rng.integers(1, 9))]
        polys += polys[: rng.integers(0, 3)]  # repeats
        kept = pe._undominated(polys)
        assert set(kept) <= set(polys) and len(kept) == len(set(kept))
        for b, c in zip(rng.integers(1, 5000, 20), rng.integers(1, 200_000, 20), strict=True):
            b, c = float(b), float(c)
            value = [p[0] + p[1] * b + p[2] * c + p[3] * b * c for p in polys]
            assert max(value) == max(p[0] + p[1] * b + p[2] * c + p[3] * b * c for p in kept)


def test_a_result_of_fields_is_the_constructors_and_names_every_field() -> None:
    """StepResult.of_fields (the fast path's constructor, without __init__) builds an equal result,
    and refuses a missing or unknown field by name; with_fields copies and replaces."""
    result = estimate("llama3-8b", "h100-sxm", 8, context=512)
    values = {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}
    built = type(result).of_fields(**values)
    assert built == result and repr(built) == repr(result) and built is not result
    with pytest.raises(TypeError, match="missing warnings"):
        type(result).of_fields(**{k: v for k, v in values.items() if k != "warnings"})
    with pytest.raises(TypeError, match="not fields: speed"):
        type(result).of_fields(**values, speed=1.0)
    changed = result.with_fields(band_low_s=1.0, warnings=("w",))
    assert changed.band_low_s == 1.0 and changed.warnings == ("w",) and result.warnings == ()
    with pytest.raises(TypeError, match="not fields of StepResult: speed"):
        result.with_fields(speed=1.0)


def test_twin_ops_and_zero_quantities_are_used_and_exact() -> None:
    """Ops priced from the same inputs (a layer's two norms, its all-reduces) take their twin's
    numbers, and a quantity that is 0 everywhere (no KV bytes outside attention) is not evaluated:
    both are exercised on a tp 8 step and give evaluate's records exactly."""
    model, system, precision, par = load_model("llama3-70b"), load_system("8x-h100-sxm"), Precision.parse("bf16"), \
        Parallelism(tp=8)
    for _ in range(2):
        form = pe.cached_form(model, system, precision, par)
    assert form is not None
    twins = [op for op in form.ops if op.twin >= 0]
    assert {op.kind for op in twins} >= {"collective", "elementwise"}
    for op in twins:
        source = form.ops[op.twin]
        assert pe._pricing_inputs(source) == pe._pricing_inputs(op) and source.twin == -1
    assert sum(op.kv is None for op in form.ops) >= len(form.ops) - 2
    for batch, context in ((1, 1), (37, 3000), (512, 8000)):
        got = pe.price_point(form, batch, context)
        want = _reference("llama3-70b", "8x-h100-sxm", "bf16", par, batch, context)
        assert [tuple(r) for r in got.records] == [tuple(r) for r in want.records]
        assert got.step_time_s == want.step_time_s and got.energy_j == want.energy_j
