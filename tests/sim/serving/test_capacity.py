"""``capacity``: the search brackets the highest rate meeting the SLOs, reuses runs, is monotone
in hardware and in the SLOs; the steady-state check; SLO validation."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pytest

import decodex.sim.serving.capacity as capacity_module
from decodex.core.errors import ArgumentError
from decodex.hw_models.system import SystemSpec, load_system
from decodex.sim.serving import Workload
from decodex.sim.serving.capacity import CapacityResult, capacity
from decodex.sim.serving.capacity_runs import SLO_KEYS, parse_slo, parse_slo_text, steadiness

MODEL, SYSTEM = "llama3-8b", "h100-sxm"
# alpaca lengths (12/56 tokens) and a max batch of 32: short runs, capacity ~30-40 requests/s
FAST: dict[str, Any] = {"workload": Workload.preset("alpaca", 1.0), "requests": 200, "max_batch": 32,
                        "rate_lo": 20.0, "rate_hi": 70.0, "rel_tol": 0.1, "max_runs": 8,
                        "bucket_width": 0.1}  # coarse step-time buckets: fewer steps priced
SLO = {"ttft_p99": 0.5, "tpot_p99": 0.05}


def faster_memory(system: SystemSpec, factor: float) -> SystemSpec:
    """``system`` with its devices' main-memory bandwidth (B/s) times ``factor``."""
    groups = []
    for group in system.groups:
        device = group.device
        name = next(k for k, m in device.memories.items() if m is device.main_memory)
        memories = dict(device.memories)
        memories[name] = dataclasses.replace(device.main_memory,
                                             bandwidth_bytes_per_s=device.main_memory.bandwidth_bytes_per_s * factor)
        groups.append(dataclasses.replace(group, device=dataclasses.replace(device, memories=memories)))
    return dataclasses.replace(system, groups=tuple(groups))


@pytest.fixture(scope="module")
def counted() -> tuple[CapacityResult, list[float]]:
    """A search on the fast setup, with every ``serve`` call's rate recorded."""
    calls: list[float] = []
    real = capacity_module.serve

    def counting(model: Any, system: Any, workload: Workload, **kwargs: Any) -> Any:
        calls.append(workload.rate)
        return real(model, system, workload, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(capacity_module, "serve", counting)
        result = capacity(MODEL, SYSTEM, slo=SLO, **FAST)
    return result, calls


def test_search_brackets_the_capacity(counted: tuple[CapacityResult, list[float]]) -> None:
    result, _ = counted
    curve = result.curve.set_index("rate_per_s")
    assert result.bracketed and result.capacity_per_s > 0
    assert bool(curve.loc[result.capacity_per_s, "passes"])
    above = curve[curve.index > result.capacity_per_s]
    assert not above["passes"].any()  # every faster run failed
    nearest = above.index.min()
    assert nearest <= result.capacity_per_s * (1 + FAST["rel_tol"]) * (1 + 1e-6)
    assert result.binding in (*SLO, "queue growing")
    # the passing run is within the SLOs, its percentiles in the curve
    assert curve.loc[result.capacity_per_s, "ttft_p99_s"] <= SLO["ttft_p99"]
    assert curve.loc[result.capacity_per_s, "tpot_p99_s"] <= SLO["tpot_p99"]


def test_runs_are_reused(counted: tuple[CapacityResult, list[float]]) -> None:
    result, calls = counted
    assert len(calls) == len(set(calls)) == result.runs <= FAST["max_runs"]
    assert sorted(calls) == pytest.approx(sorted(result.curve["rate_per_s"]))


def test_more_memory_bandwidth_never_lowers_capacity(counted: tuple[CapacityResult, list[float]]) -> None:
    base, _ = counted
    fast = capacity(MODEL, faster_memory(load_system(SYSTEM), 2.0), slo=SLO, **FAST)
    assert fast.capacity_per_s >= base.capacity_per_s


def test_a_looser_slo_never_lowers_capacity(counted: tuple[CapacityResult, list[float]]) -> None:
    tight, _ = counted
    loose = capacity(MODEL, SYSTEM, slo={"ttft_p99": 2.0, "tpot_p99": 0.1}, **FAST)
    assert loose.capacity_per_s >= tight.capacity_per_s


def test_littles_law_on_steady_runs(counted: tuple[CapacityResult, list[float]]) -> None:
    result, _ = counted
    steady = result.curve[result.curve["steady"]]
    assert len(steady) >= 1
    for row in steady.to_dict("records"):  # L = lambda x W, lambda the finished requests per second
        assert row["mean_in_system"] == pytest.approx(row["request_throughput_per_s"] * row["e2e_mean_s"], rel=0.02)


def test_result_tables_and_figure(counted: tuple[CapacityResult, list[float]]) -> None:
    result, _ = counted
    curve = result.curve
    assert list(curve["rate_per_s"]) == sorted(curve["rate_per_s"])
    for key in SLO_KEYS:
        assert f"{key}_s" in curve
    assert {"throughput_tokens_per_s", "steady", "steady_reason", "meets_slo", "passes"} <= set(curve)
    summary = result.summary()
    assert summary["capacity_per_s"] == result.capacity_per_s and summary["runs"] == result.runs
    figure = result.figure()
    assert len(figure.data) == len(SLO)
    assert f"capacity {result.capacity_per_s:.4g} req/s" in figure.layout.title.text


def test_a_trace_is_searched_by_its_rate_scale() -> None:
    result = capacity(MODEL, SYSTEM, slo={"sched_delay_p99": 2.0}, workload="azure-conv-2023", requests=150,
                      rate_lo=4.0, rate_hi=400.0, max_runs=2)
    assert result.trace_mean_rate_per_s is not None and result.trace_mean_rate_per_s > 0
    curve = result.curve
    assert (curve["rate_scale"] * result.trace_mean_rate_per_s).to_numpy() == pytest.approx(curve["rate_per_s"])
    assert result.capacity_per_s == 4.0 and result.binding  # 4 req/s passes, 400 req/s does not
    assert result.rate_scale == pytest.approx(4.0 / result.trace_mean_rate_per_s)
    assert not result.bracketed and any("max_runs" in note for note in result.notes)


def test_steadiness() -> None:
    arrival = np.linspace(0.0, 100.0, 1001)
    steady = steadiness(arrival, arrival + 0.01, arrival + 1.0)
    assert steady.steady and not steady.overloaded and steady.reason == "steady"
    # admitted at 80 % of the arrival rate: the waiting queue grows by ~20 % of the arrivals
    admitted = arrival / 0.8
    grows = steadiness(arrival, admitted, admitted + 1.0)
    assert grows.overloaded and not grows.steady and "queue growing" in grows.reason
    assert grows.growth == pytest.approx(0.2, rel=0.05)
    short = steadiness(arrival, arrival, arrival + 50.0)  # span 100 s, mean E2E 50 s
    assert not short.steady and not short.overloaded and short.reason.startswith("too short")


def test_bad_slos_raise() -> None:
    with pytest.raises(ArgumentError, match=r"ttft_p95.*allowed: .*ttft_p99.*sched_delay_p99"):
        parse_slo({"ttft_p95": 1.0})
    for bad in ({}, {"ttft_p99": 0.0}, {"tpot_p99": math.inf}, {"e2e_p99": True}):
        with pytest.raises(ArgumentError, match="slo"):
            parse_slo(bad)  # type: ignore[arg-type]
    assert parse_slo_text("ttft_p99=2, tpot_p99=0.1") == {"ttft_p99": 2.0, "tpot_p99": 0.1}
    for text in ("ttft_p99", "ttft_p99=fast", "nope=1"):
        with pytest.raises(ArgumentError):
            parse_slo_text(text)
    with pytest.raises(ArgumentError, match="bogus"):
        capacity(MODEL, SYSTEM, slo={"bogus": 1.0})
    with pytest.raises(ArgumentError, match="rate_lo"):
        capacity(MODEL, SYSTEM, slo=SLO, rate_lo=10.0, rate_hi=5.0)
    with pytest.raises(ArgumentError, match="workload"):
        capacity(MODEL, SYSTEM, slo=SLO, workload="no-such-workload")


def test_runs_of_a_search_share_one_step_time_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[int, Any]] = []
    real = capacity_module.serve

    def recording(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        seen.append((result.step_cache_misses, kwargs["step_cache"]))
        return result

    monkeypatch.setattr(capacity_module, "serve", recording)
    capacity(MODEL, SYSTEM, slo=SLO, **{**FAST, "max_runs": 3})
    cache = seen[0][1]
    assert len(seen) == 3 and all(c is cache for _, c in seen)
    assert sum(m for m, _ in seen) == cache.misses == cache.entries  # no batch priced twice
    assert seen[1][0] < seen[0][0]  # a later run finds most of its batches priced


def test_the_decode_queue_of_a_disaggregated_run_is_checked_for_growth() -> None:
    from types import SimpleNamespace

    from decodex.sim.serving.capacity_runs import run_steadiness

    arrival = np.linspace(0.0, 100.0, 1001)
    sent = arrival + 0.2  # prefills keep up; the KV reaches the decode pool 0.2 s later
    admit = sent + np.linspace(0.0, 50.0, 1001)  # ...where the wait for admission grows without bound
    run = SimpleNamespace(arrival_s=arrival, scheduled_s=arrival + 0.01, finish_s=admit + 1.0,
                          transfer_end_s=sent, decode_admit_s=admit)
    state = run_steadiness(run)  # type: ignore[arg-type]
    assert state.overloaded and state.reason.startswith("decode queue growing")
    keeping_up = SimpleNamespace(**{**vars(run), "decode_admit_s": sent + 0.05, "finish_s": sent + 1.0})
    assert run_steadiness(keeping_up).steady  # type: ignore[arg-type]


def test_deployments_replicas_and_disaggregated() -> None:
    fast = {**FAST, "max_runs": 4}
    one = capacity(MODEL, SYSTEM, slo=SLO, **fast)
    two = capacity(MODEL, SYSTEM, slo=SLO, replicas=2, **{**fast, "rate_lo": 40.0, "rate_hi": 140.0})
    assert (one.devices, two.devices) == (1, 2) and two.system == f"2 x {SYSTEM}"
    assert two.usd_per_hour == pytest.approx(2 * one.usd_per_hour) and one.usd_per_hour > 0
    assert two.capacity_per_s >= one.capacity_per_s  # two replicas serve at least what one does
    assert one.capacity_per_device == pytest.approx(one.capacity_per_s)
    split = capacity(MODEL, SYSTEM, slo=SLO, decode_systems="h20", **fast)
    assert split.devices == 2 and split.system == f"{SYSTEM} prefill, h20 decode"
    h100, h20 = (load_system(name).primary_device.usd_per_hour for name in (SYSTEM, "h20"))
    assert split.usd_per_hour == pytest.approx(h100 + h20)
    assert split.capacity_per_usd_hour == pytest.approx(split.capacity_per_s / split.usd_per_hour)
    assert split.capacity_per_s > 0 and split.curve["steady_reason"].notna().all()
    with pytest.raises(ArgumentError, match="replicas"):
        capacity(MODEL, SYSTEM, slo=SLO, replicas=2, decode_systems="h20", **fast)
    with pytest.raises(ArgumentError, match="replicas"):
        capacity(MODEL, SYSTEM, slo=SLO, replicas=0, **fast)
