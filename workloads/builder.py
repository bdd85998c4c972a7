"""Build the step graph of a model on a batch: operators with exact FLOPs and bytes.

The graph is what one device of a model replica runs in one step, with tensor parallelism
(heads, FFN columns, vocabulary split; all-reduce after attention and FFN), expert parallelism
inside the tensor-parallel group, and pipeline stages (activations sent between stages).
Element-wise FLOP counts per element are conventions listed in ``docs/workloads.md``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from decodex.core.errors import ArgumentError, InfeasibleError
from decodex.workloads.batch import Batch
from decodex.workloads.block_config import ACTIVATION_FLOPS_PER_ELEMENT, FFNConfig
from decodex.workloads.graph import Graph, LayerTemplate
from decodex.workloads.model_config import ModelConfig
from decodex.workloads.ops import AttentionOp, CollectiveOp, ElementwiseOp, EmbeddingOp, MatmulOp, MoEExpertsOp, Op
from decodex.workloads.parallelism import Parallelism
from decodex.workloads.precision import Precision

# FLOP per element of the vector operations (conventions, see docs/workloads.md).
RMSNORM_FLOPS_PER_ELEMENT = 4.0  # square, accumulate, scale by 1/rms, scale by gamma
LAYERNORM_FLOPS_PER_ELEMENT = 7.0  # accumulate, subtract mean, square, accumulate, scale, gamma, beta
RESIDUAL_ADD_FLOPS_PER_ELEMENT = 1.0
ROPE_FLOPS_PER_ELEMENT = 3.0  # x1*cos - x2*sin: two multiplies and an add per output element
ROUTER_FLOPS_PER_LOGIT = 5.0  # softmax (max, subtract, exp, sum, divide) before top-k selection
# Activations: ACTIVATION_FLOPS_PER_ELEMENT (workloads/block_config.py), keyed by the canonical names
# an FFNConfig stores; an unknown name is rejected when the model is read, never defaulted here.
GATE_MULTIPLY_FLOPS_PER_ELEMENT = 1.0


def _shard(total: int, parts: int, what: str) -> int:
    if total % parts:
        raise InfeasibleError(f"{what}={total} is not divisible by {parts}")
    return total // parts


def _kv_heads_per_device(kv_heads: int, tp: int) -> int:
    """KV heads stored on each device: split when tp divides them, replicated when tp > heads."""
    if kv_heads % tp == 0:
        return kv_heads // tp
    if tp % kv_heads == 0:
        return 1
    raise InfeasibleError(f"KV heads={kv_heads} and tp={tp}: one must divide the other")


class _Builder:
    """Holds the step's context while the templates are assembled."""

    def __init__(self, model: ModelConfig, batch: Batch, precision: Precision, par: Parallelism) -> None:
        self.model = model
        self.batch = batch
        self.prec = precision
        self.par = par
        self.tp = par.tp
        self.tokens = batch.num_tokens
        self.d = model.hidden_size
        self.a = precision.activations
        self.w = precision.weights
        self.sp = precision.sparsity
        self.wbits = precision.weight_bits
        self.v = precision.vector
        self.head_w = precision.head_weights
        self.block = ""

    # --- op helpers -------------------------------------------------------------------------
    def linear(self, name: str, n: int, k: int, *, m: int | None = None, count: int = 1,
               bias: bool = False, replicated: bool = False, shared: bool = False) -> MatmulOp:
        return MatmulOp(name=name, dtype=self.a, block=self.block, devices=self.tp, replicated=replicated,
                        m=self.tokens if m is None else m, n=n, k=k, count=count, weight_dtype=self.w,
                        weight_sparsity=self.sp, weight_bits=self.wbits, bias=bias, weights_shared=shared)

    def norm(self, name: str, elements: int, width: int, residual: bool = True,
             replicated: bool = True) -> ElementwiseOp:
        layer = self.model.norm == "layernorm"
        fpe = LAYERNORM_FLOPS_PER_ELEMENT if layer else RMSNORM_FLOPS_PER_ELEMENT
        if residual:
            fpe += RESIDUAL_ADD_FLOPS_PER_ELEMENT
        return ElementwiseOp(name=name, dtype=self.v, block=self.block, devices=self.tp, replicated=replicated,
                             elements=elements, flops_per_element=fpe,
                             tensors_read=2 if residual else 1, tensors_written=2 if residual else 1,
                             weight_elements=width * (2 if layer else 1), weight_dtype=self.v)

    def elementwise(self, name: str, elements: int, fpe: float, reads: int = 1, writes: int = 1,
                    replicated: bool = False) -> ElementwiseOp:
        return ElementwiseOp(name=name, dtype=self.v, block=self.block, devices=self.tp, replicated=replicated,
                             elements=elements, flops_per_element=fpe, tensors_read=reads,
                             tensors_written=writes)

    def all_reduce(self, name: str, width: int, rows: int | None = None) -> list[Op]:
        if self.tp == 1:
            return []
        rows = self.tokens if rows is None else rows
        return [CollectiveOp(name=name, dtype=self.v, block=self.block, devices=self.tp, collective="all_reduce",
                             payload_bytes=rows * width * self.v.nbytes)]

    def attention(self, name: str, ctx: np.ndarray, query: np.ndarray, q_heads: int, kv_heads: int,
                  qk_dim: int, v_dim: int, kv_elements: int, kv_replicated: bool,
                  verifies: np.ndarray | None = None) -> AttentionOp:
        return AttentionOp(name=name, dtype=self.prec.attention, block=self.block, devices=self.tp,
                           context_lens=ctx, query_lens=query, q_heads=q_heads, kv_heads=kv_heads,
                           qk_dim=qk_dim, v_dim=v_dim, kv_elements_per_token=kv_elements,
                           kv_dtype=self.prec.kv_cache, kv_replicated=kv_replicated, tree=self.batch.tree,
                           verifies=verifies)

    def activation(self, name: str, width: int, ffn: FFNConfig, rows: int | None = None) -> ElementwiseOp:
        """The FFN's activation on ``rows`` x ``width`` elements (times the up half when gated)."""
        fpe = ACTIVATION_FLOPS_PER_ELEMENT[ffn.activation]
        if ffn.gated:
            fpe += GATE_MULTIPLY_FLOPS_PER_ELEMENT
        rows = self.tokens if rows is None else rows
        return self.elementwise(name, rows * width, fpe, reads=2 if ffn.gated else 1, writes=1)

    # --- blocks -----------------------------------------------------------------------------
    def attention_block(self) -> list[Op]:
        self.block = "attention"
        att = self.model.attention
        if att.kind == "mla":
            return self.mla_block()
        if att.kind == "mfa":
            return self.mfa_block()
        tp, tokens, d = self.tp, self.tokens, self.d
        q_heads = _shard(att.num_heads, tp, "attention heads")
        kv_heads = _kv_heads_per_device(att.num_kv_heads, tp)
        ops: list[Op] = [
            self.norm("attn_norm", tokens * d, d),
            self.linear("qkv_proj", (q_heads + 2 * kv_heads) * att.head_dim, d, bias=att.qkv_bias),
        ]
        if att.qk_norm:
            ops.append(self.norm("qk_norm", tokens * (q_heads + kv_heads) * att.head_dim, 2 * att.head_dim,
                                 residual=False, replicated=False))
        if self.model.positional == "rope":
            ops.append(self.elementwise("rope", tokens * (q_heads + kv_heads) * att.head_dim, ROPE_FLOPS_PER_ELEMENT))
        ops.append(self.attention("attention", self.batch.context_lens, self.batch.query_lens, q_heads,
                                  kv_heads, att.head_dim, att.v_head_dim,
                                  kv_heads * (att.head_dim + att.v_head_dim), att.num_kv_heads < tp,
                                  self.batch.verifies))
        ops.append(self.linear("o_proj", d, q_heads * att.v_head_dim, bias=att.out_bias))
        return ops + self.all_reduce("attn_all_reduce", d)

    def mfa_block(self) -> list[Op]:
        """Step-3 MFA: low-rank query (``q_lora_rank``), ``num_kv_heads`` shared K/V heads."""
        att = self.model.attention
        assert att.q_lora_rank is not None
        tp, tokens, d = self.tp, self.tokens, self.d
        q_heads = _shard(att.num_heads, tp, "attention heads")
        kv_heads = _kv_heads_per_device(att.num_kv_heads, tp)
        kv_replicated = att.num_kv_heads < tp
        ops: list[Op] = [
            self.norm("attn_norm", tokens * d, d),
            self.linear("q_a_proj", att.q_lora_rank, d, replicated=True),
            self.norm("q_norm", tokens * att.q_lora_rank, att.q_lora_rank, residual=False),
            self.linear("q_b_proj", q_heads * att.head_dim, att.q_lora_rank),
            self.linear("kv_proj", kv_heads * (att.head_dim + att.v_head_dim), d, replicated=kv_replicated),
            self.elementwise("rope", tokens * (q_heads + kv_heads) * att.head_dim, ROPE_FLOPS_PER_ELEMENT),
            self.attention("attention", self.batch.context_lens, self.batch.query_lens, q_heads, kv_heads,
                           att.head_dim, att.v_head_dim, kv_heads * (att.head_dim + att.v_head_dim),
                           kv_replicated, self.batch.verifies),
            self.linear("o_proj", d, q_heads * att.v_head_dim),
        ]
        return ops + self.all_reduce("attn_all_reduce", d)

    def mla_block(self) -> list[Op]:
        """DeepSeek MLA. Decode tokens use the absorbed form (attention in the latent space, one
        shared latent "KV head" of width kv_lora_rank + rope); prefill chunks use the
        decompressed form (K/V rebuilt by kv_b_proj, MHA with qk_nope+rope / v head dims)."""
        att = self.model.attention
        assert att.kv_lora_rank is not None
        tp, tokens, d = self.tp, self.tokens, self.d
        heads = _shard(att.num_heads, tp, "attention heads")
        rank, nope, rope, v = att.kv_lora_rank, att.qk_nope_head_dim, att.qk_rope_head_dim, att.v_head_dim
        ops: list[Op] = [self.norm("attn_norm", tokens * d, d)]
        if att.q_lora_rank:
            ops += [self.linear("q_a_proj", att.q_lora_rank, d, replicated=True),
                    self.norm("q_norm", tokens * att.q_lora_rank, att.q_lora_rank, residual=False),
                    self.linear("q_b_proj", heads * (nope + rope), att.q_lora_rank)]
        else:
            ops.append(self.linear("q_proj", heads * (nope + rope), d))
        ops += [self.linear("kv_a_proj", rank + rope, d, replicated=True),
                self.norm("kv_norm", tokens * rank, rank, residual=False),
                self.elementwise("rope", tokens * (heads + 1) * rope, ROPE_FLOPS_PER_ELEMENT)]
        query = self.batch.query_lens
        ctx = self.batch.context_lens
        verifies = self.batch.verifies
        decode = query == 1 if verifies is None else (query == 1) | verifies  # a verify runs absorbed, as decode
        kv_elements = rank + rope
        if decode.any():
            t_dec = int(query[decode].sum())
            ops += [
                self.linear("q_absorb", rank, nope, m=t_dec, count=heads),
                self.attention("attention", ctx[decode], query[decode], heads, 1, rank + rope, rank,
                               kv_elements, tp > 1, None if verifies is None else verifies[decode]),
                self.linear("v_absorb", v, rank, m=t_dec, count=heads),
            ]
        if (~decode).any():
            rebuilt = int((ctx[~decode] + query[~decode]).sum())
            ops += [
                # the same weights as q_absorb/v_absorb when decodes are present: stored once
                self.linear("kv_b_proj", heads * (nope + v), rank, m=rebuilt, shared=bool(decode.any())),
                self.attention("prefill_attention", ctx[~decode], query[~decode], heads, heads, nope + rope,
                               v, kv_elements, tp > 1),
            ]
        ops.append(self.linear("o_proj", d, heads * v))
        return ops + self.all_reduce("attn_all_reduce", d)

    def dense_ffn(self) -> list[Op]:
        self.block = "ffn"
        ffn = self.model.ffn
        assert ffn is not None
        dp = self.par.dp_tokens  # data parallel: own tokens, whole FFN, no reduction
        rows = -(-self.tokens // self.tp) if dp else self.tokens
        f = ffn.intermediate_size if dp else _shard(ffn.intermediate_size, self.tp, "FFN intermediate size")
        ops: list[Op] = [self.norm("ffn_norm", rows * self.d, self.d)]
        if ffn.gated:
            ops.append(self.linear("gate_up_proj", 2 * f, self.d, m=rows, bias=ffn.bias, replicated=dp))
        else:
            ops.append(self.linear("up_proj", f, self.d, m=rows, bias=ffn.bias, replicated=dp))
        ops.append(self.activation("act", f, ffn, rows=rows))
        ops.append(self.linear("down_proj", self.d, f, m=rows, bias=ffn.bias, replicated=dp))
        return ops if dp else ops + self.all_reduce("ffn_all_reduce", self.d)

    def moe_ffn(self, layers: tuple[int, ...]) -> list[Op]:
        self.block = "moe"
        moe = self.model.moe
        assert moe is not None
        par, tokens, d = self.par, self.tokens, self.d
        dp = par.dp_tokens
        rows = -(-tokens // self.tp) if dp else tokens  # tokens each device handles outside the experts
        ops: list[Op] = [
            self.norm("ffn_norm", rows * d, d),
            self.linear("router", moe.num_experts, d, m=rows, replicated=True),
            self.elementwise("router_softmax_topk", rows * moe.num_experts, ROUTER_FLOPS_PER_LOGIT,
                             reads=1, writes=0, replicated=True),
        ]
        if moe.shared is not None:
            f_shared = (moe.shared.intermediate_size if dp
                        else _shard(moe.shared.intermediate_size, self.tp, "shared-expert intermediate size"))
            up = "shared_gate_up_proj" if moe.shared.gated else "shared_up_proj"
            ops += [self.linear(up, (2 if moe.shared.gated else 1) * f_shared, d, m=rows, replicated=dp),
                    self.activation("shared_act", f_shared, moe.shared, rows=rows),
                    self.linear("shared_down_proj", d, f_shared, m=rows, replicated=dp)]
        local = _shard(moe.num_experts, par.ep, "experts (over ep ranks)")
        f_expert = _shard(moe.expert.intermediate_size, par.expert_tp, "expert intermediate size (over tp/ep)")
        counts = self.batch.routing.tokens_per_expert(tokens, moe.num_experts, moe.top_k, draws=len(layers))
        experts = MoEExpertsOp(name="experts", dtype=self.a, block=self.block, devices=self.tp,
                               expert_tokens=counts.reshape(len(layers), par.ep, local), hidden=d,
                               intermediate=f_expert, gated=moe.expert.gated, weight_dtype=self.w,
                               weight_sparsity=self.sp, weight_bits=self.wbits)
        if par.ep == 1:
            return [*ops, experts, *self.all_reduce("ffn_all_reduce", d)]
        # Expert parallel: each device dispatches its 1/tp share of the tokens' top-k copies to the
        # ranks owning the experts and gets the results back (all-to-all both ways); then the
        # token shards are gathered (or, with partial sums from shared or split experts, reduced).
        routed = -(-tokens // self.tp) * moe.top_k * d * self.v.nbytes
        exchange = [CollectiveOp(name=name, dtype=self.v, block=self.block, devices=self.tp,
                                 collective="all_to_all", payload_bytes=routed)
                    for name in ("moe_dispatch", "moe_combine")]
        if dp:
            finish = []  # the combined results are already on their tokens' devices
        elif moe.shared is not None or par.expert_tp > 1:
            finish = self.all_reduce("ffn_all_reduce", d)
        else:
            finish = [CollectiveOp(name="moe_all_gather", dtype=self.v, block=self.block, devices=self.tp,
                                   collective="all_gather", payload_bytes=tokens * d * self.v.nbytes)]
        return [*ops, exchange[0], experts, exchange[1], *finish]

    def embedding(self) -> list[Op]:
        self.block = "embedding"
        m = self.model
        width = m.embed_proj_dim or self.d
        rows = -(-m.vocab_size // self.tp)
        ops: list[Op] = [EmbeddingOp(name="embedding", dtype=self.v, block=self.block, devices=self.tp,
                                     tokens=self.tokens, dim=width, rows=rows, weight_dtype=self.head_w)]
        ops += self.all_reduce("embedding_all_reduce", width)
        if m.embed_proj_dim:
            ops.append(self.linear("project_in", self.d, width, replicated=True))
        if m.positional == "learned":
            ops.append(EmbeddingOp(name="position_embedding", dtype=self.v, block=self.block, devices=self.tp,
                                   replicated=True, tokens=self.tokens, dim=self.d, rows=m.max_position_embeddings,
                                   weight_dtype=self.w))
            ops.append(self.elementwise("position_add", self.tokens * self.d, RESIDUAL_ADD_FLOPS_PER_ELEMENT,
                                        reads=2, replicated=True))
        return ops

    def head(self) -> list[Op]:
        self.block = "head"
        m = self.model
        width = m.embed_proj_dim or self.d
        vocab = -(-m.vocab_size // self.tp)
        ops: list[Op] = [self.norm("final_norm", self.tokens * self.d, self.d)]
        if m.embed_proj_dim:
            ops.append(self.linear("project_out", width, self.d, replicated=True))
        emitting = self.batch.num_logit_tokens  # logits where a token is sampled or verified
        if emitting == 0:
            return ops
        head = self.linear("lm_head", vocab, width, m=emitting, shared=m.tie_word_embeddings)
        if self.prec.head is not None:  # kept out of the quantization: its own format, dense
            head = dataclasses.replace(head, dtype=self.prec.head, weight_dtype=self.prec.head,
                                       weight_sparsity=None, weight_bits=None)
        ops.append(head)
        if self.tp > 1:
            gathered = emitting * vocab * self.tp * self.v.nbytes
            ops.append(CollectiveOp(name="logits_all_gather", dtype=self.v, block=self.block, devices=self.tp,
                                    collective="all_gather", payload_bytes=gathered))
        return ops

    def pipeline_sends(self) -> list[Op]:
        self.block = "pipeline"
        return [CollectiveOp(name="stage_send", dtype=self.v, block=self.block, devices=self.tp,
                             collective="send_recv", payload_bytes=self.tokens * self.d * self.v.nbytes)]


def _check(model: ModelConfig, batch: Batch, par: Parallelism) -> None:
    window = model.context_window
    if window is not None and batch.max_position > window:
        raise ArgumentError(
            f"context: a request reaches position {batch.max_position}, beyond {model.name}'s "
            f"max_position_embeddings={model.max_position_embeddings}")
    if par.pp > model.num_layers:
        raise InfeasibleError(f"pp={par.pp} exceeds the {model.num_layers} layers of {model.name}")
    if par.ep > 1 and model.moe is None:
        raise InfeasibleError(f"ep={par.ep} needs a MoE model; {model.name} is dense")


def build_step_graph(model: ModelConfig, batch: Batch, precision: Precision | None = None,
                     parallelism: Parallelism | None = None, *, ffn: bool = True) -> Graph:
    """The step graph of ``model`` on ``batch``: what each device of one replica runs.

    ``ffn=False`` leaves the FFN (dense or MoE) out of the decoder layers: the attention side of
    a disaggregated mapper (:mod:`mappers.afd`), whose ops are those of the full graph.
    Raises ArgumentError for a context beyond the model's positions, and InfeasibleError for a
    parallel split that does not divide the model (heads, FFN width, experts, layers).
    """
    precision = precision or Precision()
    par = parallelism or Parallelism()
    _check(model, batch, par)
    b = _Builder(model, batch, precision, par)
    templates = [LayerTemplate("embedding", tuple(b.embedding()))]
    by_kind: dict[str, list[int]] = {}
    for index, kind in enumerate(model.layer_kinds):
        by_kind.setdefault(kind, []).append(index)
    ffn_of: dict[str, Callable[[tuple[int, ...]], list[Op]]] = {
        "dense": lambda layers: b.dense_ffn(),
        "moe": b.moe_ffn,
    }
    for kind in ("dense", "moe"):
        if kind in by_kind:
            layers = tuple(by_kind[kind])
            ops = tuple(b.attention_block() + (ffn_of[kind](layers) if ffn else []))
            templates.append(LayerTemplate(f"{kind}_layer", ops, len(layers), layers))
    if par.pp > 1:
        templates.append(LayerTemplate("pipeline", tuple(b.pipeline_sends()), par.pp - 1))
    templates.append(LayerTemplate("head", tuple(b.head())))
    return Graph(model, batch, precision, par, tuple(templates))
