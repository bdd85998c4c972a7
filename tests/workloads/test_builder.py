"""Step graphs: exact FLOPs and bytes against hand computation; conservation under parallelism."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from decodex.core.errors import ArgumentError, InfeasibleError
from decodex.workloads.batch import Batch
from decodex.workloads.builder import build_step_graph
from decodex.workloads.catalog import load_model
from decodex.workloads.graph import Graph
from decodex.workloads.ops import Op, OpKind
from decodex.workloads.parallelism import Parallelism
from decodex.workloads.precision import Precision

MATRIX = (OpKind.MATMUL, OpKind.ATTENTION, OpKind.MOE_EXPERTS)


def op_named(graph: Graph, template: str, name: str) -> Op:
    for t, op in graph.ops():
        if t.name == template and op.name == name:
            return op
    raise KeyError(name)


def test_llama2_7b_decode_ops_by_hand() -> None:
    graph = build_step_graph(load_model("llama2-7b"), Batch.decode(1, 1023))
    qkv = op_named(graph, "dense_layer", "qkv_proj")
    assert qkv.flops == 2 * 12288 * 4096
    assert qkv.weight_bytes == 12288 * 4096 * 2
    assert qkv.activation_bytes == (4096 + 12288) * 2
    att = op_named(graph, "dense_layer", "attention")
    # one query token attends to 1023 cached + itself: 2 * heads * (d_qk + d_v) * 1024
    assert att.flops == 2 * 32 * 256 * 1024
    # reads 1024 tokens of K/V (32 heads x 256 values x 2 B) and writes the new token's
    assert att.kv_bytes == (1024 + 1) * 32 * 256 * 2
    assert att.resident_kv_bytes == 1024 * 32 * 256 * 2
    assert op_named(graph, "dense_layer", "gate_up_proj").flops == 2 * 2 * 11008 * 4096
    assert op_named(graph, "head", "lm_head").flops == 2 * 32000 * 4096
    assert graph.templates[1].repeat == 32


def test_matmul_flops_are_two_per_weight_per_token() -> None:
    model = load_model("llama2-7b")
    batch = 8
    graph = build_step_graph(model, Batch.decode(batch, 100))
    matmul_weights = model.parameter_count() - model.vocab_size * 4096 - 65 * 4096  # minus embedding, norms
    assert graph.total("flops", kinds=(OpKind.MATMUL,)) == 2 * batch * matmul_weights


@pytest.mark.parametrize("name", ["llama2-7b", "llama3-70b", "opt-6.7b", "gpt3-7b", "mixtral-8x7b",
                                  "deepseek-v3", "step3", "qwen3-235b-a22b", "glam-143b", "grok-1"])
def test_resident_weights_equal_parameters(name: str) -> None:
    model = load_model(name)
    graph = build_step_graph(model, Batch.mixed([10, 20], [8], [4]))
    tolerance = 1e-5  # the few parameters noted in test_model_config are not moved by any op
    assert graph.total("resident_weight_bytes") == pytest.approx(2 * model.parameter_count(), rel=tolerance)


def test_mixed_batch_attention_by_hand() -> None:
    graph = build_step_graph(load_model("llama3-8b"), Batch.mixed([5], [4], [0]))
    att = op_named(graph, "dense_layer", "attention")
    # decode: 5 cached + itself = 6 pairs; prefill chunk of 4 from scratch: 1+2+3+4 = 10 pairs
    assert att.attended_pairs == 16
    assert att.flops == 2 * 32 * 256 * 16
    assert graph.batch.num_tokens == 5 and graph.batch.num_output_tokens == 2


def test_mla_decode_uses_absorbed_attention() -> None:
    graph = build_step_graph(load_model("deepseek-v3"), Batch.decode(2, 99))
    att = op_named(graph, "moe_layer", "attention")
    assert att.kv_heads == 1 and att.q_heads == 128
    assert att.flops == 2 * 128 * (576 + 512) * 2 * 100
    assert att.kv_bytes_per_token == 576 * 2
    names = {op.name for _, op in graph.ops()}
    assert {"q_absorb", "v_absorb"} <= names and "kv_b_proj" not in names


def test_mla_prefill_rebuilds_kv() -> None:
    graph = build_step_graph(load_model("deepseek-v3"), Batch.mixed([], [16], [0]))
    names = [op.name for t, op in graph.ops() if t.name == "moe_layer"]
    assert "kv_b_proj" in names and "prefill_attention" in names and "q_absorb" not in names


def test_step3_attention_intensity_is_high() -> None:
    # MFA: 64 query heads share one K/V head -> ~2*64*(256+256)/(512 B in fp8) = 128 FLOP/B
    graph = build_step_graph(load_model("step3"), Batch.decode(1, 4095), Precision.parse("fp8"))
    att = op_named(graph, "moe_layer", "attention")
    assert att.flops / att.kv_bytes == pytest.approx(128, rel=0.01)


def _conserved(graph: Graph, reference: Graph, quantity: str) -> None:
    assert graph.total(quantity, useful=True, kinds=MATRIX) == pytest.approx(
        reference.total(quantity, useful=True, kinds=MATRIX), rel=1e-9)


@settings(max_examples=25, deadline=None)
@given(name=st.sampled_from(["llama2-7b", "llama3-70b", "mixtral-8x7b"]), tp=st.sampled_from([1, 2, 4, 8]),
       batch=st.integers(1, 64), context=st.integers(0, 4000), expert_parallel=st.booleans())
def test_flops_and_bytes_conserved_under_tensor_parallelism(name: str, tp: int, batch: int, context: int,
                                                            expert_parallel: bool) -> None:
    model = load_model(name)
    ep = tp if (expert_parallel and model.moe) else 1
    b = Batch.decode(batch, context)
    reference = build_step_graph(model, b)
    graph = build_step_graph(model, b, parallelism=Parallelism(tp=tp, ep=ep))
    for quantity in ("flops", "weight_bytes", "kv_bytes", "resident_weight_bytes", "resident_kv_bytes"):
        _conserved(graph, reference, quantity)


def test_tensor_parallel_adds_all_reduces() -> None:
    graph = build_step_graph(load_model("llama3-70b"), Batch.decode(4, 10), parallelism=Parallelism(tp=8))
    reduces = [op for t, op in graph.ops() if op.kind == OpKind.COLLECTIVE and t.name == "dense_layer"]
    assert [op.name for op in reduces] == ["attn_all_reduce", "ffn_all_reduce"]
    assert reduces[0].payload_bytes == 4 * 8192 * 2
    single = build_step_graph(load_model("llama3-70b"), Batch.decode(4, 10))
    assert not [op for _, op in single.ops() if op.kind == OpKind.COLLECTIVE]


def test_kv_heads_replicate_beyond_their_count() -> None:
    model = load_model("llama3-70b")  # 8 KV heads
    b = Batch.decode(2, 100)
    at8 = op_named(build_step_graph(model, b, parallelism=Parallelism(tp=8)), "dense_layer", "attention")
    at16 = op_named(build_step_graph(model, b, parallelism=Parallelism(tp=16)), "dense_layer", "attention")
    assert at8.kv_heads == at16.kv_heads == 1
    assert at16.kv_replicated and not at8.kv_replicated


def test_pipeline_adds_sends_and_keeps_per_layer_work() -> None:
    model = load_model("llama2-13b")
    b = Batch.decode(2, 100)
    graph = build_step_graph(model, b, parallelism=Parallelism(pp=4))
    pipeline = [t for t in graph.templates if t.name == "pipeline"]
    assert pipeline and pipeline[0].repeat == 3
    assert [graph.stage_of_layer(i) for i in (0, 9, 10, 39)] == [0, 0, 1, 3]


def test_sparsity_reduces_weight_bytes_and_flops() -> None:
    model = load_model("llama2-7b")
    dense = op_named(build_step_graph(model, Batch.decode(1, 10)), "dense_layer", "qkv_proj")
    sparse = op_named(build_step_graph(model, Batch.decode(1, 10), Precision.parse("w=bf16,sparsity=2:4")),
                      "dense_layer", "qkv_proj")
    assert sparse.flops == dense.flops / 2 and sparse.dense_flops == dense.flops
    assert sparse.weight_bytes == pytest.approx(dense.weight_bytes * (0.5 * (2 + 2 / 8)) / 2)


def test_moe_expert_tokens_conserve_routed_tokens() -> None:
    model = load_model("mixtral-8x7b")
    graph = build_step_graph(model, Batch.decode(32, 100), parallelism=Parallelism(tp=4, ep=4))
    experts = op_named(graph, "moe_layer", "experts")
    assert experts.expert_tokens.shape == (32, 4, 2)
    assert (experts.expert_tokens.sum(axis=(1, 2)) == 32 * 2).all()


def test_bad_parallel_splits_and_contexts() -> None:
    model = load_model("llama2-7b")
    with pytest.raises(InfeasibleError, match="attention heads"):
        build_step_graph(model, Batch.decode(1, 10), parallelism=Parallelism(tp=3))
    with pytest.raises(ArgumentError, match="max_position_embeddings"):
        build_step_graph(model, Batch.decode(1, 5000))
    with pytest.raises(InfeasibleError, match="MoE"):
        build_step_graph(model, Batch.decode(1, 10), parallelism=Parallelism(tp=2, ep=2))
    with pytest.raises(ArgumentError):
        Parallelism(tp=4, ep=3)


def test_decode_graph_context_array() -> None:
    ctx = np.array([10, 200, 3000])
    graph = build_step_graph(load_model("llama3-8b"), Batch.decode(3, ctx))
    att = op_named(graph, "dense_layer", "attention")
    assert att.attended_pairs == (ctx + 1).sum()


def test_expert_parallel_dispatches_and_combines_with_all_to_all() -> None:
    model = load_model("mixtral-8x7b")
    graph = build_step_graph(model, Batch.decode(16, 100), parallelism=Parallelism(tp=8, ep=8))
    names = [op.name for t, op in graph.ops() if t.name == "moe_layer"]
    assert names.index("moe_dispatch") < names.index("experts") < names.index("moe_combine")
    dispatch = op_named(graph, "moe_layer", "moe_dispatch")
    assert dispatch.payload_bytes == 2 * 2 * 4096 * 2  # 16 tokens / 8 devices x top-2 x hidden x bf16
    assert "moe_all_gather" in names and "ffn_all_reduce" not in names
    split = build_step_graph(model, Batch.decode(16, 100), parallelism=Parallelism(tp=8, ep=4))
    assert "ffn_all_reduce" in [op.name for t, op in split.ops() if t.name == "moe_layer"]
