"""Shapes of a decoder layer's parts: an attention block, a dense FFN and a MoE layer, each with
its parameter count (parameters, i.e. weights and biases, for a model of hidden size ``hidden``).

Also the element-wise activations an FFN may use: the Hugging Face ``ACT2FN`` names
(``transformers/activations.py``), each with its FLOPs per element. Whether an FFN is gated is a
property of the model family (its modelling code), never of the activation's name.
"""

from __future__ import annotations

from dataclasses import dataclass

# FLOPs per element of each activation (canonical names; conventions, see docs/workloads.md).
# One FLOP per arithmetic operation and one per transcendental (exp, log, tanh, erf, sqrt).
ACTIVATION_FLOPS_PER_ELEMENT: dict[str, float] = {
    "linear": 0.0,  # identity
    "relu": 1.0,  # max(x, 0)
    "relu2": 2.0,  # max(x, 0), square
    "relu6": 2.0,  # max(x, 0), min(., 6)
    "leaky_relu": 2.0,  # slope * x, max
    "prelu": 2.0,  # learned slope * x, max
    "hardswish": 5.0,  # x * min(max(x + 3, 0), 6) / 6: add, max, min, multiply, scale
    "tanh": 1.0,  # one transcendental
    "sigmoid": 4.0,  # 1 / (1 + exp(-x)): negate, exp, add, divide
    "silu": 4.0,  # x / (1 + exp(-x)): negate, exp, add, divide
    "quick_gelu": 4.0,  # x / (1 + exp(-1.702 x)): scale, exp, add, divide
    "sqrtsoftplus": 4.0,  # sqrt(log(1 + exp(x))): exp, add, log, sqrt
    "mish": 5.0,  # x * tanh(log(1 + exp(x))): exp, add, log, tanh, multiply
    "laplace": 5.0,  # (1 + erf((x - mu) / (sigma * sqrt 2))) / 2: subtract, scale, erf, add, halve
    "xielu": 7.0,  # compare/select + the negative branch: min, expm1, subtract, scale, beta * x, add
    "gelu": 8.0,  # every GELU form counts 8 (the project's convention, exact erf or tanh approximation)
    "gelu_new": 8.0,
    "gelu_pytorch_tanh": 8.0,
    "gelu_fast": 8.0,
    "gelu_accurate": 8.0,
    "gelu_10": 10.0,  # GELU clipped to [-10, 10]: + max, min
}

# Hugging Face names that are the same function as a canonical one.
ACTIVATION_ALIASES: dict[str, str] = {
    "swish": "silu",
    "gelu_python": "gelu",
    "gelu_python_tanh": "gelu_pytorch_tanh",
}

# Names of a gated pair (activation(gate) * up), accepted only for an FFN that is gated.
GATED_ACTIVATION_ALIASES: dict[str, str] = {"swiglu": "silu", "geglu": "gelu"}


def known_activations(gated: bool) -> list[str]:
    """The activation names accepted for an FFN that is (or is not) gated, sorted."""
    names = set(ACTIVATION_FLOPS_PER_ELEMENT) | set(ACTIVATION_ALIASES)
    if gated:
        names |= set(GATED_ACTIVATION_ALIASES)
    return sorted(names)


def canonical_activation(name: str, gated: bool) -> str:
    """The canonical name of activation ``name`` (``swish`` -> ``silu``; ``swiglu`` -> ``silu`` and
    ``geglu`` -> ``gelu`` in a gated FFN). Raises ValueError, listing the known names, for an
    unknown name or a gated-pair name on an FFN that is not gated."""
    if name in ACTIVATION_FLOPS_PER_ELEMENT:
        return name
    if name in ACTIVATION_ALIASES:
        return ACTIVATION_ALIASES[name]
    if name in GATED_ACTIVATION_ALIASES:
        if gated:
            return GATED_ACTIVATION_ALIASES[name]
        raise ValueError(f"{name!r} names a gated FFN (activation(gate) * up), but this FFN is not gated "
                         f"(two matrices); known: {', '.join(known_activations(False))}")
    raise ValueError(f"unknown activation {name!r}; known (Hugging Face ACT2FN names): "
                     f"{', '.join(known_activations(gated))}")


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
    """A dense feed-forward block: ``gated`` (gate, up and down projections, three matrices:
    SwiGLU, GeGLU ...) or plain (up and down, two). ``activation`` is an activation name (see
    :func:`canonical_activation`); it is stored in canonical form and only sets the element-wise
    FLOPs, never the number of matrices."""

    intermediate_size: int
    gated: bool
    activation: str
    bias: bool = False

    def __post_init__(self) -> None:
        """Normalise ``activation`` (raises ValueError for an unknown name)."""
        object.__setattr__(self, "activation", canonical_activation(self.activation, self.gated))

    @property
    def activation_flops_per_element(self) -> float:
        """FLOPs per element of the activation (without the gate multiply)."""
        return ACTIVATION_FLOPS_PER_ELEMENT[self.activation]

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
