"""A speculative decode step, analytically: draft k tokens, verify them in one pass of the target.

One step of a batch of ``B`` requests holding ``C`` cached tokens each:

1. **Draft**, ``k`` tokens per request, one after another (:class:`Draft`):

   - ``"model"``: a separate (small) model runs ``k`` decode steps of its own, at contexts
     ``C, C + 1, ... C + k - 1`` (its own KV cache), on the target's system or on another one
     (``Draft.system``: e.g. the draft on a PIM or FPGA, the verify on the GPU);
   - ``"self"``: the target's first ``layers`` layers with its LM head (an early-exit self-draft,
     Kangaroo's shallow sub-network; its adapter is not priced), sharing the target's weights and
     KV cache;
   - ``"free"``: no draft cost (an upper bound on what drafting can give).

2. **Verify**: the target over ``k + 1`` query tokens per request (the last emitted token and
   the ``k`` drafted ones; a :class:`~workloads.batch.Batch` with ``query_lens = k + 1``), the
   attention causal over them (a chain; :class:`~workloads.token_tree.TokenTree`). The verify
   writes the K/V of all ``k + 1`` tokens, as the kernels do before attending them; the cache then
   keeps the ``1 + accepted`` tokens and drops the rest without moving any bytes (vLLM frees the
   rejected slots).

The step emits ``1 + E[accepted]`` tokens per request (:mod:`workloads.acceptance`); its time is
the draft's plus the verify's (no overlap). ``k = 0`` is plain decode: no draft, a verify of one
token per request, the same StepResult as :func:`sim.estimate.estimate`. Times in s.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from decodex.core.errors import ArgumentError
from decodex.hw_models.system import SystemSpec, load_system
from decodex.sim.estimate import estimate
from decodex.sim.results import StepResult
from decodex.workloads.acceptance import ChainAcceptance, EmpiricalAcceptance, TreeAcceptance
from decodex.workloads.batch import MAX_BATCH_REQUESTS, MAX_TOKENS_PER_REQUEST, Batch, is_whole
from decodex.workloads.catalog import load_model
from decodex.workloads.model_config import ModelConfig
from decodex.workloads.parallelism import Parallelism
from decodex.workloads.token_tree import MAX_TREE_NODES, TokenTree

DRAFT_KINDS = ("model", "self", "free")
ENGINES = ("estimate", "simulate")  # the step model every part of a speculative step is priced with


@dataclass(frozen=True)
class Draft:
    """Who drafts (see module docstring): ``kind`` ``"model"`` (``model``, on ``system``, default
    the target's), ``"self"`` (the target's first ``layers`` layers) or ``"free"``; ``precision``
    of a draft model (default the target's)."""

    kind: str = "free"
    model: str | Path | ModelConfig | None = None
    layers: int = 0
    system: str | Path | SystemSpec | None = None
    precision: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in DRAFT_KINDS:
            raise ArgumentError(f"draft.kind: {self.kind!r} not one of {', '.join(DRAFT_KINDS)}")
        if self.kind == "model" and self.model is None:
            raise ArgumentError("draft.model: a draft of kind 'model' needs a model (catalog name, config.json path "
                                "or ModelConfig)")
        if self.kind != "model" and (self.model is not None or self.system is not None):
            raise ArgumentError(f"draft.model/system: only a draft of kind 'model' runs its own model "
                                f"(this one is {self.kind!r})")
        if self.kind == "self":
            if not is_whole(self.layers) or self.layers < 1:
                raise ArgumentError(f"draft.layers: {self.layers!r} must be an integer >= 1 (the target's first "
                                    "layers that draft)")
        elif self.layers != 0:
            raise ArgumentError(f"draft.layers: only a self-draft takes layers (this draft is {self.kind!r})")

    @classmethod
    def parse(cls, text: str) -> Draft:
        """A draft from ``free``, ``self:LAYERS``, ``model:NAME`` or ``model:NAME@SYSTEM`` (the
        draft model on another system); ArgumentError otherwise."""
        kind, _, rest = str(text).strip().partition(":")
        if kind == "free" and not rest:
            return cls("free")
        if kind == "self" and rest.isdigit() and int(rest) >= 1:
            return cls("self", layers=int(rest))
        name, _, system = rest.partition("@")
        if kind == "model" and name:
            return cls("model", model=name, system=system or None)
        raise ArgumentError(f"draft: {text!r} is not free, self:LAYERS, model:NAME or model:NAME@SYSTEM")


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
        return self.verify.energy_j + sum(step.energy_j for step in self.drafts)

    @property
    def energy_per_token_j(self) -> float:
        """Energy per emitted token, J."""
        return self.energy_j / (self.plain.batch_size * self.tokens_per_step)

    @property
    def verify_intensity(self) -> float:
        """The verify step's FLOP per byte moved (plain decode's times about k + 1 while weights dominate)."""
        return self.verify.flops / self.verify.bytes if self.verify.bytes > 0 else 0.0


def step_pricer(engine: str) -> Callable[..., StepResult]:
    """The step model of ``engine`` (``"estimate"`` or ``"simulate"``), called as ``estimate`` is."""
    if engine == "estimate":
        return estimate
    if engine == "simulate":
        from decodex.sim.simulate import simulate  # simpy loads on use

        return simulate
    raise ArgumentError(f"engine: {engine!r:.40} not one of {', '.join(ENGINES)}")


def _self_draft_model(model: ModelConfig, layers: int) -> ModelConfig:
    """The target's first ``layers`` layers with its embedding, final norm and LM head."""
    if layers >= model.num_layers:
        raise ArgumentError(f"draft.layers: {layers} must be fewer than the target's {model.num_layers} layers")
    return dataclasses.replace(model, name=f"{model.name}[:{layers}]", num_layers=layers,
                               layer_kinds=model.layer_kinds[:layers])


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
    draft is their first steps); :meth:`step` puts one together for an acceptance."""

    plain: StepResult
    verifies: dict[int, StepResult]
    drafts: tuple[StepResult, ...]
    draft: Draft
    shares_memory: bool  # the draft model runs on the target's devices (their memory holds both)

    def step(self, draft_length: int, expected_accepted: float) -> SpeculativeResult:
        """The step drafting ``draft_length`` tokens (one of the lengths priced) of which
        ``expected_accepted`` are accepted per request on average."""
        if draft_length not in self.verifies:
            raise ArgumentError(f"draft_length: {draft_length!r} was not priced (lengths: {sorted(self.verifies)})")
        if not 0.0 <= expected_accepted <= draft_length:
            raise ArgumentError(f"expected_accepted: {expected_accepted!r} must be in [0, {draft_length}]")
        verify = self.verifies[draft_length]
        drafts = self.drafts[:draft_length]
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
    drafts = draft_steps(target, target_system, requests, int(context), longest, draft, precision, parallelism,
                         engine)
    shares = draft.kind == "model" and (draft.system is None or load_system(draft.system) is target_system)
    return SpeculativeParts(plain, verifies, drafts, draft, shares)


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
    """:func:`estimate_speculative` of a drafted tree: its verify (:func:`verify_step`) and
    ``acceptance``'s E[accepted]; the tree is drafted for free (the time of drafting a tree with a
    model or heads is not priced yet)."""
    tree = acceptance.tree
    if draft_length != tree.size:
        raise ArgumentError(f"draft_length: {draft_length!r} must equal the tree's {tree.size} drafted tokens")
    if draft.kind != "free":
        raise ArgumentError(f"draft: a drafted tree is priced with a free draft for now, not {draft.kind!r} "
                            "(a chain prices every kind)")
    plain = step_pricer(engine)(model, system, batch, context=context, precision=precision, mapper=mapper,
                                parallelism=parallelism)
    verify = verify_step(model, system, batch, context=context, tree=tree, precision=precision,
                         parallelism=parallelism, mapper=mapper, engine=engine) if tree.size else plain
    parts = SpeculativeParts(plain, {tree.size: verify}, (), draft, shares_memory=False)
    return parts.step(tree.size, acceptance.expected_accepted())


def draft_steps(target: ModelConfig, system: SystemSpec, batch: int, context: int | np.ndarray, k: int,
                draft: Draft, precision: str, parallelism: Parallelism | None,
                engine: str = "estimate") -> tuple[StepResult, ...]:
    """The ``k`` draft decode steps of ``batch`` requests (none for a free draft), at contexts
    C ... C + k - 1 (``context``: C, one for all or one per request); times in s."""
    price = step_pricer(engine)
    if k == 0 or draft.kind == "free":
        return ()
    if draft.kind == "self":
        return tuple(price(_self_draft_model(target, int(draft.layers)), system, batch, context=context + j,
                              precision=precision, parallelism=parallelism) for j in range(k))
    where = system if draft.system is None else load_system(draft.system)
    return tuple(price(draft.model, where, batch, context=context + j,  # type: ignore[arg-type]
                          precision=draft.precision or precision) for j in range(k))
