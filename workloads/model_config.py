"""Model shapes read from Hugging Face ``config.json`` files.

One parser per ``model_type`` family turns the file's fields into a :class:`ModelConfig`: the
attention variant (MHA/GQA/MQA, MLA, MFA), the dense FFN, the MoE layers and the layer list.
Missing optional fields take Hugging Face's defaults (``num_key_value_heads`` = heads,
``head_dim`` = hidden / heads); an unknown ``model_type``, a missing required field or a value
out of range raises :class:`~workloads.errors.SpecError` naming file, field and range.
Keys starting with ``_`` (``_source``, ``_note``) are Decodex annotations and are ignored.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from decodex.core.dtypes import DType
from decodex.core.errors import SpecError


@dataclass(frozen=True)
class AttentionConfig:
    """Shapes of one attention block.

    ``kind`` is ``"standard"`` (MHA, GQA or MQA by the head counts), ``"mla"`` (DeepSeek
    multi-head latent attention) or ``"mfa"`` (Step-3 multi-matrix factorization attention:
    a low-rank query and ``num_kv_heads`` shared K/V heads).
    """

    kind: str
    num_heads: int
    num_kv_heads: int
    head_dim: int
    v_head_dim: int
    q_lora_rank: int | None = None
    kv_lora_rank: int | None = None
    qk_nope_head_dim: int = 0
    qk_rope_head_dim: int = 0
    qkv_bias: bool = False
    out_bias: bool = False
    qk_norm: bool = False

    @property
    def label(self) -> str:
        """Short name of the variant: MHA, GQA, MQA, MLA or MFA."""
        if self.kind == "mla":
            return "MLA"
        if self.kind == "mfa":
            return "MFA"
        if self.num_kv_heads == self.num_heads:
            return "MHA"
        return "MQA" if self.num_kv_heads == 1 else "GQA"

    @property
    def kv_elements_per_token(self) -> int:
        """KV-cache elements stored per token per layer (all KV heads, K and V)."""
        if self.kind == "mla":
            assert self.kv_lora_rank is not None
            return self.kv_lora_rank + self.qk_rope_head_dim
        return self.num_kv_heads * (self.head_dim + self.v_head_dim)

    def parameter_count(self, hidden: int) -> int:
        """Weights (and biases) of the attention projections and their norms, parameters."""
        h, d = self.num_heads, hidden
        if self.kind == "mla":
            assert self.kv_lora_rank is not None
            qk_dim = self.qk_nope_head_dim + self.qk_rope_head_dim
            if self.q_lora_rank:
                q = d * self.q_lora_rank + self.q_lora_rank + self.q_lora_rank * h * qk_dim
            else:
                q = d * h * qk_dim
            kv = d * (self.kv_lora_rank + self.qk_rope_head_dim) + self.kv_lora_rank
            kv += self.kv_lora_rank * h * (self.qk_nope_head_dim + self.v_head_dim)
            return q + kv + h * self.v_head_dim * d
        if self.kind == "mfa":
            assert self.q_lora_rank is not None
            q = d * self.q_lora_rank + self.q_lora_rank + self.q_lora_rank * h * self.head_dim
            kv = d * self.num_kv_heads * (self.head_dim + self.v_head_dim)
            return q + kv + h * self.v_head_dim * d
        q_out = h * self.head_dim
        kv_out = self.num_kv_heads * (self.head_dim + self.v_head_dim)
        total = d * (q_out + kv_out) + h * self.v_head_dim * d
        if self.qkv_bias:
            total += q_out + kv_out
        if self.out_bias:
            total += d
        if self.qk_norm:
            total += 2 * self.head_dim
        return total


@dataclass(frozen=True)
class FFNConfig:
    """A dense feed-forward block: ``gated`` (SwiGLU/GeGLU, three matrices) or plain (two)."""

    intermediate_size: int
    gated: bool
    activation: str
    bias: bool = False

    @property
    def num_matrices(self) -> int:
        """Weight matrices of hidden × intermediate size: 3 when gated, else 2."""
        return 3 if self.gated else 2

    def parameter_count(self, hidden: int) -> int:
        """Weights and biases of the block, parameters."""
        total = self.num_matrices * hidden * self.intermediate_size
        if self.bias:
            total += (self.num_matrices - 1) * self.intermediate_size + hidden
        return total


@dataclass(frozen=True)
class MoEConfig:
    """Routed experts (``num_experts``, ``top_k`` each token) and optional shared experts."""

    num_experts: int
    top_k: int
    expert: FFNConfig
    num_shared_experts: int = 0
    shared: FFNConfig | None = None  # all shared experts fused into one FFN

    def parameter_count(self, hidden: int) -> int:
        """Router, routed experts and shared experts of one MoE layer, parameters."""
        total = hidden * self.num_experts + self.num_experts * self.expert.parameter_count(hidden)
        if self.shared is not None:
            total += self.shared.parameter_count(hidden)
        return total

    def active_parameter_count(self, hidden: int) -> int:
        """Parameters one token uses in a MoE layer: router, top-k experts, shared experts."""
        total = hidden * self.num_experts + self.top_k * self.expert.parameter_count(hidden)
        if self.shared is not None:
            total += self.shared.parameter_count(hidden)
        return total


@dataclass(frozen=True)
class ModelConfig:
    """Shapes of a decoder-only transformer, as needed to count FLOPs and bytes.

    ``layer_kinds[i]`` is ``"dense"`` or ``"moe"`` for layer ``i``.
    """

    name: str
    model_type: str
    hidden_size: int
    num_layers: int
    vocab_size: int
    max_position_embeddings: int
    attention: AttentionConfig
    ffn: FFNConfig | None
    moe: MoEConfig | None
    layer_kinds: tuple[str, ...]
    norm: str = "rmsnorm"
    positional: str = "rope"
    tie_word_embeddings: bool = False
    embed_proj_dim: int | None = None  # OPT-350m style projection of the embeddings
    source: str = "<dict>"
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def context_window(self) -> int | None:
        """Most positions a request may reach (tokens): ``max_position_embeddings`` for learned
        and rotary positions (the table or the trained range the model is served with); None for
        a relative position bias, which has no per-position weights (its
        ``max_position_embeddings`` is the training length, not a limit)."""
        return None if self.positional == "relative" else self.max_position_embeddings

    @property
    def family(self) -> str:
        """Attention and FFN family in words, e.g. ``"GQA dense"`` or ``"MLA MoE"``."""
        return f"{self.attention.label} {'MoE' if self.moe else 'dense'}"

    @property
    def num_moe_layers(self) -> int:
        """Number of layers whose FFN is a mixture of experts."""
        return sum(1 for kind in self.layer_kinds if kind == "moe")

    def kv_cache_bytes_per_token(self, dtype: DType = DType.BF16) -> float:
        """KV-cache bytes one token occupies across all layers, unsharded."""
        return self.num_layers * self.attention.kv_elements_per_token * dtype.nbytes

    def _norm_params(self) -> int:
        return self.hidden_size * (2 if self.norm == "layernorm" else 1)

    def _layer_params(self, kind: str, active: bool) -> int:
        d = self.hidden_size
        total = self.attention.parameter_count(d) + 2 * self._norm_params()
        if kind == "moe":
            assert self.moe is not None
            total += self.moe.active_parameter_count(d) if active else self.moe.parameter_count(d)
        else:
            assert self.ffn is not None
            total += self.ffn.parameter_count(d)
        return total

    def _embedding_params(self) -> int:
        d = self.embed_proj_dim or self.hidden_size
        total = self.vocab_size * d
        if self.positional == "learned":
            total += self.max_position_embeddings * self.hidden_size
        if self.embed_proj_dim and self.embed_proj_dim != self.hidden_size:
            total += 2 * self.embed_proj_dim * self.hidden_size
        return total

    def parameter_count(self, active: bool = False) -> int:
        """Total parameters (or, with ``active``, those one decode token touches)."""
        head = 0 if self.tie_word_embeddings else self.vocab_size * (self.embed_proj_dim or self.hidden_size)
        layers = sum(self._layer_params(kind, active) for kind in self.layer_kinds)
        return self._embedding_params() + layers + self._norm_params() + head


# ---------------------------------------------------------------------------------------------
# Parsing


class _Fields:
    """Typed access to a config mapping that raises SpecError naming file and field."""

    def __init__(self, data: Mapping[str, Any], source: str) -> None:
        self.data = {k: v for k, v in data.items() if not k.startswith("_")}
        self.source = source

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def int(self, key: str, default: int | None = None, lo: int = 1, hi: int = 10**9) -> int:
        value = self.data.get(key)
        if value is None:
            if default is None:
                raise SpecError(self.source, key, "required field is missing")
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(self.source, key, f"must be an integer in [{lo}, {hi}], got {value!r}")
        if not lo <= value <= hi:
            raise SpecError(self.source, key, f"{value} outside the allowed range [{lo}, {hi}]")
        return value

    def bool(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise SpecError(self.source, key, f"must be true or false, got {value!r}")
        return value

    def str(self, key: str, default: str) -> str:
        value = self.data.get(key, default)
        if value is None:
            return default
        if not isinstance(value, str):
            raise SpecError(self.source, key, f"must be a string, got {value!r}")
        return value

    def int_list(self, key: str) -> list[int]:
        value = self.data.get(key) or []
        if isinstance(value, str):  # e.g. Step-3's "4,5,6"
            try:
                return [int(v) for v in value.split(",") if v.strip()]
            except ValueError:
                raise SpecError(self.source, key, f"must be a list of integers, got {value!r}") from None
        if not isinstance(value, list) or not all(isinstance(v, int) for v in value):
            raise SpecError(self.source, key, f"must be a list of integers, got {value!r}")
        return list(value)


_GATED_ACTS = {"silu", "swiglu", "geglu"}


def _standard_attention(f: _Fields, hidden: int, heads_key: str = "num_attention_heads",
                        kv_key: str = "num_key_value_heads", bias: bool = False) -> AttentionConfig:
    heads = f.int(heads_key, lo=1, hi=4096)
    kv_heads = f.int(kv_key, default=heads, lo=1, hi=heads)
    if heads % kv_heads:
        raise SpecError(f.source, kv_key, f"{kv_heads} must divide {heads_key}={heads}")
    if not f.has("head_dim") and hidden % heads:
        raise SpecError(f.source, heads_key, f"{heads} must divide hidden_size={hidden} when head_dim is absent")
    head_dim = f.int("head_dim", default=hidden // heads, hi=65536)
    return AttentionConfig("standard", heads, kv_heads, head_dim, head_dim, qkv_bias=bias, out_bias=bias)


def _layers(num_layers: int, is_moe: Callable[[int], bool]) -> tuple[str, ...]:
    return tuple("moe" if is_moe(i) else "dense" for i in range(num_layers))


def _common(f: _Fields, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "model_type": f.str("model_type", ""),
        "hidden_size": f.int("hidden_size", hi=10**6),
        "num_layers": f.int("num_hidden_layers", hi=10**4),
        "vocab_size": f.int("vocab_size", hi=10**8),
        "max_position_embeddings": f.int("max_position_embeddings", default=4096, hi=10**8),
        "source": f.source,
    }


def _parse_llama_like(f: _Fields, name: str) -> ModelConfig:
    """llama, mistral, qwen2, qwen3: GQA attention, gated FFN, RMSNorm, RoPE."""
    c = _common(f, name)
    model_type = c["model_type"]
    bias = f.bool("attention_bias", model_type == "qwen2")
    attn = _standard_attention(f, c["hidden_size"], bias=bias)
    if model_type == "qwen2":  # Qwen2 has biases on q, k, v only
        attn = AttentionConfig(**{**attn.__dict__, "out_bias": False})
    if model_type == "qwen3":
        attn = AttentionConfig(**{**attn.__dict__, "qk_norm": True})
    act = f.str("hidden_act", "silu")
    ffn = FFNConfig(f.int("intermediate_size", hi=10**7), gated=act in _GATED_ACTS, activation=act,
                    bias=f.bool("mlp_bias", False))
    return ModelConfig(**c, attention=attn, ffn=ffn, moe=None,
                       layer_kinds=_layers(c["num_layers"], lambda i: False),
                       tie_word_embeddings=f.bool("tie_word_embeddings", False))


def _parse_mixtral(f: _Fields, name: str) -> ModelConfig:
    """mixtral: GQA attention, every layer a top-k MoE of gated experts."""
    c = _common(f, name)
    attn = _standard_attention(f, c["hidden_size"])
    act = f.str("hidden_act", "silu")
    experts = f.int("num_local_experts", hi=100_000)
    expert = FFNConfig(f.int("intermediate_size", hi=10**7), gated=True, activation=act)
    moe = MoEConfig(experts, f.int("num_experts_per_tok", hi=experts), expert)
    return ModelConfig(**c, attention=attn, ffn=None, moe=moe,
                       layer_kinds=_layers(c["num_layers"], lambda i: True),
                       tie_word_embeddings=f.bool("tie_word_embeddings", False))


def _parse_qwen3_moe(f: _Fields, name: str) -> ModelConfig:
    """qwen3_moe / qwen2_moe: GQA, MoE every ``decoder_sparse_step`` layers except ``mlp_only_layers``."""
    c = _common(f, name)
    attn = _standard_attention(f, c["hidden_size"], bias=c["model_type"] == "qwen2_moe")
    if c["model_type"] == "qwen3_moe":
        attn = AttentionConfig(**{**attn.__dict__, "qk_norm": True})
    act = f.str("hidden_act", "silu")
    experts = f.int("num_experts", hi=100_000)
    expert = FFNConfig(f.int("moe_intermediate_size", hi=10**7), gated=True, activation=act)
    shared = None
    n_shared = 0
    if f.has("shared_expert_intermediate_size") and f.int("shared_expert_intermediate_size", lo=0) > 0:
        n_shared = 1
        shared = FFNConfig(f.int("shared_expert_intermediate_size"), gated=True, activation=act)
    moe = MoEConfig(experts, f.int("num_experts_per_tok", hi=experts), expert, n_shared, shared)
    step = f.int("decoder_sparse_step", default=1, hi=c["num_layers"])
    dense_only = set(f.int_list("mlp_only_layers"))
    kinds = _layers(c["num_layers"], lambda i: i not in dense_only and (i + 1) % step == 0)
    ffn = None
    if "dense" in kinds:
        ffn = FFNConfig(f.int("intermediate_size", hi=10**7), gated=True, activation=act)
    return ModelConfig(**c, attention=attn, ffn=ffn, moe=moe, layer_kinds=kinds,
                       tie_word_embeddings=f.bool("tie_word_embeddings", False))


def _parse_deepseek_v3(f: _Fields, name: str) -> ModelConfig:
    """deepseek_v3 (and v2): MLA attention; MoE after ``first_k_dense_replace`` dense layers."""
    c = _common(f, name)
    heads = f.int("num_attention_heads", hi=4096)
    nope = f.int("qk_nope_head_dim", hi=4096)
    rope = f.int("qk_rope_head_dim", hi=4096)
    q_rank = f.int("q_lora_rank", lo=1, hi=10**6) if f.has("q_lora_rank") else None
    attn = AttentionConfig("mla", heads, 1, nope + rope, f.int("v_head_dim", hi=4096),
                           q_lora_rank=q_rank, kv_lora_rank=f.int("kv_lora_rank", hi=10**6),
                           qk_nope_head_dim=nope, qk_rope_head_dim=rope)
    act = f.str("hidden_act", "silu")
    experts = f.int("n_routed_experts", hi=100_000)
    expert_ffn = FFNConfig(f.int("moe_intermediate_size", hi=10**7), gated=True, activation=act)
    n_shared = f.int("n_shared_experts", default=0, lo=0, hi=1024)
    shared = FFNConfig(n_shared * expert_ffn.intermediate_size, True, act) if n_shared else None
    moe = MoEConfig(experts, f.int("num_experts_per_tok", hi=experts), expert_ffn, n_shared, shared)
    first_dense = f.int("first_k_dense_replace", default=0, lo=0, hi=c["num_layers"])
    freq = f.int("moe_layer_freq", default=1, hi=c["num_layers"])
    kinds = _layers(c["num_layers"], lambda i: i >= first_dense and i % freq == 0)
    ffn = FFNConfig(f.int("intermediate_size", hi=10**7), gated=True, activation=act)
    return ModelConfig(**c, attention=attn, ffn=ffn, moe=moe, layer_kinds=kinds,
                       tie_word_embeddings=f.bool("tie_word_embeddings", False))


def _parse_opt(f: _Fields, name: str) -> ModelConfig:
    """opt: MHA with biases, ReLU FFN (``ffn_dim``), LayerNorm, learned positions."""
    c = _common(f, name)
    c["max_position_embeddings"] = f.int("max_position_embeddings", default=2048, hi=10**8)
    bias = f.bool("enable_bias", True)
    attn = _standard_attention(f, c["hidden_size"], bias=bias)
    act = f.str("activation_function", "relu")
    ffn = FFNConfig(f.int("ffn_dim", hi=10**7), gated=False, activation=act, bias=bias)
    proj = f.int("word_embed_proj_dim", default=c["hidden_size"], hi=10**6)
    return ModelConfig(**c, attention=attn, ffn=ffn, moe=None,
                       layer_kinds=_layers(c["num_layers"], lambda i: False), norm="layernorm",
                       positional="learned", tie_word_embeddings=f.bool("tie_word_embeddings", True),
                       embed_proj_dim=proj if proj != c["hidden_size"] else None)


def _parse_gpt2(f: _Fields, name: str) -> ModelConfig:
    """gpt2 (and GPT-3 shapes written in its format): MHA with biases, GELU FFN, LayerNorm."""
    hidden = f.int("n_embd", hi=10**6)
    layers = f.int("n_layer", hi=10**4)
    heads = f.int("n_head", hi=4096)
    if hidden % heads:
        raise SpecError(f.source, "n_head", f"{heads} must divide n_embd={hidden}")
    attn = AttentionConfig("standard", heads, heads, hidden // heads, hidden // heads,
                           qkv_bias=True, out_bias=True)
    inner = f.int("n_inner", default=4 * hidden, hi=10**7)
    ffn = FFNConfig(inner, gated=False, activation=f.str("activation_function", "gelu_new"), bias=True)
    return ModelConfig(name=name, model_type="gpt2", hidden_size=hidden, num_layers=layers,
                       vocab_size=f.int("vocab_size", hi=10**8),
                       max_position_embeddings=f.int("n_positions", default=1024, hi=10**8),
                       attention=attn, ffn=ffn, moe=None, layer_kinds=_layers(layers, lambda i: False),
                       norm="layernorm", positional="learned",
                       tie_word_embeddings=f.bool("tie_word_embeddings", True), source=f.source)


def _parse_glam(f: _Fields, name: str) -> ModelConfig:
    """glam (Decodex's own HF-style config; GLaM has no HF release): MHA, MoE every
    ``moe_layer_frequency`` layers from ``moe_layer_offset``, relative position bias."""
    c = _common(f, name)
    attn = _standard_attention(f, c["hidden_size"], bias=f.bool("attention_bias", False))
    act = f.str("hidden_act", "gelu")
    experts = f.int("num_local_experts", hi=100_000)
    width = f.int("intermediate_size", hi=10**7)
    expert = FFNConfig(f.int("moe_intermediate_size", default=width, hi=10**7),
                       gated=f.bool("expert_mlp_gated", False), activation=act)
    moe = MoEConfig(experts, f.int("num_experts_per_tok", hi=experts), expert)
    freq = f.int("moe_layer_frequency", default=2, hi=c["num_layers"])
    offset = f.int("moe_layer_offset", default=0, lo=0, hi=freq - 1)
    ffn = FFNConfig(width, gated=f.bool("mlp_gated", True), activation=act)
    return ModelConfig(**c, attention=attn, ffn=ffn, moe=moe,
                       layer_kinds=_layers(c["num_layers"], lambda i: i % freq == offset),
                       positional="relative", tie_word_embeddings=f.bool("tie_word_embeddings", True))


def _parse_grok1(f: _Fields, name: str) -> ModelConfig:
    """grok-1 (hpcai-tech's Grok1Config): GQA, every layer a top-2 MoE of gated GELU experts."""
    c = _common(f, name)
    attn = _standard_attention(f, c["hidden_size"])
    experts = f.int("num_experts", hi=100_000)
    expert = FFNConfig(f.int("intermediate_size", hi=10**7), gated=True, activation=f.str("hidden_act", "gelu"))
    moe = MoEConfig(experts, f.int("num_experts_per_tok", hi=experts), expert)
    return ModelConfig(**c, attention=attn, ffn=None, moe=moe,
                       layer_kinds=_layers(c["num_layers"], lambda i: True),
                       tie_word_embeddings=f.bool("tie_word_embeddings", True))


def _parse_step3(f: _Fields, name: str) -> ModelConfig:
    """step3_text: MFA attention (query rank ``share_q_dim``, ``num_attention_groups`` K/V heads
    of ``head_dim``), MoE in ``moe_layers_enum`` layers with one shared expert (``share_expert_dim``)."""
    hidden = f.int("hidden_size", hi=10**6)
    layers = f.int("num_hidden_layers", hi=10**4)
    heads = f.int("num_attention_heads", hi=4096)
    groups = f.int("num_attention_groups", default=1, hi=heads)
    head_dim = f.int("head_dim", default=hidden // heads, hi=65536)
    attn = AttentionConfig("mfa", heads, groups, head_dim, head_dim, q_lora_rank=f.int("share_q_dim", hi=10**6))
    act = f.str("hidden_act", "silu")
    experts = f.int("moe_num_experts", hi=100_000)
    expert = FFNConfig(f.int("moe_intermediate_size", hi=10**7), gated=True, activation=act)
    shared = None
    if f.has("share_expert_dim"):
        shared = FFNConfig(f.int("share_expert_dim", hi=10**7), gated=True, activation=act)
    moe = MoEConfig(experts, f.int("moe_top_k", hi=experts), expert, 1 if shared else 0, shared)
    moe_layers = set(f.int_list("moe_layers_enum"))
    positions = f.int("max_position_embedding", default=f.int("max_seq_len", default=65536, hi=10**8), hi=10**8)
    return ModelConfig(name=name, model_type="step3_text", hidden_size=hidden, num_layers=layers,
                       vocab_size=f.int("vocab_size", hi=10**8), max_position_embeddings=positions,
                       attention=attn, ffn=FFNConfig(f.int("intermediate_size", hi=10**7), True, act), moe=moe,
                       layer_kinds=_layers(layers, lambda i: i in moe_layers),
                       tie_word_embeddings=f.bool("tie_word_embeddings", False), source=f.source)


_FAMILY_PARSERS: dict[str, Callable[[_Fields, str], ModelConfig]] = {
    "glam": _parse_glam,
    "grok-1": _parse_grok1,
    "step3_text": _parse_step3,
    "llama": _parse_llama_like,
    "mistral": _parse_llama_like,
    "qwen2": _parse_llama_like,
    "qwen3": _parse_llama_like,
    "mixtral": _parse_mixtral,
    "qwen3_moe": _parse_qwen3_moe,
    "qwen2_moe": _parse_qwen3_moe,
    "deepseek_v3": _parse_deepseek_v3,
    "deepseek_v2": _parse_deepseek_v3,
    "opt": _parse_opt,
    "gpt2": _parse_gpt2,
}


def register_family(model_type: str, parser: Callable[[_Fields, str], ModelConfig]) -> None:
    """Register a parser for another ``model_type`` (plug-in point for new families)."""
    _FAMILY_PARSERS[model_type] = parser


def supported_model_types() -> list[str]:
    """The ``model_type`` values that can be parsed."""
    return sorted(_FAMILY_PARSERS)


def model_from_dict(data: Mapping[str, Any], name: str = "model", source: str = "<dict>") -> ModelConfig:
    """Build a ModelConfig from a config.json mapping; raises SpecError on a bad field."""
    if not isinstance(data, Mapping):
        raise SpecError(source, "", "a model config must be a JSON object")
    f = _Fields(data, source)
    model_type = f.str("model_type", "")
    if not model_type:
        raise SpecError(source, "model_type", "required field is missing")
    parser = _FAMILY_PARSERS.get(model_type)
    if parser is None:
        raise SpecError(source, "model_type",
                        f"unknown model_type {model_type!r}; supported: {', '.join(supported_model_types())}")
    return parser(f, name)


def load_model_config(path: str | Path, name: str | None = None) -> ModelConfig:
    """Read a Hugging Face ``config.json`` file into a ModelConfig."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise SpecError(str(path), "", "file not found") from None
    except json.JSONDecodeError as err:
        raise SpecError(str(path), "", f"not valid JSON ({err.msg} at line {err.lineno})") from None
    return model_from_dict(data, name or path.stem, str(path))
