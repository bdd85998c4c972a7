"""Speculative decoding in a serving run: every decode iteration drafts and verifies.

With a :class:`Speculation`, each decode of an iteration is a speculative step
(:mod:`sim.speculative`): the draft proposes ``draft_length`` tokens per decoding request, the
target verifies them in the same forward pass as the iteration's prefill chunks (the decodes'
query length is ``draft_length + 1``), and request ``i`` emits ``1 + a_i`` tokens, ``a_i`` drawn
from the acceptance model with the run's seeded generator (a stream of its own, so the workload's
draws do not move), and capped at the tokens the request still has to produce (tokens are
conserved: every request emits exactly its output length).

``schedule = "heuristic"`` gives every request a draft length of its own that changes from step
to step as Hugging Face's assisted generation changes it (:mod:`sim.speculative_schedule`: start
at ``draft_length``, +2 after a chain accepted whole, -1 otherwise, at least 1), capped at
``max_draft_length``; an iteration's decodes then verify different numbers of tokens.

Pricing (:class:`SpeculativeStepTimes`): the verify iteration through the step model, plus the
``draft_length`` draft decode steps of the decoding requests at contexts ``C .. C + k - 1``
(none for a ``free`` draft), plus, for a separate draft model, its prefill of the iteration's
prompt chunks (it keeps a KV cache of its own). Drafting and verifying run one after the other.

Memory: the verify writes the K/V of ``k + 1`` tokens before the rejected ones are dropped, so a
decode reserves KV blocks ``k`` tokens ahead (vLLM's lookahead slots); a draft model on the
target's devices takes its weights out of the KV budget and adds its own K/V bytes per token, and
decoding heads take their weights (:func:`share_capacity`). A request's sequence stays ``k``
tokens inside the model's context window, so that its last verify fits.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from decodex.core.errors import ArgumentError
from decodex.hw_models.system import SystemSpec, load_system
from decodex.sim.estimate import estimate
from decodex.sim.results import StepResult
from decodex.sim.serving.kv_cache import KVCapacity
from decodex.sim.serving.step_times import StepKey, StepTimes, split_evenly
from decodex.sim.speculative_draft import Draft, draft_steps, heads_step
from decodex.sim.speculative_schedule import HEURISTIC_DOWN, HEURISTIC_UP
from decodex.workloads.acceptance import ChainAcceptance, EmpiricalAcceptance
from decodex.workloads.batch import Batch, Routing, is_whole
from decodex.workloads.catalog import load_model
from decodex.workloads.model_config import ModelConfig
from decodex.workloads.parallelism import Parallelism
from decodex.workloads.precision import Precision
from decodex.workloads.token_tree import MAX_TREE_NODES

SPECULATION_STREAM = 0x5BEC  # seeds the acceptance draws apart from the workload's (seed, stream)
KV_PROBE_CONTEXTS = (1000, 2000)  # contexts (tokens) whose KV bytes differ by 1000 tokens' worth


SCHEDULES = ("fixed", "heuristic")
# default longest draft of the heuristic schedule (transformers sets none; a cap bounds the KV lookahead)
HEURISTIC_CAP = 16


@dataclass(frozen=True)
class Speculation:
    """Speculative decoding for :func:`sim.serving.serve`: ``draft`` (a :class:`Draft`) proposes
    ``draft_length`` tokens per decode and ``acceptance`` (a chain's per-position probabilities,
    or a measured distribution) says how many are accepted. ``schedule``: ``"fixed"``, or
    ``"heuristic"`` (module doc: each request's length moves from ``draft_length`` within
    [1, ``max_draft_length``], default max(16, ``draft_length``))."""

    draft: Draft
    draft_length: int
    acceptance: ChainAcceptance | EmpiricalAcceptance
    schedule: str = "fixed"
    max_draft_length: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.draft, Draft):
            raise ArgumentError(f"speculation.draft: must be a Draft, got {type(self.draft).__name__}")
        if not is_whole(self.draft_length) or not 1 <= self.draft_length <= MAX_TREE_NODES:
            raise ArgumentError(f"speculation.draft_length: {self.draft_length!r} must be an integer in "
                                f"[1, {MAX_TREE_NODES}]")
        object.__setattr__(self, "draft_length", int(self.draft_length))
        if self.schedule not in SCHEDULES:
            raise ArgumentError(f"speculation.schedule: {self.schedule!r} not one of {', '.join(SCHEDULES)}")
        most = self.max_draft_length
        if self.schedule == "fixed" and most is not None:
            raise ArgumentError("speculation.max_draft_length: only the heuristic schedule changes the length")
        if self.schedule == "heuristic":
            most = max(HEURISTIC_CAP, self.draft_length) if most is None else most
            if not is_whole(most) or not self.draft_length <= most <= MAX_TREE_NODES:
                raise ArgumentError(f"speculation.max_draft_length: {most!r} must be an integer in "
                                    f"[{self.draft_length}, {MAX_TREE_NODES}]")
            object.__setattr__(self, "max_draft_length", int(most))
        if not isinstance(self.acceptance, ChainAcceptance | EmpiricalAcceptance):
            raise ArgumentError(f"speculation.acceptance: a ChainAcceptance or EmpiricalAcceptance, got "
                                f"{type(self.acceptance).__name__}")
        self.acceptance.expected_accepted(self.lookahead)  # a measured one must cover every length drafted
        if self.draft.kind == "heads" and self.lookahead > self.draft.heads:
            raise ArgumentError(f"speculation: drafts of up to {self.lookahead} tokens need as many decoding heads; "
                                f"the draft has {self.draft.heads}")

    @property
    def lookahead(self) -> int:
        """The longest draft a decode may verify (tokens it writes beyond its next one)."""
        return self.draft_length if self.max_draft_length is None else self.max_draft_length

    @property
    def label(self) -> str:
        """``"<draft> k=<length>"``, e.g. ``"self:4 k=3"`` (``k=5..16`` under the heuristic schedule)."""
        draft = self.draft
        adapter = "+adapter" if draft.adapter else ""
        where = {"free": "free", "self": f"self:{draft.layers}{adapter}",
                 "heads": f"heads:{draft.heads}"}.get(draft.kind)
        if where is None:
            model = draft.model.name if isinstance(draft.model, ModelConfig) else str(draft.model)
            system = draft.system.name if isinstance(draft.system, SystemSpec) else draft.system
            where = f"model:{model}" + (f"@{system}" if system else "")
        length = self.draft_length if self.schedule == "fixed" else f"{self.draft_length}..{self.max_draft_length}"
        return f"{where} k={length}"

    @property
    def expected_accepted(self) -> float:
        """E[drafted tokens accepted] per decode step at ``draft_length`` (the fixed schedule's)."""
        return self.acceptance.expected_accepted(self.draft_length)

    def draws(self, seed: int, replica: int = 0) -> AcceptanceDraws:
        """The accepted-token draws of one replica of a run, seeded by ``seed`` (the run's seed)
        and the replica's index (each replica of a cluster draws its own)."""
        return AcceptanceDraws(self, np.random.default_rng([int(seed), SPECULATION_STREAM, int(replica)]))


class AcceptanceDraws:
    """Each request's draft length and accepted drafted tokens, one call per iteration, from one
    generator (the same run draws the same tokens). ``drafted``/``accepted`` count drafted
    tokens and those that were accepted and emitted (a request's last step may need fewer than
    were accepted); ``steps`` the decode steps that drafted."""

    def __init__(self, speculation: Speculation, rng: np.random.Generator) -> None:
        self.speculation = speculation
        self.rng = rng
        self.lengths = np.zeros(0, dtype=np.int64)  # per request, grown on first sight
        self.drafted = 0
        self.accepted = 0
        self.steps = 0

    def lengths_of(self, ids: np.ndarray) -> np.ndarray:
        """The draft length of each of requests ``ids`` this step."""
        if ids.size and int(ids.max()) >= self.lengths.size:
            grown = np.full(int(ids.max()) + 1, self.speculation.draft_length, dtype=np.int64)
            grown[: self.lengths.size] = self.lengths
            self.lengths = grown
        return self.lengths[ids]

    def drafted_for(self, ids: np.ndarray) -> int:
        """Tokens requests ``ids`` draft this step in all."""
        return int(self.lengths_of(ids).sum())

    def emitted(self, ids: np.ndarray, remaining: np.ndarray) -> np.ndarray:
        """Tokens each decode ``ids`` emits this step: ``1 + accepted`` of its own draft length, at
        most ``remaining`` (its output tokens still to produce, >= 1); int64. Under the heuristic
        schedule each request's next length follows from this step's draw."""
        lengths = self.lengths_of(ids)
        accepted = np.empty(ids.size, dtype=np.int64)
        for k in np.unique(lengths):  # one vectorized draw per length (one for the fixed schedule)
            rows = lengths == k
            accepted[rows] = self.speculation.acceptance.draw(int(k), self.rng, int(rows.sum()))
        emit = np.minimum(accepted + 1, remaining)
        self.steps += int(ids.size)
        self.drafted += int(lengths.sum())
        self.accepted += int(emit.sum()) - int(ids.size)
        if self.speculation.schedule == "heuristic":
            most = self.speculation.lookahead
            self.lengths[ids] = np.where(accepted == lengths, np.minimum(lengths + HEURISTIC_UP, most),
                                         np.maximum(lengths - HEURISTIC_DOWN, 1))
        return emit


class SpeculativeStepTimes(StepTimes):
    """:class:`StepTimes` of speculative iterations (module doc): decodes verify their drafted
    tokens plus one, and their draft steps are added; keyed as StepTimes plus the tokens the
    iteration's decodes draft in all (:meth:`lookup_drafted`), which the representative batch
    splits evenly over them."""

    def __init__(self, model: ModelConfig, system: SystemSpec, *, speculation: Speculation, precision: Precision,
                 parallelism: Parallelism, bucket_width: float = 0.01, routing: Routing | None = None) -> None:
        super().__init__(model, system, precision=precision, parallelism=parallelism, bucket_width=bucket_width,
                         routing=routing)
        self.speculation = speculation

    def lookup_drafted(self, drafted: int, decodes: int, decode_context: int, prefills: int, prefill_tokens: int,
                       prefill_context: int) -> tuple[float, float]:
        """As :meth:`StepTimes.lookup`, the ``decodes`` drafting ``drafted`` tokens in all."""
        return self.cached((decodes, prefills, prefill_tokens, self.bucket(decode_context),
                            self.bucket(prefill_context), drafted))

    def _drafted(self, key: tuple[int, ...]) -> int:
        """Tokens the key's decodes draft (a plain StepTimes key: the fixed length each)."""
        return int(key[5]) if len(key) > 5 else key[0] * self.speculation.draft_length

    def represented(self, key: StepKey) -> tuple[int, int]:
        """As :meth:`StepTimes.represented`, each decode's verify kept inside the window (its
        longest draft's query tokens included)."""
        decode_sum, prefill_sum = super().represented(key)
        if self._window is not None and key[0]:
            decode_sum = min(decode_sum, key[0] * max(self._window - 1 - self.speculation.lookahead, 0))
        return decode_sum, prefill_sum

    def batch_for(self, key: StepKey) -> Batch:
        """The representative verify iteration of a key: the decodes query their drafted tokens plus
        one, the drafted tokens split evenly."""
        batch = super().batch_for(key)
        decodes = key[0]
        query = batch.query_lens.copy()
        if decodes:
            query[:decodes] = 1 + np.asarray(split_evenly(self._drafted(key), decodes))
        verifies = np.zeros(batch.num_requests, bool)
        verifies[:decodes] = True
        return Batch(batch.context_lens, query, batch.emits_token, batch.routing, verifies=verifies)

    def _price(self, key: StepKey) -> tuple[float, float]:
        batch = self.batch_for(key)
        verify = estimate(self.model, self.system, batch, precision=self.precision, parallelism=self.parallelism)
        time, energy = verify.step_time_s, verify.energy_j
        draft = self.speculation.draft
        decodes = key[0]
        if decodes and draft.kind != "free":
            for step in self._draft_steps(batch, decodes):
                time += step.step_time_s
                energy += step.energy_j
        if key[1] and draft.kind == "model":  # the draft model prefills the same prompt chunks
            prompts = batch.subset(np.arange(decodes, batch.num_requests))
            where = self.system if draft.system is None else load_system(draft.system)
            pre = estimate(draft.model, where, prompts,  # type: ignore[arg-type]
                           precision=draft.precision or self.precision.name)
            time += pre.step_time_s
            energy += pre.energy_j
        return time, energy

    def _draft_steps(self, batch: Batch, decodes: int) -> list[StepResult]:
        """The draft steps of the batch's first ``decodes`` requests, each drafting ``query - 1``
        tokens: draft step ``j`` runs the requests drafting more than ``j`` (all of them under the
        fixed schedule); decoding heads run once over every verify token."""
        draft, prec = self.speculation.draft, self.precision.name
        lengths = batch.query_lens[:decodes] - 1
        contexts = batch.context_lens[:decodes]
        if draft.kind == "heads":
            return [heads_step(self.model, self.system, decodes, contexts, rows=int(lengths.sum()) + decodes,
                               heads=int(draft.heads), precision=prec, parallelism=self.parallelism)]
        steps = []
        for j in range(int(lengths.max())):
            active = lengths > j
            steps += draft_steps(self.model, self.system, int(active.sum()), contexts[active] + j, 1, draft, prec,
                                 self.parallelism)
        return steps


def share_capacity(capacity: KVCapacity, speculation: Speculation | None, system: SystemSpec, model: ModelConfig,
                   precision: Precision, parallelism: Parallelism, kv_blocks: int | None) -> KVCapacity:
    """``capacity`` (of ``model`` on ``system``) less what the draft holds on the target's devices
    (module doc): a draft model's weights out of the free bytes and its K/V bytes per token added
    to the target's; decoding heads' weights out of the free bytes. Unchanged for other drafts, a
    draft model on another system, or a block count given by the user (``kv_blocks``)."""
    if speculation is None or kv_blocks is not None or not speculation.draft.holds_weights_on(system):
        return capacity
    draft = speculation.draft
    if draft.kind == "heads":
        heads = heads_step(model, system, 1, 1, rows=1, heads=int(draft.heads), precision=precision.name,
                           parallelism=parallelism)
        weights, per_token = heads.weight_bytes, 0.0
    else:
        low, high = (estimate(load_model(draft.model), system, 1, context=c,  # type: ignore[arg-type]
                              precision=draft.precision or precision.name) for c in KV_PROBE_CONTEXTS)
        weights = low.weight_bytes
        per_token = (high.kv_bytes - low.kv_bytes) / (KV_PROBE_CONTEXTS[1] - KV_PROBE_CONTEXTS[0])
    free = capacity.free_bytes - weights
    bytes_per_token = capacity.kv_bytes_per_token + per_token
    blocks = max(int(free // (capacity.block_size * bytes_per_token)), 0) if free > 0 else 0
    return dataclasses.replace(capacity, kv_bytes_per_token=bytes_per_token, free_bytes=free,
                               weight_bytes=capacity.weight_bytes + weights, total_blocks=blocks)
