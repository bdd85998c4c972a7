"""A speculative step (sim.speculative): plain decode at k = 0, (k + 1) tokens for one verify with
a free draft that is always accepted, verify FLOPs by hand, monotonicity, memory and bad input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from decodex.core.errors import ArgumentError
from decodex.sim.estimate import estimate
from decodex.sim.speculative import Draft, estimate_speculative
from decodex.workloads.acceptance import ChainAcceptance, EmpiricalAcceptance
from decodex.workloads.catalog import load_model

SYSTEMS = [("h100-sxm", "bf16"), ("neupims", "fp16"), ("duplex", "bf16"), ("alveo-u280", "w4a8")]


@pytest.mark.parametrize(("system", "precision"), SYSTEMS)
def test_no_draft_is_plain_decode_exactly(system: str, precision: str) -> None:
    for draft in (Draft(), Draft("self", layers=2), Draft("model", model="llama2-7b")):
        got = estimate_speculative("llama2-7b", system, 4, context=700, draft=draft, draft_length=0,
                                   acceptance=ChainAcceptance((0.9,)), precision=precision)
        plain = estimate("llama2-7b", system, 4, context=700, precision=precision)
        assert got.step_time_s == plain.step_time_s and got.verify.records == plain.records
        assert got.drafts == () and got.tokens_per_step == 1.0 and got.speedup == 1.0


@pytest.mark.parametrize(("system", "precision"), SYSTEMS)
def test_an_always_accepted_free_draft_gives_k_plus_1_tokens_per_verify(system: str, precision: str) -> None:
    for k in (1, 3, 6):
        got = estimate_speculative("llama2-7b", system, 2, context=512, draft=Draft(), draft_length=k,
                                   acceptance=ChainAcceptance((1.0,)), precision=precision)
        assert got.tokens_per_step == k + 1 and got.draft_time_s == 0.0
        assert got.step_time_s == got.verify.step_time_s
        assert got.time_per_token_s == pytest.approx(got.verify.step_time_s / (k + 1))
        assert got.verify.tokens == 2 * (k + 1)  # k + 1 query tokens per request
        # the verify reads the weights once: never more than k + 1 plain steps
        assert got.verify.step_time_s <= (k + 1) * got.plain.step_time_s * (1 + 1e-9)


def test_verify_flops_by_hand_for_a_chain() -> None:
    """Llama-2-7B: 32 heads of 128; each of the k + 1 query tokens of a request attends its C
    cached keys and, causally, 1 ... k + 1 of the step's new ones; the linear layers run k + 1
    tokens per request."""
    batch, context, k = 3, 1000, 4
    got = estimate_speculative("llama2-7b", "h100-sxm", batch, context=context, draft=Draft(), draft_length=k,
                               acceptance=ChainAcceptance((0.5,)))
    attention = next(r for r in got.verify.records if r.kind == "attention")
    pairs = batch * ((k + 1) * context + (k + 1) * (k + 2) / 2)
    assert attention.flops == pytest.approx(2 * 32 * (128 + 128) * pairs)
    model = load_model("llama2-7b")
    for name in ("qkv_proj", "o_proj", "gate_up_proj", "down_proj"):
        verify = next(r for r in got.verify.records if r.name == name)
        plain = next(r for r in got.plain.records if r.name == name)
        assert verify.flops == pytest.approx((k + 1) * plain.flops)  # (k + 1) B rows instead of B
        assert verify.weight_bytes == plain.weight_bytes  # the weights are read once either way
    assert model.num_layers == next(r for r in got.verify.records if r.name == "qkv_proj").repeat


@pytest.mark.parametrize(("system", "precision"), SYSTEMS)
def test_the_verify_computes_logits_at_every_drafted_position(system: str, precision: str) -> None:
    """Verifying k drafted tokens needs the target's distribution after each of them and after
    the last emitted one: k + 1 rows of logits per request (2 d V FLOP each), one for plain decode."""
    batch, k = 3, 4
    got = estimate_speculative("llama2-7b", system, batch, context=600, draft=Draft(), draft_length=k,
                               acceptance=ChainAcceptance((0.5,)), precision=precision)
    verify = [r for r in got.verify.records if r.name == "lm_head"]
    plain = [r for r in got.plain.records if r.name == "lm_head"]
    assert sum(r.flops * r.repeat for r in verify) == pytest.approx(batch * (k + 1) * 2 * 4096 * 32000)
    assert sum(r.flops * r.repeat for r in plain) == pytest.approx(batch * 2 * 4096 * 32000)


def test_speedup_is_monotone_in_acceptance_and_the_draft_costs_time() -> None:
    for system, precision in SYSTEMS:
        speedups = [estimate_speculative("llama2-7b", system, 8, context=1024, draft=Draft("self", layers=4),
                                         draft_length=4, acceptance=ChainAcceptance((a,)),
                                         precision=precision).speedup for a in np.linspace(0, 1, 6)]
        assert all(b > a for a, b in itertools.pairwise(speedups)), (system, speedups)
    free = estimate_speculative("llama2-7b", "h100-sxm", 8, context=1024, draft=Draft(), draft_length=3,
                                acceptance=ChainAcceptance((0.7,)))
    drafted = estimate_speculative("llama2-7b", "h100-sxm", 8, context=1024, draft=Draft("self", layers=4),
                                   draft_length=3, acceptance=ChainAcceptance((0.7,)))
    assert drafted.draft_time_s > 0 and drafted.speedup < free.speedup
    assert len(drafted.drafts) == 3 and [d.mean_context for d in drafted.drafts] == [1024, 1025, 1026]
    # a self-draft of L layers reads about L / layers of the weights per draft token
    assert drafted.drafts[0].weight_bytes < 0.25 * drafted.plain.weight_bytes


def test_a_draft_model_elsewhere_and_its_memory_beside_the_target() -> None:
    empirical = EmpiricalAcceptance((20, 30, 50))
    on_gpu = estimate_speculative("llama2-13b", "h100-sxm", 8, context=1024, draft=Draft("model", model="llama2-7b"),
                                  draft_length=2, acceptance=empirical)
    assert on_gpu.fits and on_gpu.expected_accepted == pytest.approx(1.3)
    assert {d.system for d in on_gpu.drafts} == {"h100-sxm"}
    beside = estimate_speculative("llama2-13b", "a100-40g", 8, context=1024, draft=Draft("model", model="llama2-7b"),
                                  draft_length=2, acceptance=empirical)
    assert beside.plain.fits and not beside.fits and "target and draft" in beside.reason
    apart = estimate_speculative("llama2-13b", "a100-40g", 8, context=1024,
                                 draft=Draft("model", model="llama2-7b", system="h100-sxm"), draft_length=2,
                                 acceptance=empirical)
    assert apart.fits and {d.system for d in apart.drafts} == {"h100-sxm"}


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(draft_length=-1), "draft_length"), (dict(draft_length=2.5), "draft_length"),
    (dict(batch=0), "batch"), (dict(context=-1), "context"), (dict(acceptance=0.8), "acceptance"),
    (dict(draft="self"), "draft"), (dict(acceptance=EmpiricalAcceptance((1, 1)), draft_length=3), r"\[0, 1\]"),
    (dict(draft=Draft("self", layers=32)), "fewer than"),
])
def test_bad_arguments_name_the_field(kwargs: dict, match: str) -> None:
    args = dict(batch=2, context=100, draft=Draft("self", layers=2), draft_length=2, acceptance=ChainAcceptance((0.5,)))
    args.update(kwargs)
    with pytest.raises(ArgumentError, match=match):
        estimate_speculative("llama2-7b", "h100-sxm", args.pop("batch"), **args)


def test_bad_drafts_name_the_field() -> None:
    for kwargs, match in ((dict(kind="tree"), "draft.kind"), (dict(kind="heads"), "draft.heads"),
                          (dict(kind="model"), "draft.model"),
                          (dict(kind="self", layers=0), "draft.layers"), (dict(kind="free", layers=2), "draft.layers"),
                          (dict(kind="self", layers=2, model="llama2-7b"), "draft.model")):
        with pytest.raises(ArgumentError, match=match):
            Draft(**kwargs)


def test_tree_verify_flops_by_hand_on_every_mapper() -> None:
    """A (2, 2, 1) tree (10 nodes): each request's 11 queries attend C cached keys each, and 1 + 2*2
    + 4*3 + 4*4 = 33 new ones (root: itself; a depth-d node: the root, its d - 1 drafted ancestors
    and itself), not the 66 of a causal chunk of 11."""
    from decodex.workloads.acceptance import TreeAcceptance
    from decodex.workloads.token_tree import TokenTree

    tree = TokenTree.branching((2, 2, 1))
    acceptance = TreeAcceptance(tree, (0.5, 0.3, 0.4, 0.3, 0.4, 0.3, 0.6, 0.6, 0.6, 0.6))
    batch, context = 4, 1000
    for system, precision in SYSTEMS:
        got = estimate_speculative("llama2-7b", system, batch, context=context, draft=Draft(), draft_length=10,
                                   acceptance=acceptance, precision=precision)
        attention = next(r for r in got.verify.records if r.kind == "attention")
        assert tree.attended_new_keys == 33
        assert attention.flops == pytest.approx(2 * 32 * 256 * batch * (11 * context + 33)), system
        assert got.tokens_per_step == pytest.approx(1 + acceptance.expected_accepted())
        assert got.verify.tokens == batch * 11


def test_a_chain_shaped_tree_is_the_chain() -> None:
    from decodex.sim.speculative import verify_step
    from decodex.workloads.token_tree import TokenTree

    chain = ChainAcceptance((0.8, 0.6))
    as_chain = estimate_speculative("llama2-7b", "duplex", 8, context=900, draft=Draft(), draft_length=4,
                                    acceptance=chain)
    as_tree = estimate_speculative("llama2-7b", "duplex", 8, context=900, draft=Draft(), draft_length=4,
                                   acceptance=chain.for_tree(TokenTree.chain(4)))
    assert as_tree.step_time_s == as_chain.step_time_s and as_tree.verify.records == as_chain.verify.records
    assert as_tree.expected_accepted == pytest.approx(as_chain.expected_accepted)
    # with a branching tree, fewer attended pairs than the causal chunk of the same size
    branching = verify_step("llama2-7b", "h100-sxm", 8, context=900, tree=TokenTree.branching((2, 2)))
    causal = verify_step("llama2-7b", "h100-sxm", 8, context=900, tree=TokenTree.chain(6))
    assert branching.flops < causal.flops
    with pytest.raises(ArgumentError, match="must equal the tree"):
        estimate_speculative("llama2-7b", "duplex", 8, context=900, draft=Draft(), draft_length=3,
                             acceptance=chain.for_tree(TokenTree.chain(4)))


def test_a_batch_keeps_its_tree_in_subsets() -> None:
    from decodex.workloads.batch import Batch
    from decodex.workloads.token_tree import TokenTree

    tree = TokenTree.branching((2,))
    batch = Batch(np.array([5, 6, 7]), np.array([3, 3, 1]), np.ones(3, bool), tree=tree)
    part = batch.subset(np.array([0, 2]))
    assert part.tree is tree and part.context_lens.tolist() == [5, 7] and part.query_lens.tolist() == [3, 1]
    with pytest.raises(ArgumentError, match=r"batch\.tree"):
        Batch(np.array([5]), np.array([1]), np.ones(1, bool), tree=(-1,))


@pytest.mark.parametrize(("system", "precision"), SYSTEMS)
def test_the_simulated_step_is_made_of_simulated_steps(system: str, precision: str) -> None:
    from decodex.sim.simulate import SimResult, simulate
    from decodex.workloads.batch import Batch

    got = estimate_speculative("llama2-7b", system, 4, context=700, draft=Draft("self", layers=4), draft_length=3,
                               acceptance=ChainAcceptance((0.8,)), precision=precision, engine="simulate")
    assert isinstance(got.verify, SimResult) and got.verify.timeline
    assert all(isinstance(step, SimResult) for step in got.drafts) and len(got.drafts) == 3
    queries = Batch(np.full(4, 700), np.full(4, 4), np.ones(4, bool), verifies=np.ones(4, bool))
    assert got.verify.step_time_s == simulate("llama2-7b", system, queries, precision=precision).step_time_s
    assert got.plain.step_time_s == simulate("llama2-7b", system, 4, context=700, precision=precision).step_time_s
    assert got.step_time_s == pytest.approx(got.draft_time_s + got.verify.step_time_s, rel=1e-12)
    # the engine runs the analytical plan: overlap can only shorten it, contention lengthen it a little
    estimated = estimate_speculative("llama2-7b", system, 4, context=700, draft=Draft("self", layers=4),
                                     draft_length=3, acceptance=ChainAcceptance((0.8,)), precision=precision)
    assert got.speedup == pytest.approx(estimated.speedup, rel=0.25)
    with pytest.raises(ArgumentError, match="engine: 'des' not one of estimate, simulate"):
        estimate_speculative("llama2-7b", system, 4, context=700, draft=Draft(), draft_length=3,
                             acceptance=ChainAcceptance((0.8,)), precision=precision, engine="des")


@pytest.mark.parametrize("system", ["a100-80g", "h100-sxm"])
def test_a_verify_costs_at_least_plain_decode_and_grows_with_k(system: str) -> None:
    """A verify's attention streams each request's KV once, as decode does, with k + 1 query rows
    per block (the GPU's decode-attention kernel, not the prefill roofline); a longer draft never
    makes it cheaper."""
    from decodex.sim.speculative import verify_step
    from decodex.workloads.token_tree import TokenTree

    for batch, context in ((1, 600), (16, 2000)):
        plain = estimate("llama2-7b", system, batch, context=context, precision="fp16")
        times = [verify_step("llama2-7b", system, batch, context=context, tree=TokenTree.chain(k),
                             precision="fp16").step_time_s for k in (1, 2, 4, 8)]
        assert plain.step_time_s <= times[0] and times == sorted(times)
        attention = next(r for r in verify_step("llama2-7b", system, batch, context=context,
                                                tree=TokenTree.chain(2), precision="fp16").records
                         if r.name == "attention")
        plain_attention = next(r for r in plain.records if r.name == "attention")
        assert attention.time_s >= plain_attention.time_s
        assert attention.time_s < 1.5 * plain_attention.time_s  # the KV stream dominates, as in decode


def test_the_afd_mapper_verifies_too() -> None:
    """Attention-FFN disaggregation (Step-3 on 2A2F): plain decode at k = 0; a verify of k + 1 tokens
    per request sends (k + 1) x the tokens to the FFN side, and an always-accepted free draft pays."""
    plain = estimate("step3", "step3-2a2f-h800", 16, context=2048, precision="fp8")
    zero = estimate_speculative("step3", "step3-2a2f-h800", 16, context=2048, draft=Draft(), draft_length=0,
                                acceptance=ChainAcceptance((0.7,)), precision="fp8")
    assert zero.step_time_s == plain.step_time_s and zero.verify.mapper == "afd"
    two = estimate_speculative("step3", "step3-2a2f-h800", 16, context=2048, draft=Draft(), draft_length=2,
                               acceptance=ChainAcceptance((1.0,)), precision="fp8")
    assert two.verify.tokens == 3 * 16 and two.tokens_per_step == 3.0
    assert plain.step_time_s < two.verify.step_time_s < 3 * plain.step_time_s and two.speedup > 1
