"""A speculative decode step: draft k tokens (or a tree of them), verify them in one pass of the target.

One step of a batch of ``B`` requests holding ``C`` cached tokens each:

1. **Draft** (:class:`~sim.speculative_draft.Draft`: a draft model, the target's first layers,
   Medusa-style decoding heads, or free): ``k`` tokens per request one after another, or a tree
   level by level (:mod:`sim.speculative_draft` prices them).

2. **Verify**: the target over ``k + 1`` query tokens per request (the last emitted token and
   the ``k`` drafted ones; a :class:`~workloads.batch.Batch` with ``query_lens = k + 1``), the
   attention causal over them for a chain, with the tree's mask for a tree
   (:class:`~workloads.token_tree.TokenTree`), logits at every query token. The verify writes the
   K/V of all ``k + 1`` tokens, as the kernels do before attending them; the cache then keeps the
   ``1 + accepted`` tokens and drops the rest without moving any bytes (vLLM frees the rejected
   slots).

The step emits ``1 + E[accepted]`` tokens per request (:mod:`workloads.acceptance`); its time is
the draft's plus the verify's (no overlap). ``k = 0`` is plain decode: no draft, a verify of one
token per request, the same StepResult as :func:`sim.estimate.estimate`. Times in s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from decodex.core.errors import ArgumentError
from decodex.hw_models.system import SystemSpec, load_system
from decodex.sim.estimate import estimate
from decodex.sim.results import StepResult
from decodex.sim.speculative_draft import Draft, draft_steps, step_pricer, tree_draft_steps
from decodex.workloads.acceptance import ChainAcceptance, EmpiricalAcceptance, TreeAcceptance
from decodex.workloads.batch import MAX_BATCH_REQUESTS, MAX_TOKENS_PER_REQUEST, Batch, is_whole
from decodex.workloads.catalog import load_model
from decodex.workloads.model_config import ModelConfig
from decodex.workloads.parallelism import Parallelism
from decodex.workloads.token_tree import MAX_TREE_NODES, TokenTree

__all__ = ["Draft", "SpeculativeParts", "SpeculativeResult", "draft_steps", "estimate_speculative",
           "interleaved_speculative", "speculative_parts", "step_pricer", "verify_step"]


@dataclass(frozen=True)
class SpeculativeResult:
    """One speculative step (times in s, per replica): the plain decode step it replaces, the
    verify step, the draft steps, and what the step gives per request."""

    plain: StepResult
    verify: StepResult
    drafts: tuple[StepResult, ...]
    draft_length: int
    expected_accepted: float  # drafted tokens accepted per request and step
    draft_time_s: float
    step_time_s: float
    fits: bool
    reason: str
    other_verifies: tuple[StepResult, ...] = ()  # the other sub-batch's verify of an interleaved step

    @property
    def tokens_per_step(self) -> float:
        """Tokens each request emits per step: the accepted drafted ones and the target's own."""
        return 1.0 + self.expected_accepted

    @property
    def time_per_token_s(self) -> float:
        """Time per emitted token of one request (TPOT), s."""
        return self.step_time_s / self.tokens_per_step

    @property
    def tokens_per_s(self) -> float:
        """Tokens emitted per second by the whole batch."""
        return self.plain.batch_size * self.tokens_per_step / self.step_time_s

    @property
    def speedup(self) -> float:
        """Plain decode's time per token over this step's (> 1: speculation pays)."""
        return self.plain.step_time_s / self.time_per_token_s

    @property
    def energy_j(self) -> float:
        """The step's energy: the draft steps' and the verify's, J."""
        return (self.verify.energy_j + sum(step.energy_j for step in self.drafts)
                + sum(step.energy_j for step in self.other_verifies))

    @property
    def energy_per_token_j(self) -> float:
        """Energy per emitted token, J."""
        return self.energy_j / (self.plain.batch_size * self.tokens_per_step)

    @property
    def verify_intensity(self) -> float:
        """The verify step's FLOP per byte moved (plain decode's times about k + 1 while weights dominate)."""
        return self.verify.flops / self.verify.bytes if self.verify.bytes > 0 else 0.0


def estimate_speculative(model: str | Path | ModelConfig, system: str | Path | SystemSpec, batch: int, *,
                         context: int, draft: Draft, draft_length: int,
                         acceptance: ChainAcceptance | EmpiricalAcceptance | TreeAcceptance, precision: str = "bf16",
                         parallelism: Parallelism | None = None, mapper: str | None = None,
                         engine: str = "estimate") -> SpeculativeResult:
    """One speculative step of ``batch`` requests holding ``context`` cached tokens each, drafting
    ``draft_length`` tokens per request (see module docstring); ``acceptance`` gives E[accepted].
    ``mapper``: the target's (default its system's). ``engine``: ``"estimate"`` (analytical) or
    ``"simulate"`` (every step through the discrete-event engine; the results are SimResults with
    their timelines). Times in s."""
    if isinstance(acceptance, TreeAcceptance):
        return _tree_step(model, system, batch, context, draft, draft_length, acceptance, precision, parallelism,
                          mapper, engine)
    if not isinstance(acceptance, ChainAcceptance | EmpiricalAcceptance):
        raise ArgumentError(f"acceptance: a ChainAcceptance, EmpiricalAcceptance or TreeAcceptance, got "
                            f"{type(acceptance).__name__}")
    parts = speculative_parts(model, system, batch, context=context, draft=draft, lengths=(draft_length,),
                              precision=precision, parallelism=parallelism, mapper=mapper, engine=engine)
    return parts.step(int(draft_length), acceptance.expected_accepted(int(draft_length)))


@dataclass(frozen=True)
class SpeculativeParts:
    """The steps speculative decoding is made of, priced once for several draft lengths: the plain
    decode step, the verify step of each length, and the draft steps of the longest (a shorter
    chain is their first steps) or, in ``drafts_by_length``, of each length (decoding heads, a
    tree); :meth:`step` puts one together for an acceptance."""

    plain: StepResult
    verifies: dict[int, StepResult]
    drafts: tuple[StepResult, ...]
    draft: Draft
    shares_memory: bool  # the draft holds weights on the target's devices (their memory holds both)
    drafts_by_length: dict[int, tuple[StepResult, ...]] | None = None

    def step(self, draft_length: int, expected_accepted: float) -> SpeculativeResult:
        """The step drafting ``draft_length`` tokens (one of the lengths priced) of which
        ``expected_accepted`` are accepted per request on average."""
        if draft_length not in self.verifies:
            raise ArgumentError(f"draft_length: {draft_length!r} was not priced (lengths: {sorted(self.verifies)})")
        if not 0.0 <= expected_accepted <= draft_length:
            raise ArgumentError(f"expected_accepted: {expected_accepted!r} must be in [0, {draft_length}]")
        verify = self.verifies[draft_length]
        drafts = self.drafts[:draft_length] if self.drafts_by_length is None else self.drafts_by_length[draft_length]
        draft_time = sum(step.step_time_s for step in drafts)
        fits, reason = verify.fits, verify.reason
        if fits and self.shares_memory and drafts:
            need = verify.memory_required_bytes + max(s.weight_bytes + s.kv_bytes for s in drafts)
            if need > verify.memory_capacity_bytes:
                fits, reason = False, (f"target and draft need {need / 1e9:.1f} GB per device together; "
                                       f"{verify.device} has {verify.memory_capacity_bytes / 1e9:.1f} GB for them")
        return SpeculativeResult(plain=self.plain, verify=verify, drafts=drafts, draft_length=draft_length,
                                 expected_accepted=float(expected_accepted), draft_time_s=draft_time,
                                 step_time_s=draft_time + verify.step_time_s, fits=fits, reason=reason)


def speculative_parts(model: str | Path | ModelConfig, system: str | Path | SystemSpec, batch: int, *,
                      context: int, draft: Draft, lengths: Sequence[int], precision: str = "bf16",
                      parallelism: Parallelism | None = None, mapper: str | None = None,
                      engine: str = "estimate") -> SpeculativeParts:
    """Price the plain step, a verify step for each draft length in ``lengths`` and the draft steps
    of the longest (arguments as :func:`estimate_speculative`)."""
    price = step_pricer(engine)
    if isinstance(lengths, str | bytes) or not isinstance(lengths, Sequence) or not lengths:
        raise ArgumentError(f"draft lengths: a non-empty sequence of integers, got {lengths!r:.80}")
    for length in lengths:
        if not is_whole(length) or not 0 <= length <= MAX_TREE_NODES:
            raise ArgumentError(f"draft_length: {length!r} must be an integer in [0, {MAX_TREE_NODES}]")
    if not isinstance(draft, Draft):
        raise ArgumentError(f"draft: must be a Draft, got {type(draft).__name__}")
    if not is_whole(batch) or not 1 <= batch <= MAX_BATCH_REQUESTS:
        raise ArgumentError(f"batch: {batch!r} must be an integer in [1, {MAX_BATCH_REQUESTS}]")
    longest = max(int(length) for length in lengths)
    most = MAX_TOKENS_PER_REQUEST - longest - 1  # the verify's keys stay within a request's limit
    if not is_whole(context) or not 0 <= context <= most:
        raise ArgumentError(f"context: {context!r} must be an integer in [0, {most}]")
    requests = int(batch)
    target = load_model(model)
    target_system = load_system(system)
    plain = price(target, target_system, requests, context=context, precision=precision, mapper=mapper,
                  parallelism=parallelism)
    verifies = {length: verify_step(target, target_system, requests, context=int(context), tree=TokenTree.chain(length),
                                    precision=precision, parallelism=parallelism, mapper=mapper, engine=engine)
                if length else plain for length in sorted({int(length) for length in lengths})}
    shares = draft.holds_weights_on(target_system)
    if draft.kind == "heads":  # one pass of k heads over the verify's k + 1 tokens: priced per length
        by_length = {k: draft_steps(target, target_system, requests, int(context), k, draft, precision, parallelism,
                                    engine) for k in verifies}
        return SpeculativeParts(plain, verifies, (), draft, shares, by_length)
    drafts = draft_steps(target, target_system, requests, int(context), longest, draft, precision, parallelism,
                         engine)
    return SpeculativeParts(plain, verifies, drafts, draft, shares)


def interleaved_speculative(model: str | Path | ModelConfig, system: str | Path | SystemSpec, batch: int, *,
                            context: int, draft: Draft, draft_length: int,
                            acceptance: ChainAcceptance | EmpiricalAcceptance, precision: str = "bf16",
                            parallelism: Parallelism | None = None, mapper: str | None = None) -> SpeculativeResult:
    """A speculative step with the draft on another system, hidden behind the verify: the batch is
    split into two sub-batches (``ceil(B / 2)`` and ``floor(B / 2)`` requests) that alternate, so
    that while the target verifies one the draft system drafts for the other. In steady state each
    request advances one speculative step per round of ``max(draft_1, verify_2) + max(draft_2,
    verify_1)`` (each sub-batch's verify reads the target's weights on its own: the price of
    interleaving, as NeuPIMs' sub-batches pay it). Arguments as :func:`estimate_speculative`;
    ``draft`` must be a draft model on another system and ``batch`` at least 2. Times in s."""
    if not isinstance(draft, Draft) or draft.kind != "model" or draft.holds_weights_on(load_system(system)):
        raise ArgumentError("draft: interleaving hides a draft that runs on other devices: a draft model on another "
                            "system (model:NAME@SYSTEM)")
    if not is_whole(batch) or not 2 <= batch <= MAX_BATCH_REQUESTS:
        raise ArgumentError(f"batch: {batch!r} must be an integer in [2, {MAX_BATCH_REQUESTS}] (two sub-batches)")
    if not isinstance(acceptance, ChainAcceptance | EmpiricalAcceptance):
        raise ArgumentError(f"acceptance: a ChainAcceptance or EmpiricalAcceptance, got {type(acceptance).__name__}")
    k = int(draft_length)
    expected = acceptance.expected_accepted(k)
    halves = [speculative_parts(model, system, size, context=context, draft=draft, lengths=(k,), precision=precision,
                                parallelism=parallelism, mapper=mapper).step(k, expected)
              for size in (-(-int(batch) // 2), int(batch) // 2)]
    first, second = halves
    round_s = (max(first.draft_time_s, second.verify.step_time_s)
               + max(second.draft_time_s, first.verify.step_time_s))
    plain = estimate(model, system, int(batch), context=context, precision=precision, mapper=mapper,
                     parallelism=parallelism)
    fits, reason = (first.fits and second.fits), first.reason or second.reason
    return SpeculativeResult(plain=plain, verify=first.verify, drafts=first.drafts + second.drafts, draft_length=k,
                             expected_accepted=float(expected), draft_time_s=first.draft_time_s + second.draft_time_s,
                             step_time_s=round_s, fits=fits, reason=reason, other_verifies=(second.verify,))


def verify_step(model: str | Path | ModelConfig, system: str | Path | SystemSpec, batch: int, *, context: int,
                tree: TokenTree, precision: str = "bf16", parallelism: Parallelism | None = None,
                mapper: str | None = None, engine: str = "estimate") -> StepResult:
    """The target's verify step over ``tree``'s drafted tokens for each of ``batch`` requests
    holding ``context`` cached tokens: ``tree.query_tokens`` query tokens each, attention with the
    tree's mask (a chain's is the causal one); ``engine`` as for :func:`estimate_speculative`.
    Times in s."""
    price = step_pricer(engine)
    if not isinstance(tree, TokenTree):
        raise ArgumentError(f"tree: must be a TokenTree, got {type(tree).__name__}")
    if not is_whole(batch) or not 1 <= batch <= MAX_BATCH_REQUESTS:
        raise ArgumentError(f"batch: {batch!r} must be an integer in [1, {MAX_BATCH_REQUESTS}]")
    requests = int(batch)
    queries = Batch(np.full(requests, context), np.full(requests, tree.query_tokens), np.ones(requests, bool),
                    tree=None if tree.is_chain else tree, verifies=np.full(requests, tree.size > 0))
    return price(model, system, queries, precision=precision, mapper=mapper, parallelism=parallelism)


def _tree_step(model: str | Path | ModelConfig, system: str | Path | SystemSpec, batch: int, context: int,
               draft: Draft, draft_length: int, acceptance: TreeAcceptance, precision: str,
               parallelism: Parallelism | None, mapper: str | None, engine: str) -> SpeculativeResult:
    """:func:`estimate_speculative` of a drafted tree: its drafting
    (:func:`~sim.speculative_draft.tree_draft_steps`), its verify (:func:`verify_step`) and
    ``acceptance``'s E[accepted]."""
    tree = acceptance.tree
    if draft_length != tree.size:
        raise ArgumentError(f"draft_length: {draft_length!r} must equal the tree's {tree.size} drafted tokens")
    if not isinstance(draft, Draft):
        raise ArgumentError(f"draft: must be a Draft, got {type(draft).__name__}")
    target, target_system = load_model(model), load_system(system)
    plain = step_pricer(engine)(target, target_system, batch, context=context, precision=precision, mapper=mapper,
                                parallelism=parallelism)
    verify = verify_step(target, target_system, batch, context=context, tree=tree, precision=precision,
                         parallelism=parallelism, mapper=mapper, engine=engine) if tree.size else plain
    drafts = tree_draft_steps(target, target_system, int(batch), int(context), tree, draft, precision, parallelism,
                              engine)
    shares = draft.holds_weights_on(target_system)
    parts = SpeculativeParts(plain, {tree.size: verify}, (), draft, shares, {tree.size: drafts})
    return parts.step(tree.size, acceptance.expected_accepted())
