"""Drafting (sim.speculative_draft): decoding heads by hand, on every mapper and in memory; trees
drafted level by level by a model or the target's first layers; the draft kinds' parsing."""

from __future__ import annotations

import pytest

from decodex.core.errors import ArgumentError
from decodex.hw_models.system import load_system
from decodex.sim.estimate import estimate
from decodex.sim.speculative import estimate_speculative
from decodex.sim.speculative_draft import Draft, heads_step, tree_draft_steps
from decodex.workloads.acceptance import ChainAcceptance, TreeAcceptance
from decodex.workloads.catalog import load_model
from decodex.workloads.token_tree import TokenTree

SYSTEMS = [("h100-sxm", "bf16"), ("neupims", "fp16"), ("duplex", "bf16"), ("alveo-u280", "w4a8")]


def test_heads_by_hand() -> None:
    """Vicuna-7B (d 4096, V 32000), 3 heads over 2 requests x 4 verify tokens: each head a 4096 x
    4096 residual block with bias and a 4096 x 32000 LM head; bf16 weights read once."""
    d, vocab, heads, rows = 4096, 32000, 3, 8
    step = heads_step(load_model("vicuna-7b"), load_system("h100-sxm"), 2, 500, rows=rows, heads=heads,
                      precision="bf16", parallelism=None)
    matmuls = {r.name: r for r in step.records if r.kind == "matmul"}
    assert matmuls["draft_heads_resblock"].flops == pytest.approx(2 * rows * d * d * heads)
    assert matmuls["draft_heads_lm_head"].flops == pytest.approx(2 * rows * d * vocab * heads)
    assert matmuls["draft_heads_resblock"].weight_bytes == pytest.approx(heads * (d * d + d) * 2)
    assert matmuls["draft_heads_lm_head"].weight_bytes == pytest.approx(heads * d * vocab * 2)
    assert step.weight_bytes == pytest.approx(heads * (d * d + d + d * vocab) * 2, rel=1e-3)
    # where the target's LM head runs, with the same unit model: memory bound at 8 rows
    plain = estimate("vicuna-7b", "h100-sxm", 2, context=500)
    lm = next(r for r in plain.records if r.name == "lm_head")
    assert matmuls["draft_heads_lm_head"].unit == lm.unit
    assert matmuls["draft_heads_lm_head"].time_s == pytest.approx(heads * lm.time_s, rel=0.05)


@pytest.mark.parametrize(("system", "precision"), SYSTEMS)
def test_heads_draft_on_every_mapper(system: str, precision: str) -> None:
    for k in (1, 3):
        got = estimate_speculative("llama2-7b", system, 4, context=700, draft=Draft("heads", heads=4),
                                   draft_length=k, acceptance=ChainAcceptance((0.7,)), precision=precision)
        (heads,) = got.drafts  # one pass whatever k
        assert heads.step_time_s > 0 and got.draft_time_s == heads.step_time_s
        lm_heads = next(r for r in heads.records if r.name == "draft_heads_lm_head")
        assert lm_heads.flops * lm_heads.repeat == pytest.approx(2 * 4 * (k + 1) * 4096 * 32000 * 4)  # all 4 heads
        assert got.fits, got.reason
    with pytest.raises(ArgumentError, match="5 tokens need 5 decoding heads; the draft has 4"):
        estimate_speculative("llama2-7b", system, 4, context=700, draft=Draft("heads", heads=4), draft_length=5,
                             acceptance=ChainAcceptance((0.7,)), precision=precision)


def test_heads_weights_must_fit_beside_the_target() -> None:
    # 70 heads of Llama-3-8B (128k vocabulary): ~76 GB of heads beside 16 GB of weights; an H100 leaves 85 GB
    got = estimate_speculative("llama3-8b", "h100-sxm", 1, context=512, draft=Draft("heads", heads=70),
                               draft_length=70, acceptance=ChainAcceptance((0.5,)))
    assert not got.fits and "target and draft need" in got.reason
    small = estimate_speculative("llama3-8b", "h100-sxm", 1, context=512, draft=Draft("heads", heads=4),
                                 draft_length=4, acceptance=ChainAcceptance((0.5,)))
    assert small.fits


def test_a_tree_is_drafted_level_by_level() -> None:
    tree = TokenTree.branching((3, 2, 1))  # levels of 3, 6, 6 nodes; 1, 3, 6 nodes expand
    assert tree.expanding_per_level() == (1, 3, 6)
    target, system = load_model("llama3-8b"), load_system("h100-sxm")
    steps = tree_draft_steps(target, system, 4, 1000, tree, Draft("model", model="llama3.2-1b"), "bf16", None)
    assert [s.tokens for s in steps] == [4 * 1, 4 * 3, 4 * 6]
    assert [s.mean_context for s in steps] == [1000, 1001, 1002]
    # logits at every node a level expands (each proposes its children)
    assert [next(r for r in s.records if r.name == "lm_head").flops for s in steps] == pytest.approx(
        [2 * 4 * w * 2048 * 128256 for w in (1, 3, 6)])
    self_steps = tree_draft_steps(target, system, 4, 1000, tree, Draft("self", layers=4), "bf16", None)
    assert len(self_steps) == 3 and self_steps[0].model == "llama3-8b[:4]"
    assert tree_draft_steps(target, system, 4, 1000, tree, Draft(), "bf16", None) == ()


@pytest.mark.parametrize("draft", [Draft("model", model="llama3.2-1b"), Draft("self", layers=4),
                                   Draft("heads", heads=3)])
def test_a_chain_shaped_tree_drafts_as_the_chain(draft: Draft) -> None:
    chain = estimate_speculative("llama3-8b", "h100-sxm", 4, context=900, draft=draft, draft_length=3,
                                 acceptance=ChainAcceptance((0.6,)))
    tree = estimate_speculative("llama3-8b", "h100-sxm", 4, context=900, draft=draft, draft_length=3,
                                acceptance=ChainAcceptance((0.6,)).for_tree(TokenTree.chain(3)))
    assert tree.draft_time_s == pytest.approx(chain.draft_time_s, rel=1e-9)
    assert tree.step_time_s == pytest.approx(chain.step_time_s, rel=1e-9)


def test_a_wider_tree_costs_more_to_draft_and_accepts_more() -> None:
    narrow, wide = TokenTree.branching((1, 1, 1)), TokenTree.branching((2, 2, 1))
    results = []
    for tree in (narrow, wide):
        probs = tuple(0.6 / tree.depths.count(1) if depth == 1 else 0.5 for depth in tree.depths)
        results.append(estimate_speculative("llama3-8b", "h100-sxm", 8, context=900,
                                            draft=Draft("model", model="llama3.2-1b"), draft_length=tree.size,
                                            acceptance=TreeAcceptance(tree, probs)))
    assert results[1].draft_time_s > results[0].draft_time_s
    assert results[1].verify.flops > results[0].verify.flops


def test_draft_kinds_parse_and_refuse() -> None:
    assert Draft.parse("heads:4") == Draft("heads", heads=4)
    with pytest.raises(ArgumentError, match="heads:HEADS"):
        Draft.parse("heads:0")
    with pytest.raises(ArgumentError, match=r"draft.heads: 0 must be an integer in \[1, 1024\]"):
        Draft("heads")
    with pytest.raises(ArgumentError, match="only a draft of kind 'heads' takes heads"):
        Draft("self", layers=2, heads=3)


def test_kangaroo_adapter_is_one_attention_block_more() -> None:
    """Kangaroo's adapter: the attention block of a decoder layer and a second norm after the early
    exit, with a K/V cache of its own: costlier than the bare self-draft, cheaper than one more
    whole layer (no FFN)."""
    kwargs = dict(context=2048, draft_length=3, acceptance=ChainAcceptance((0.7,)))
    bare, adapted, deeper = (estimate_speculative("llama3-8b", "h100-sxm", 8, draft=Draft.parse(text), **kwargs)
                             for text in ("self:4", "self:4+adapter", "self:5"))
    assert bare.draft_time_s < adapted.draft_time_s < deeper.draft_time_s
    step = adapted.drafts[0]
    attention = [r for r in step.records if r.name == "attention"]
    assert [r.template for r in attention] == ["dense_layer", "adapter"] and attention[1].repeat == 1
    assert attention[1].flops == attention[0].flops
    assert step.kv_bytes == pytest.approx(bare.drafts[0].kv_bytes * 5 / 4)  # its own cache: one layer's more
    assert Draft.parse("self:4+adapter") == Draft("self", layers=4, adapter=True)
    with pytest.raises(ArgumentError, match="only a self-draft takes an adapter"):
        Draft("heads", heads=2, adapter=True)


def test_interleaving_hides_a_draft_on_other_devices() -> None:
    """Two sub-batches alternate: one drafts on the A100 while the H100 verifies the other. A round
    is max(draft_1, verify_2) + max(draft_2, verify_1), by hand from the half-batch steps; it pays
    when the draft is as slow as the verify and costs when the verify dominates (two weight reads)."""
    from decodex.sim.speculative import interleaved_speculative

    draft = Draft("model", model="llama3.2-1b", system="a100-80g")
    kwargs = dict(context=2048, draft=draft, draft_length=3, acceptance=ChainAcceptance((0.7,)))
    inter = interleaved_speculative("llama3-8b", "h100-sxm", 64, **kwargs)
    half = estimate_speculative("llama3-8b", "h100-sxm", 32, **kwargs)
    assert inter.step_time_s == pytest.approx(2 * max(half.draft_time_s, half.verify.step_time_s), rel=1e-9)
    assert inter.energy_j == pytest.approx(2 * half.energy_j, rel=1e-9)
    assert inter.tokens_per_step == pytest.approx(half.tokens_per_step)
    sequential = estimate_speculative("llama3-8b", "h100-sxm", 64, **kwargs)
    assert inter.speedup > sequential.speedup  # the draft (~19 ms) hidden behind the verify
    small = [f("llama3-8b", "h100-sxm", 2, **kwargs) for f in (interleaved_speculative, estimate_speculative)]
    assert small[0].speedup < small[1].speedup  # batch 2: the verify's weights read twice cost more
    with pytest.raises(ArgumentError, match="a draft model on another system"):
        interleaved_speculative("llama3-8b", "h100-sxm", 8, **{**kwargs, "draft": Draft("self", layers=4)})
    with pytest.raises(ArgumentError, match=r"batch: 1 must be an integer in \[2,"):
        interleaved_speculative("llama3-8b", "h100-sxm", 1, **kwargs)
