"""Who drafts in a speculative step, and what drafting costs (:mod:`sim.speculative` puts the step together).

A :class:`Draft` is one of:

- ``"model"``: a separate (small) model with a KV cache of its own, on the target's system or
  another one (``Draft.system``: e.g. the draft on a PIM or FPGA, the verify on the GPU);
- ``"self"``: the target's first ``layers`` layers with its LM head (an early-exit self-draft,
  Kangaroo's shallow sub-network), sharing the target's weights and KV cache; with ``adapter``,
  Kangaroo's adapter between them and the LM head (Liu et al. 2024, arXiv 2404.18911: one
  multi-head attention and two normalization layers, with a KV cache of its own), priced as the
  attention block of the target's first layer and a second norm, placed where the mapper places
  that block;
- ``"heads"``: ``heads`` Medusa-style decoding heads on the target's last hidden states (Cai et
  al. 2024, arXiv 2401.10774: head ``i`` predicts the token ``i + 1`` ahead; each is a residual
  block of one ``d x d`` linear layer with SiLU and its own ``d x V`` LM head). They run once per
  step, on the hidden states of every token the verify ran (Medusa evaluates its heads at every
  candidate position and keeps the accepted one's), so a step's drafts cost one pass of all the
  heads however many tokens they propose (Medusa runs every head each step);
- ``"free"``: no draft cost (an upper bound on what drafting can give).

A chain of ``k`` tokens is drafted by ``k`` decode steps of a model or self-draft at contexts
``C .. C + k - 1`` (:func:`draft_steps`). A tree is drafted level by level
(:func:`tree_draft_steps`): level ``j`` runs the draft over the nodes of depth ``j - 1`` that
have children (the root for level 1) at context ``C + j - 1``, with logits at each of them; the
level's nodes attend causally among themselves there (they attend only their ancestors in the
tree), which over-counts ``w (w - 1) / 2`` key pairs per request for a level of ``w`` nodes:
nothing next to the ``w C`` cached ones.

Decoding heads are priced as ops placed where the target's mapper places its LM head (the same
unit of the same device), from the same unit models as every op (:func:`heads_step`); under
tensor parallelism their LM heads are split over the vocabulary as the target's, and the
residual blocks are replicated. Times in s.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from decodex.core.errors import ArgumentError
from decodex.hw_models.system import SystemSpec, load_system
from decodex.mappers.base import Placement, Plan
from decodex.sim.estimate import estimate, evaluate, plan_step
from decodex.sim.results import StepResult
from decodex.workloads.batch import Batch, is_whole
from decodex.workloads.block_config import ACTIVATION_FLOPS_PER_ELEMENT
from decodex.workloads.builder import RESIDUAL_ADD_FLOPS_PER_ELEMENT
from decodex.workloads.graph import Graph, LayerTemplate
from decodex.workloads.model_config import ModelConfig
from decodex.workloads.ops import ElementwiseOp, MatmulOp
from decodex.workloads.parallelism import Parallelism
from decodex.workloads.token_tree import MAX_TREE_NODES, TokenTree

DRAFT_KINDS = ("model", "self", "heads", "free")
ENGINES = ("estimate", "simulate")  # the step model every part of a speculative step is priced with


@dataclass(frozen=True)
class Draft:
    """Who drafts (module docstring): ``kind`` ``"model"`` (``model``, on ``system``, default the
    target's), ``"self"`` (the target's first ``layers`` layers), ``"heads"`` (``heads`` decoding
    heads) or ``"free"``; ``precision`` of a draft model (default the target's)."""

    kind: str = "free"
    model: str | Path | ModelConfig | None = None
    layers: int = 0
    system: str | Path | SystemSpec | None = None
    precision: str | None = None
    heads: int = 0
    adapter: bool = False

    def __post_init__(self) -> None:
        if self.kind not in DRAFT_KINDS:
            raise ArgumentError(f"draft.kind: {self.kind!r} not one of {', '.join(DRAFT_KINDS)}")
        if self.kind == "model" and self.model is None:
            raise ArgumentError("draft.model: a draft of kind 'model' needs a model (catalog name, config.json path "
                                "or ModelConfig)")
        if self.kind != "model" and (self.model is not None or self.system is not None):
            raise ArgumentError(f"draft.model/system: only a draft of kind 'model' runs its own model "
                                f"(this one is {self.kind!r})")
        for field, kind, what in (("layers", "self", "the target's first layers that draft"),
                                  ("heads", "heads", "decoding heads")):
            value = getattr(self, field)
            if self.kind == kind:
                if not is_whole(value) or not 1 <= value <= MAX_TREE_NODES:
                    raise ArgumentError(f"draft.{field}: {value!r} must be an integer in [1, {MAX_TREE_NODES}] "
                                        f"({what})")
            elif value != 0:
                raise ArgumentError(f"draft.{field}: only a draft of kind {kind!r} takes {field} (this draft is "
                                    f"{self.kind!r})")
        if not isinstance(self.adapter, bool) or (self.adapter and self.kind != "self"):
            raise ArgumentError(f"draft.adapter: {self.adapter!r}: only a self-draft takes an adapter (True/False)")

    @classmethod
    def parse(cls, text: str) -> Draft:
        """A draft from ``free``, ``self:LAYERS``, ``self:LAYERS+adapter``, ``heads:HEADS``,
        ``model:NAME`` or ``model:NAME@SYSTEM`` (the draft model on another system); ArgumentError
        otherwise."""
        kind, _, rest = str(text).strip().partition(":")
        if kind == "free" and not rest:
            return cls("free")
        if kind == "self" and rest.endswith("+adapter") and rest[:-8].isdigit() and int(rest[:-8]) >= 1:
            return cls("self", layers=int(rest[:-8]), adapter=True)
        if kind in ("self", "heads") and rest.isdigit() and int(rest) >= 1:
            return cls(kind, **{"layers" if kind == "self" else "heads": int(rest)})
        name, _, system = rest.partition("@")
        if kind == "model" and name:
            return cls("model", model=name, system=system or None)
        raise ArgumentError(f"draft: {text!r} is not free, self:LAYERS[+adapter], heads:HEADS, model:NAME or "
                            "model:NAME@SYSTEM")

    def holds_weights_on(self, system: SystemSpec) -> bool:
        """Whether the draft holds weights of its own on the devices of ``system`` (the target's):
        decoding heads, or a draft model placed there; they must fit beside the target's."""
        if self.kind == "heads":
            return True
        return self.kind == "model" and (self.system is None or load_system(self.system) is system)


def step_pricer(engine: str) -> Callable[..., StepResult]:
    """The step model of ``engine`` (``"estimate"`` or ``"simulate"``), called as ``estimate`` is."""
    if engine == "estimate":
        return estimate
    if engine == "simulate":
        from decodex.sim.simulate import simulate  # simpy loads on use

        return simulate
    raise ArgumentError(f"engine: {engine!r:.40} not one of {', '.join(ENGINES)}")


def self_draft_model(model: ModelConfig, layers: int) -> ModelConfig:
    """The target's first ``layers`` layers with its embedding, final norm and LM head."""
    if layers >= model.num_layers:
        raise ArgumentError(f"draft.layers: {layers} must be fewer than the target's {model.num_layers} layers")
    return dataclasses.replace(model, name=f"{model.name}[:{layers}]", num_layers=layers,
                               layer_kinds=model.layer_kinds[:layers])


def draft_steps(target: ModelConfig, system: SystemSpec, batch: int, context: int | np.ndarray, k: int,
                draft: Draft, precision: str, parallelism: Parallelism | None,
                engine: str = "estimate") -> tuple[StepResult, ...]:
    """What drafting a chain of ``k`` tokens for ``batch`` requests costs: ``k`` decode steps of a
    model or self-draft at contexts C ... C + k - 1 (``context``: C, one for all or one per
    request), one pass of every decoding head over the verify's ``k + 1`` tokens per request, or
    nothing (a free draft, or ``k = 0``); times in s."""
    if draft.kind == "heads" and k > draft.heads:
        raise ArgumentError(f"draft_length: {k} tokens need {k} decoding heads; the draft has {draft.heads}")
    return tree_draft_steps(target, system, batch, context, TokenTree.chain(k), draft, precision, parallelism,
                            engine)


def tree_draft_steps(target: ModelConfig, system: SystemSpec, batch: int, context: int | np.ndarray,
                     tree: TokenTree, draft: Draft, precision: str, parallelism: Parallelism | None,
                     engine: str = "estimate") -> tuple[StepResult, ...]:
    """What drafting ``tree`` for each of ``batch`` requests holding ``context`` cached tokens (one
    for all or one per request) costs (module docstring): one draft step per level for a model or
    self-draft (a level of one node each is a plain decode step of the draft), one pass of every
    decoding head over the verify's tokens, nothing for a free draft; times in s."""
    if tree.size == 0 or draft.kind == "free":
        return ()
    if draft.kind == "heads":
        if tree.depth > draft.heads:
            raise ArgumentError(f"tree: {tree.depth} levels need {tree.depth} decoding heads; the draft has "
                                f"{draft.heads}")
        return (heads_step(target, system, batch, context, rows=batch * tree.query_tokens, heads=int(draft.heads),
                           precision=precision, parallelism=parallelism),)
    price = step_pricer(engine)
    if draft.kind == "self":
        model: ModelConfig | str | Path = self_draft_model(target, int(draft.layers))
        where, prec, par = system, precision, parallelism
    else:
        model = draft.model  # type: ignore[assignment]
        where = system if draft.system is None else load_system(draft.system)
        prec, par = draft.precision or precision, None
    contexts = np.broadcast_to(np.asarray(context, dtype=np.int64), (batch,))
    steps = []
    for level, width in enumerate(tree.expanding_per_level(), start=1):
        rows = Batch(contexts + level - 1, np.full(batch, width), np.ones(batch, bool),
                     verifies=np.full(batch, width > 1))
        if draft.adapter:
            steps.append(adapter_draft_step(target, system, rows, int(draft.layers), precision, parallelism))
        elif width == 1:  # decode steps: the step model's decode form (and its fast path)
            steps.append(price(model, where, batch, context=contexts + level - 1, precision=prec, parallelism=par))
        else:
            steps.append(price(model, where, rows, precision=prec, parallelism=par))
    return tuple(steps)


def adapter_draft_step(target: ModelConfig, system: SystemSpec, batch: Batch, layers: int, precision: str,
                       parallelism: Parallelism | None) -> StepResult:
    """One step of a Kangaroo self-draft over ``batch``: the target's first ``layers`` layers, the
    adapter (the attention block of the first decoder layer and a second norm, module docstring,
    with its own K/V) and the LM head, each op where the mapper places its like; times in s."""
    plan = plan_step(self_draft_model(target, layers), system, batch, precision=precision, parallelism=parallelism)
    layer = next((t for t in plan.graph.templates if t.layers), None)
    if layer is None:
        raise ArgumentError(f"draft.adapter: the {plan.mapper} plan of {target.name} has no decoder layer to copy")
    block = [p for p in plan.placements if p.template is layer and p.op.block == "attention"]
    norm = next((p for p in plan.placements if p.template is layer and p.op.name == "ffn_norm"), None)
    template = LayerTemplate("adapter", tuple(p.op for p in block) + ((norm.op,) if norm else ()))
    adapter = [Placement(template, p.op, p.device, p.unit, p.link, p.concurrent)
               for p in (*block, *((norm,) if norm else ()))]
    head_at = next(i for i, p in enumerate(plan.placements) if p.template.name == "head")
    placements = (*plan.placements[:head_at], *adapter, *plan.placements[head_at:])
    templates = plan.graph.templates
    at = next(i for i, t in enumerate(templates) if t.name == "head")
    graph = plan.graph
    graph = Graph(dataclasses.replace(graph.model, name=f"{graph.model.name}+adapter"), graph.batch, graph.precision,
                  graph.parallelism, (*templates[:at], template, *templates[at:]))
    return evaluate(Plan(graph, plan.system, plan.mapper, placements, plan.devices_used))


def heads_step(target: ModelConfig, system: SystemSpec, batch: int, context: int | np.ndarray, *, rows: int,
               heads: int, precision: str, parallelism: Parallelism | None, mapper: str | None = None) -> StepResult:
    """One pass of ``heads`` decoding heads over ``rows`` hidden states (module docstring), placed
    where the target's mapper places its LM head for a decode of ``batch`` requests at ``context``;
    times in s, its weights in the result's ``weight_bytes``."""
    plan = plan_step(target, system, batch, context=context, precision=precision, mapper=mapper,
                     parallelism=parallelism)
    head = [p for p in plan.placements if p.op.name == "lm_head"]
    norm = [p for p in plan.placements if p.op.name == "final_norm"]
    if not head or not isinstance(head[-1].op, MatmulOp):
        raise ArgumentError(f"draft: decoding heads go where the target's LM head runs; the {plan.mapper} plan of "
                            f"{target.name} has none")
    lm = head[-1]
    op: MatmulOp = lm.op  # type: ignore[assignment]
    width = op.k
    resblocks = dataclasses.replace(op, name="draft_heads_resblock", block="draft_heads", m=rows, n=width, k=width,
                                    count=heads, bias=True, replicated=True, weights_shared=False)
    lm_heads = dataclasses.replace(op, name="draft_heads_lm_head", block="draft_heads", m=rows, count=heads,
                                   weights_shared=False)
    vector = norm[-1] if norm else lm
    act = ElementwiseOp(name="draft_heads_silu_residual", dtype=vector.op.dtype, block="draft_heads",
                        devices=op.devices,
                        replicated=True, elements=rows * width * heads,
                        flops_per_element=ACTIVATION_FLOPS_PER_ELEMENT["silu"] + RESIDUAL_ADD_FLOPS_PER_ELEMENT,
                        tensors_read=2, tensors_written=1)
    template = LayerTemplate("draft_heads", (resblocks, act, lm_heads))
    placements = (Placement(template, resblocks, lm.device, lm.unit),
                  Placement(template, act, vector.device, vector.unit),
                  Placement(template, lm_heads, lm.device, lm.unit))
    graph = plan.graph
    graph = Graph(dataclasses.replace(graph.model, name=f"{graph.model.name}+{heads} heads"), graph.batch,
                  graph.precision, graph.parallelism, (template,))
    return evaluate(Plan(graph, plan.system, plan.mapper, placements, plan.devices_used))
