"""The shape of a decoder-only transformer (:class:`ModelConfig`) and what follows from it: its
context window, family, KV-cache bytes per token (B) and parameter counts (parameters).

Model shapes are read from Hugging Face ``config.json`` files by :mod:`workloads.hf_config`;
the shapes of one layer's parts are in :mod:`workloads.block_config`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from decodex.core.dtypes import DType
from decodex.workloads.block_config import AttentionConfig, FFNConfig, MoEConfig


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
