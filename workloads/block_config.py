"""Shapes of a decoder layer's parts: an attention block, a dense FFN and a MoE layer, each with
its parameter count (parameters, i.e. weights and biases, for a model of hidden size ``hidden``)."""

from __future__ import annotations

from dataclasses import dataclass


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
