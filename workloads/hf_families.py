"""Per-family mapping of Hugging Face ``config.json`` fields to a :class:`ModelConfig`.

One parser per ``model_type`` family turns the file's fields into a ModelConfig: the attention
variant (MHA/GQA/MQA, MLA, MFA), the dense FFN, the MoE layers and the layer list. Missing
optional fields take Hugging Face's defaults (``num_key_value_heads`` = heads, ``head_dim`` =
hidden / heads); a missing required field or a value out of range raises
:class:`~core.errors.SpecError` naming file, field and range. Sizes are in elements (hidden,
intermediate and head widths), counts in layers, heads, experts and positions (tokens).

Whether an FFN is gated (gate, up, down: 3 matrices) or plain (up, down: 2) is a property of the
family, fixed by its modelling code (see each parser); the activation field (``hidden_act``, or
``activation_function`` for OPT and GPT-2) only names the element-wise activation, must be a
Hugging Face ``ACT2FN`` name (:func:`~workloads.block_config.known_activations`), and is stored
normalised (``swish`` -> ``silu``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from decodex.core.errors import SpecError
from decodex.workloads.block_config import AttentionConfig, FFNConfig, MoEConfig, canonical_activation
from decodex.workloads.config_fields import ConfigFields
from decodex.workloads.model_config import ModelConfig

FamilyParser = Callable[[ConfigFields, str], ModelConfig]  # (fields, model name) -> shape


def _activation(f: ConfigFields, key: str, default: str, gated: bool) -> str:
    """The canonical activation named by field ``key`` (``default`` when absent) for an FFN that
    is (or is not) gated; SpecError naming file and field, and listing the known names, otherwise."""
    name = f.str(key, default)
    try:
        return canonical_activation(name, gated)
    except ValueError as err:
        raise SpecError(f.source, key, str(err)) from None


def _standard_attention(f: ConfigFields, hidden: int, heads_key: str = "num_attention_heads",
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


def _common(f: ConfigFields, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "model_type": f.str("model_type", ""),
        "hidden_size": f.int("hidden_size", hi=10**6),
        "num_layers": f.int("num_hidden_layers", hi=10**4),
        "vocab_size": f.int("vocab_size", hi=10**8),
        "max_position_embeddings": f.int("max_position_embeddings", default=4096, hi=10**8),
        "source": f.source,
    }


def _parse_llama_like(f: ConfigFields, name: str) -> ModelConfig:
    """llama, mistral, qwen2, qwen3: GQA attention, gated FFN, RMSNorm, RoPE.

    The FFN is always gated: LlamaMLP, MistralMLP, Qwen2MLP and Qwen3MLP are
    ``down_proj(act(gate_proj(x)) * up_proj(x))`` whatever ``hidden_act`` names."""
    c = _common(f, name)
    model_type = c["model_type"]
    bias = f.bool("attention_bias", model_type == "qwen2")
    attn = _standard_attention(f, c["hidden_size"], bias=bias)
    if model_type == "qwen2":  # Qwen2 has biases on q, k, v only
        attn = AttentionConfig(**{**attn.__dict__, "out_bias": False})
    if model_type == "qwen3":
        attn = AttentionConfig(**{**attn.__dict__, "qk_norm": True})
    act = _activation(f, "hidden_act", "silu", gated=True)
    ffn = FFNConfig(f.int("intermediate_size", hi=10**7), gated=True, activation=act,
                    bias=f.bool("mlp_bias", False))
    return ModelConfig(**c, attention=attn, ffn=ffn, moe=None,
                       layer_kinds=_layers(c["num_layers"], lambda i: False),
                       tie_word_embeddings=f.bool("tie_word_embeddings", False))


def _parse_mixtral(f: ConfigFields, name: str) -> ModelConfig:
    """mixtral: GQA attention, every layer a top-k MoE of gated experts (MixtralBlockSparseTop2MLP:
    ``w2(act(w1(x)) * w3(x))``)."""
    c = _common(f, name)
    attn = _standard_attention(f, c["hidden_size"])
    act = _activation(f, "hidden_act", "silu", gated=True)
    experts = f.int("num_local_experts", hi=100_000)
    expert = FFNConfig(f.int("intermediate_size", hi=10**7), gated=True, activation=act)
    moe = MoEConfig(experts, f.int("num_experts_per_tok", hi=experts), expert)
    return ModelConfig(**c, attention=attn, ffn=None, moe=moe,
                       layer_kinds=_layers(c["num_layers"], lambda i: True),
                       tie_word_embeddings=f.bool("tie_word_embeddings", False))


def _parse_qwen3_moe(f: ConfigFields, name: str) -> ModelConfig:
    """qwen3_moe / qwen2_moe: GQA, MoE every ``decoder_sparse_step`` layers except ``mlp_only_layers``.

    Experts, the shared expert and dense layers are all gated (Qwen2MoeMLP / Qwen3MoeMLP:
    gate_proj, up_proj, down_proj)."""
    c = _common(f, name)
    attn = _standard_attention(f, c["hidden_size"], bias=c["model_type"] == "qwen2_moe")
    if c["model_type"] == "qwen3_moe":
        attn = AttentionConfig(**{**attn.__dict__, "qk_norm": True})
    act = _activation(f, "hidden_act", "silu", gated=True)
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


def _parse_deepseek_v3(f: ConfigFields, name: str) -> ModelConfig:
    """deepseek_v3 (and v2): MLA attention; MoE after ``first_k_dense_replace`` dense layers.

    Dense FFN, routed and shared experts are all gated (DeepseekV3MLP / DeepseekV2MLP: gate_proj,
    up_proj, down_proj)."""
    c = _common(f, name)
    heads = f.int("num_attention_heads", hi=4096)
    nope = f.int("qk_nope_head_dim", hi=4096)
    rope = f.int("qk_rope_head_dim", hi=4096)
    q_rank = f.int("q_lora_rank", lo=1, hi=10**6) if f.has("q_lora_rank") else None
    attn = AttentionConfig("mla", heads, 1, nope + rope, f.int("v_head_dim", hi=4096),
                           q_lora_rank=q_rank, kv_lora_rank=f.int("kv_lora_rank", hi=10**6),
                           qk_nope_head_dim=nope, qk_rope_head_dim=rope)
    act = _activation(f, "hidden_act", "silu", gated=True)
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


def _parse_opt(f: ConfigFields, name: str) -> ModelConfig:
    """opt: MHA with biases, ReLU FFN (``ffn_dim``), LayerNorm, learned positions.

    The FFN is never gated: OPTDecoderLayer is ``fc2(act(fc1(x)))`` (2 matrices)."""
    c = _common(f, name)
    c["max_position_embeddings"] = f.int("max_position_embeddings", default=2048, hi=10**8)
    bias = f.bool("enable_bias", True)
    attn = _standard_attention(f, c["hidden_size"], bias=bias)
    act = _activation(f, "activation_function", "relu", gated=False)
    ffn = FFNConfig(f.int("ffn_dim", hi=10**7), gated=False, activation=act, bias=bias)
    proj = f.int("word_embed_proj_dim", default=c["hidden_size"], hi=10**6)
    return ModelConfig(**c, attention=attn, ffn=ffn, moe=None,
                       layer_kinds=_layers(c["num_layers"], lambda i: False), norm="layernorm",
                       positional="learned", tie_word_embeddings=f.bool("tie_word_embeddings", True),
                       embed_proj_dim=proj if proj != c["hidden_size"] else None)


def _parse_gpt2(f: ConfigFields, name: str) -> ModelConfig:
    """gpt2 (and GPT-3 shapes written in its format): MHA with biases, GELU FFN, LayerNorm.

    The FFN is never gated: GPT2MLP is ``c_proj(act(c_fc(x)))`` (2 matrices)."""
    hidden = f.int("n_embd", hi=10**6)
    layers = f.int("n_layer", hi=10**4)
    heads = f.int("n_head", hi=4096)
    if hidden % heads:
        raise SpecError(f.source, "n_head", f"{heads} must divide n_embd={hidden}")
    attn = AttentionConfig("standard", heads, heads, hidden // heads, hidden // heads,
                           qkv_bias=True, out_bias=True)
    inner = f.int("n_inner", default=4 * hidden, hi=10**7)
    act = _activation(f, "activation_function", "gelu_new", gated=False)
    ffn = FFNConfig(inner, gated=False, activation=act, bias=True)
    return ModelConfig(name=name, model_type="gpt2", hidden_size=hidden, num_layers=layers,
                       vocab_size=f.int("vocab_size", hi=10**8),
                       max_position_embeddings=f.int("n_positions", default=1024, hi=10**8),
                       attention=attn, ffn=ffn, moe=None, layer_kinds=_layers(layers, lambda i: False),
                       norm="layernorm", positional="learned",
                       tie_word_embeddings=f.bool("tie_word_embeddings", True), source=f.source)


def _parse_glam(f: ConfigFields, name: str) -> ModelConfig:
    """glam (Decodex's own HF-style config; GLaM has no HF release): MHA, MoE every
    ``moe_layer_frequency`` layers from ``moe_layer_offset``, relative position bias.

    GLaM's gating is architectural and explicit, not inferred from ``hidden_act``: the dense FFNs
    are gated GELU (GLaM paper Sec. 3; ``mlp_gated``, default true) and the experts plain 2-matrix
    FFNs (praxis: no wi_0/wi_1 in the MoE layers; ``expert_mlp_gated``, default false)."""
    c = _common(f, name)
    attn = _standard_attention(f, c["hidden_size"], bias=f.bool("attention_bias", False))
    dense_gated = f.bool("mlp_gated", True)
    expert_gated = f.bool("expert_mlp_gated", False)
    experts = f.int("num_local_experts", hi=100_000)
    width = f.int("intermediate_size", hi=10**7)
    expert = FFNConfig(f.int("moe_intermediate_size", default=width, hi=10**7), gated=expert_gated,
                       activation=_activation(f, "hidden_act", "gelu", gated=expert_gated))
    moe = MoEConfig(experts, f.int("num_experts_per_tok", hi=experts), expert)
    freq = f.int("moe_layer_frequency", default=2, hi=c["num_layers"])
    offset = f.int("moe_layer_offset", default=0, lo=0, hi=freq - 1)
    ffn = FFNConfig(width, gated=dense_gated, activation=_activation(f, "hidden_act", "gelu", gated=dense_gated))
    return ModelConfig(**c, attention=attn, ffn=ffn, moe=moe,
                       layer_kinds=_layers(c["num_layers"], lambda i: i % freq == offset),
                       positional="relative", tie_word_embeddings=f.bool("tie_word_embeddings", True))


def _parse_grok1(f: ConfigFields, name: str) -> ModelConfig:
    """grok-1 (hpcai-tech's Grok1Config): GQA, every layer a top-2 MoE of gated GELU experts
    (xai-org/grok-1 model.py: ``linear_1(gelu(linear(x)) * linear_v(x))``, 3 matrices)."""
    c = _common(f, name)
    attn = _standard_attention(f, c["hidden_size"])
    experts = f.int("num_experts", hi=100_000)
    act = _activation(f, "hidden_act", "gelu", gated=True)
    expert = FFNConfig(f.int("intermediate_size", hi=10**7), gated=True, activation=act)
    moe = MoEConfig(experts, f.int("num_experts_per_tok", hi=experts), expert)
    return ModelConfig(**c, attention=attn, ffn=None, moe=moe,
                       layer_kinds=_layers(c["num_layers"], lambda i: True),
                       tie_word_embeddings=f.bool("tie_word_embeddings", True))


def _parse_step3(f: ConfigFields, name: str) -> ModelConfig:
    """step3_text: MFA attention (query rank ``share_q_dim``, ``num_attention_groups`` K/V heads
    of ``head_dim``), MoE in ``moe_layers_enum`` layers with one shared expert (``share_expert_dim``).

    Dense FFN, experts and shared expert are all gated (vLLM step3_text.py Step3TextMLP:
    gate_up_proj, down_proj with SiluAndMul; FusedMoE experts)."""
    hidden = f.int("hidden_size", hi=10**6)
    layers = f.int("num_hidden_layers", hi=10**4)
    heads = f.int("num_attention_heads", hi=4096)
    groups = f.int("num_attention_groups", default=1, hi=heads)
    head_dim = f.int("head_dim", default=hidden // heads, hi=65536)
    attn = AttentionConfig("mfa", heads, groups, head_dim, head_dim, q_lora_rank=f.int("share_q_dim", hi=10**6))
    act = _activation(f, "hidden_act", "silu", gated=True)
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


_FAMILY_PARSERS: dict[str, FamilyParser] = {
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


def register_family(model_type: str, parser: FamilyParser) -> None:
    """Register a parser for another ``model_type`` (plug-in point for new families)."""
    _FAMILY_PARSERS[model_type] = parser


def supported_model_types() -> list[str]:
    """The ``model_type`` values that can be parsed."""
    return sorted(_FAMILY_PARSERS)


def parser_for(model_type: str) -> FamilyParser | None:
    """The parser registered for ``model_type``, or None when the family is unknown."""
    return _FAMILY_PARSERS.get(model_type)
