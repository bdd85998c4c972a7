"""The discrete-event engine: agreement with the analytical path, folding, contention, pipelines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from decodex.core.dtypes import DType
from decodex.hw_models.device import device_from_dict
from decodex.hw_models.memory import LinkSpec
from decodex.hw_models.system import DeviceGroup, SystemSpec
from decodex.mappers.base import Placement, Plan
from decodex.mappers.schedule import Block, Schedule, Stream, Task
from decodex.sim.costing import placement_cost
from decodex.sim.engine import fused_time, run_schedule
from decodex.sim.estimate import estimate
from decodex.sim.simulate import simulate, simulate_plan
from decodex.workloads.batch import Batch
from decodex.workloads.builder import build_step_graph
from decodex.workloads.catalog import load_model
from decodex.workloads.graph import LayerTemplate
from decodex.workloads.ops import CollectiveOp, MatmulOp
from decodex.workloads.parallelism import Parallelism
from tests.conftest import ideal_device, ideal_system


@pytest.mark.parametrize(("model", "system", "batch", "kwargs"), [
    ("llama3-70b", "h100-sxm", 64, {"context": 2048, "parallelism": Parallelism(tp=8)}),
    ("opt-6.7b", "a100-80g", 16, {"context": 512}),
    ("glam-143b", "h100-sxm", 32, {"context": 512, "parallelism": Parallelism(tp=8, ep=8)}),
    ("mixtral-8x7b", "8x-h200", 32, {"context": 1024, "parallelism": Parallelism(tp=4, ep=2)}),
    ("llama2-13b", "8x-a100-80g", 8, {"context": 512, "parallelism": Parallelism(pp=4), "microbatches": 1}),
])
def test_simulate_agrees_with_estimate_without_overlap(model: str, system: str, batch: int,
                                                       kwargs: dict[str, object]) -> None:
    sim = simulate(model, system, batch, **kwargs)  # type: ignore[arg-type]
    est = estimate(model, system, batch, **kwargs)  # type: ignore[arg-type]
    assert sim.step_time_s == pytest.approx(est.step_time_s, rel=1e-9)
    assert sim.energy_j == pytest.approx(est.energy_j, rel=1e-9)
    assert all(0 <= u <= 1 + 1e-9 for u in sim.utilization.values())


def test_folded_layers_match_the_fully_expanded_run() -> None:
    folded = simulate("llama2-7b", "h100-sxm", 8, context=300)
    full = simulate("llama2-7b", "h100-sxm", 8, context=300, fold=False)
    assert folded.step_time_s == pytest.approx(full.step_time_s, rel=1e-9)
    assert folded.busy_s["d0.tensor"] == pytest.approx(full.busy_s["d0.tensor"], rel=1e-9)
    assert folded.simulated_repeats["dense_layer@0"] == 3 and full.simulated_repeats["dense_layer@0"] == 32
    assert len(folded.timeline) < len(full.timeline)


def test_pipeline_fold_matches_full_and_bubbles_emerge() -> None:
    kwargs = {"context": 512, "parallelism": Parallelism(pp=4)}
    folded = simulate("llama2-7b", "8x-a100-80g", 8, microbatches=4, **kwargs)  # type: ignore[arg-type]
    full = simulate("llama2-7b", "8x-a100-80g", 8, microbatches=4, fold=False, **kwargs)  # type: ignore[arg-type]
    assert folded.step_time_s == pytest.approx(full.step_time_s, rel=1e-9)
    single = simulate("llama2-7b", "8x-a100-80g", 8, microbatches=1, **kwargs)  # type: ignore[arg-type]
    # one micro-batch: each stage idles while the others work (utilisation about 1/pp)
    assert max(single.utilization[f"stage{s}"] for s in range(4)) < 0.3
    # four micro-batches overlap the stages: the round is shorter and every stage busier
    assert folded.step_time_s < single.step_time_s
    assert min(folded.utilization[f"stage{s}"] for s in range(4)) > 0.9
    # the round is never shorter than the busiest stage's work
    assert folded.step_time_s >= max(folded.busy_s[f"stage{s}"] for s in range(4)) * (1 - 1e-9)


def _two_stream_plan(access: str, budget: float | None, layers: int = 1) -> Plan:
    changes: dict[str, object] = {"memories.hbm.access": access}
    if budget is not None:
        changes["memories.hbm.shared_bandwidth_bytes_per_s"] = budget
    data = ideal_device(**changes)
    device = device_from_dict(data, "<two>")
    system = SystemSpec("two", "", "gpu", (DeviceGroup(device, 1),), scalable=True)
    template = LayerTemplate("layer", ())
    # a memory-bound GEMV: 1 GB of weights at 1 TB/s -> 1 ms alone
    gemv = MatmulOp(name="gemv", dtype=DType.BF16, m=1, n=1 << 15, k=1 << 14, weight_dtype=DType.BF16)
    streams = []
    for index, unit in enumerate(("tensor", "simt")):
        op = gemv if unit == "tensor" else MatmulOp(name="gemv_simt", dtype=DType.BF16, m=1, n=1 << 15,
                                                    k=1 << 14, weight_dtype=DType.BF16)
        task = Task((Placement(template, op, device, unit=unit),), (f"d0.{unit}",), f"d0.{unit}", op.name,
                    memory="d0.hbm")
        streams.append(Stream(f"s{index}", (Block("layer", (task,), layers),), priority=index))
    graph = build_step_graph(load_model("llama2-7b"), Batch.decode(1, 1))
    schedule = Schedule(tuple(streams), (("d0.hbm", 0, "hbm"),))
    return Plan(graph, system, "test", (), 1, {}, schedule)


def test_memory_contention_modes_by_hand() -> None:
    alone = (1 << 15) * (1 << 14) * 2 + ((1 << 14) + (1 << 15)) * 2  # bytes one GEMV moves
    t_alone = alone / 1e12
    exclusive = run_schedule(_two_stream_plan("exclusive", None))
    assert exclusive.makespan_s == pytest.approx(2 * t_alone, rel=1e-9)  # transfers take turns
    shared = run_schedule(_two_stream_plan("concurrent", 1e12))
    assert shared.makespan_s == pytest.approx(2 * t_alone, rel=1e-9)  # both at half rate
    assert shared.busy_s["d0.tensor"] == pytest.approx(2 * t_alone, rel=1e-9)
    roomy = run_schedule(_two_stream_plan("concurrent", 2e12))
    assert roomy.makespan_s == pytest.approx(t_alone, rel=1e-9)  # each on its own path at full rate


def test_overlapping_streams_fold_exactly() -> None:
    for access in ("exclusive", "concurrent"):
        plan = _two_stream_plan(access, 1.5e12, layers=12)
        assert run_schedule(plan, fold=True).makespan_s == pytest.approx(
            run_schedule(plan, fold=False).makespan_s, rel=1e-9)


def test_trace_file_opens_as_chrome_trace(tmp_path: Path) -> None:
    result = simulate("llama3-8b", "h100-sxm", 4, context=128, parallelism=Parallelism(tp=2))
    path = result.write_trace(tmp_path / "trace.json")
    data = json.loads(path.read_text())
    spans = [e for e in data["traceEvents"] if e["ph"] == "X"]
    tracks = [e for e in data["traceEvents"] if e.get("name") == "thread_name"]
    assert len(spans) == len(result.timeline) and {t["args"]["name"] for t in tracks} >= {"d0.tensor", "nvlink"}
    assert all(e["dur"] >= 0 for e in spans)
    frame = result.timeline_frame()
    assert (frame["end_s"] >= frame["start_s"]).all()


def test_simulate_plan_on_an_ideal_system() -> None:
    from decodex.sim.estimate import plan_step

    plan = plan_step("llama2-7b", ideal_system(), 2, context=10)
    assert simulate_plan(plan).step_time_s == pytest.approx(estimate("llama2-7b", ideal_system(), 2,
                                                                     context=10).step_time_s, rel=1e-9)


def _turns_plan(durations: tuple[float, ...], round_robin: bool, layers: int = 4) -> Plan:
    """Streams of one task each on one shared resource; stream i's op lasts durations[i] (s)."""
    data = ideal_device()
    device = device_from_dict(data, "<turns>")
    system = SystemSpec("turns", "", "gpu", (DeviceGroup(device, 1),), scalable=True)
    template = LayerTemplate("layer", ())
    streams = []
    for index, seconds in enumerate(durations):
        # a memory-bound GEMV of ``seconds`` at the ideal device's 1 TB/s
        op = MatmulOp(name=f"op{index}", dtype=DType.BF16, m=1, n=int(seconds * 1e12 / 2), k=1,
                      weight_dtype=DType.BF16)
        task = Task((Placement(template, op, device, unit="tensor"),), ("shared",), "shared", op.name, fused=True)
        streams.append(Stream(f"s{index}", (Block("layer", (task,), layers),), priority=len(durations) - index))
    graph = build_step_graph(load_model("llama2-7b"), Batch.decode(1, 1))
    return Plan(graph, system, "test", (), 1, {}, Schedule(tuple(streams), round_robin=round_robin))


def test_round_robin_serves_streams_in_turn() -> None:
    plan = _turns_plan((1e-3, 2e-3, 3e-3), round_robin=True)
    result = run_schedule(plan, fold=False)
    order = [(e.repeat, e.stream) for e in sorted(result.timeline, key=lambda e: e.start_s)]
    assert order == [(r, f"s{i}") for r in range(4) for i in range(3)]  # turns, whatever the priorities
    assert result.makespan_s == pytest.approx(result.busy_s["shared"], rel=1e-9)  # never idle meanwhile
    assert run_schedule(plan, fold=True).makespan_s == pytest.approx(result.makespan_s, rel=1e-9)


def test_fused_task_with_overlapping_links_lasts_its_longer_part() -> None:
    device = device_from_dict(ideal_device(), "<links>")
    template = LayerTemplate("layer", ())
    gemv = MatmulOp(name="gemv", dtype=DType.BF16, m=1, n=1 << 15, k=1 << 14, weight_dtype=DType.BF16)
    send = CollectiveOp(name="gather", dtype=DType.BF16, devices=8, collective="all_gather", payload_bytes=1e8)
    link = LinkSpec("nvlink", 100e9, 1e-6, 1.0)
    placed = (Placement(template, gemv, device, unit="tensor"), Placement(template, send, device, link=link))
    costs = {id(p): placement_cost(p) for p in placed}
    compute, comm = costs[id(placed[0])].time_s, costs[id(placed[1])].time_s
    serial = Task(placed, ("inst",), "inst", "part", fused=True)
    overlapped = Task(placed, ("inst",), "inst", "part", fused=True, overlap_links=True)
    assert fused_time(serial, costs) == pytest.approx(compute + comm)
    assert fused_time(overlapped, costs) == pytest.approx(max(compute, comm))
