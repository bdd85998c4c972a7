"""Graph.without: a what-if that drops op kinds and conserves everything else."""

from __future__ import annotations

import pytest

from decodex.core.errors import ArgumentError
from decodex.sim.estimate import plan_step
from decodex.sim.simulate import simulate_plan
from decodex.workloads.batch import Batch
from decodex.workloads.builder import build_step_graph
from decodex.workloads.catalog import load_model
from decodex.workloads.ops import CollectiveOp, MoEExpertsOp, OpKind
from decodex.workloads.parallelism import Parallelism
from decodex.workloads.precision import Precision

COMM = (OpKind.COLLECTIVE, OpKind.TRANSFER)


def _graph():
    model = load_model("gpt3-7b")
    return build_step_graph(model, Batch.decode(16, 300), Precision.parse("fp16"), Parallelism(tp=4, pp=2))


def test_without_drops_kinds_and_conserves_the_rest() -> None:
    graph = _graph()
    assert graph.total("bytes", kinds=COMM) > 0
    free = graph.without(COMM)
    assert free.omitted == frozenset(COMM)
    assert all(op.kind not in COMM for _, op in free.ops())
    assert all(template.ops for template in free.templates)  # the empty pipeline-send template is gone
    compute = tuple(k for k in OpKind if k not in COMM)
    for quantity in ("flops", "bytes", "weight_bytes"):
        assert free.total(quantity, kinds=compute) == graph.total(quantity, kinds=compute)
    assert free.without(()) is free
    assert graph.without(()) is graph


def test_plan_step_omit_is_never_slower_and_reaches_sub_batches() -> None:
    kwargs = dict(context=300, precision="fp16", parallelism=Parallelism(tp=4))
    full = plan_step("gpt3-7b", "neupims", 256, **kwargs)
    free = plan_step("gpt3-7b", "neupims", 256, omit=COMM, **kwargs)
    assert free.options["sub_batches"] == 2
    kinds = {p.op.kind for p in free.placements}
    assert not kinds & set(COMM)
    assert {p.op.kind for p in full.placements} & set(COMM)
    assert simulate_plan(free).step_time_s <= simulate_plan(full).step_time_s


def test_dp_tokens_keeps_tokens_on_their_devices() -> None:
    """DeepSeek-style EP: outside the experts each device handles its own 1/tp of the tokens with
    whole shared experts, only dispatch/combine cross devices, and the routed work is unchanged."""
    model = load_model("deepseek-v3")
    batch = Batch.decode(256, 1024)
    tp = build_step_graph(model, batch, Precision.parse("fp8"), Parallelism(tp=8, ep=8))
    dp = build_step_graph(model, batch, Precision.parse("fp8"), Parallelism(tp=8, ep=8, dp_tokens=True))

    def moe(graph):
        return next(t for t in graph.templates if t.name == "moe_layer")

    names = {op.name for op in moe(dp).ops if isinstance(op, CollectiveOp) and op.block == "moe"}
    assert names == {"moe_dispatch", "moe_combine"}  # no all-reduce or gather after the experts
    shared = {op.name: op for op in moe(dp).ops}["shared_gate_up_proj"]
    assert shared.m == 256 // 8 and shared.n == 2 * model.moe.shared.intermediate_size  # own tokens, whole expert
    experts = [next(op for op in moe(g).ops if isinstance(op, MoEExpertsOp)) for g in (tp, dp)]
    assert experts[0].flops == experts[1].flops  # the routed work does not change
    assert Parallelism(tp=8, ep=8, dp_tokens=True).label == "tp8·ep8·dp"
    with pytest.raises(ArgumentError, match="dp_tokens"):
        Parallelism(tp=8, ep=4, dp_tokens=True)
