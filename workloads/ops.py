"""Operators of a step graph, with exact FLOPs and bytes by tensor.

Every quantity is for one device: the ``devices`` that run an op at once each do the work the
op describes (a tensor-parallel shard, or the whole op when ``replicated``). Per-request
quantities stay numpy arrays on one op. Conventions (documented in ``docs/workloads.md``):

- a matmul of (m × k) by (k × n) is 2·m·n·k FLOP;
- attention counts its two matmuls, 2·d_qk + 2·d_v FLOP per (query head, attended key) pair,
  not the softmax's exponentials (the FlashAttention convention);
- bytes are what a fused kernel moves to and from device memory: weights once, the KV cache
  read once per KV head and the new tokens' K/V written, activations read and written once.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import cached_property
from typing import ClassVar

import numpy as np

from decodex.core.dtypes import DType
from decodex.workloads.precision import Sparsity
from decodex.workloads.token_tree import TokenTree


class OpKind(StrEnum):
    """What an operator is, for the unit models that price it."""

    MATMUL = "matmul"
    ATTENTION = "attention"
    ELEMENTWISE = "elementwise"
    MOE_EXPERTS = "moe_experts"
    COLLECTIVE = "collective"
    TRANSFER = "transfer"


def stored_bytes_per_weight(dtype: DType, sparsity: Sparsity | None = None, bits: float | None = None) -> float:
    """Average bytes stored per dense weight position: ``bits`` / 8 (mixed-precision average,
    e.g. 4.1 for mostly 4-bit weights with some 8-bit layers) or the dtype's size, times the N:M
    density plus the sparsity's index metadata per kept weight."""
    value = bits / 8.0 if bits is not None else dtype.nbytes
    if sparsity is None:
        return value
    return sparsity.density * (value + sparsity.metadata_bits_per_nonzero / 8.0)


@dataclass(frozen=True, eq=False, kw_only=True)
class Op:
    """Common fields of every operator.

    ``name``: what it is in the model (``qkv_proj``, ``attention`` ...). ``block``: the part of
    the model it belongs to (``embedding``, ``attention``, ``ffn``, ``moe``, ``head``,
    ``pipeline``). ``dtype``: the compute format. ``devices``: devices that run this op at once.
    ``replicated``: each of them computes the whole op (e.g. a norm under tensor parallelism)
    rather than a shard of it.
    """

    kind: ClassVar[OpKind]
    name: str
    dtype: DType
    block: str = ""
    devices: int = 1
    replicated: bool = False

    @property
    def flops(self) -> float:
        """FLOP executed per device (after sparsity)."""
        return 0.0

    @property
    def dense_flops(self) -> float:
        """FLOP per device as if the weights were dense."""
        return self.flops

    @property
    def weight_bytes(self) -> float:
        """Weight bytes read per device this step."""
        return 0.0

    @property
    def kv_bytes(self) -> float:
        """KV-cache bytes read and written per device this step."""
        return 0.0

    @property
    def activation_bytes(self) -> float:
        """Activation bytes read and written per device this step."""
        return 0.0

    @cached_property
    def bytes(self) -> float:
        """All device-memory bytes moved per device: weights + KV cache + activations (computed
        once per op: an op's fields never change)."""
        return self.weight_bytes + self.kv_bytes + self.activation_bytes

    @property
    def resident_weight_bytes(self) -> float:
        """Weight bytes this op keeps stored on each device."""
        return self.weight_bytes

    @property
    def resident_kv_bytes(self) -> float:
        """KV-cache bytes this op keeps stored on each device after the step."""
        return 0.0

    @property
    def sparsity(self) -> Sparsity | None:
        """N:M weight sparsity of the op, if any."""
        return None

    @property
    def arithmetic_intensity(self) -> float:
        """FLOP per byte moved (0 when no bytes move)."""
        total = self.bytes
        return self.flops / total if total > 0 else 0.0


@dataclass(frozen=True, eq=False, kw_only=True)
class MatmulOp(Op):
    """``count`` independent (m × k) @ (k × n) products; the (k × n) operand is a weight when
    ``weight_dtype`` is set (else both operands are activations)."""

    kind: ClassVar[OpKind] = OpKind.MATMUL
    m: int
    n: int
    k: int
    count: int = 1
    weight_dtype: DType | None = None
    weight_sparsity: Sparsity | None = None
    weight_bits: float | None = None  # mixed precision: average stored bits per weight (None: the dtype's)
    bias: bool = False
    weights_shared: bool = False  # the weights are another op's (tied LM head): not stored twice

    @property
    def dense_flops(self) -> float:
        return 2.0 * self.m * self.n * self.k * self.count

    @property
    def resident_weight_bytes(self) -> float:
        return 0.0 if self.weights_shared else self.weight_bytes

    @cached_property
    def flops(self) -> float:
        density = self.weight_sparsity.density if self.weight_sparsity else 1.0
        return self.dense_flops * density

    @property
    def sparsity(self) -> Sparsity | None:
        return self.weight_sparsity

    @property
    def weight_bytes(self) -> float:
        if self.weight_dtype is None:
            return 0.0
        per_weight = stored_bytes_per_weight(self.weight_dtype, self.weight_sparsity, self.weight_bits)
        total = self.count * self.n * self.k * per_weight
        if self.bias:
            total += self.count * self.n * self.weight_dtype.nbytes
        return total

    @property
    def activation_bytes(self) -> float:
        second = 0 if self.weight_dtype is not None else self.k * self.n
        return self.count * (self.m * self.k + second + self.m * self.n) * self.dtype.nbytes


@dataclass(frozen=True, eq=False, kw_only=True)
class AttentionOp(Op):
    """Attention of a batch of requests over their KV caches (one layer, one device).

    Request ``i`` has ``context_lens[i]`` cached tokens and ``query_lens[i]`` new ones; query
    token ``j`` attends to ``context_lens[i] + j + 1`` keys (causal). A request whose new tokens
    are a speculative verify over ``tree`` (``query_lens[i] == tree.query_tokens``) attends with
    the tree's mask instead: each query its cached keys, its ancestors and itself
    (:class:`~workloads.token_tree.TokenTree`); ``verifies`` marks such requests (a GPU runs them
    with its decode-attention kernel, :mod:`hw_models.decode_attention`). ``q_heads`` query heads
    share ``kv_heads`` K/V heads (GQA/MQA; MLA and MFA are ``kv_heads = 1`` with wide heads).
    ``kv_elements_per_token``: elements cached per token on this device.
    """

    kind: ClassVar[OpKind] = OpKind.ATTENTION
    context_lens: np.ndarray
    query_lens: np.ndarray
    q_heads: int
    kv_heads: int
    qk_dim: int
    v_dim: int
    kv_elements_per_token: int
    kv_dtype: DType
    kv_replicated: bool = False  # each device of the group stores the same KV heads
    tree: TokenTree | None = None  # the drafted tokens' tree of a speculative verify (None: causal)
    verifies: np.ndarray | None = None  # per request: its new tokens are a speculative verify (None: none is)
    attended_pairs: float = field(init=False)
    cached_tokens: float = field(init=False)
    new_tokens: float = field(init=False)

    def __post_init__(self) -> None:
        ctx = self.context_lens.astype(np.float64)
        q = self.query_lens.astype(np.float64)
        new_keys = q * (q + 1.0) / 2.0  # causal among the step's new tokens
        if self.tree is not None:
            new_keys = np.where(self.query_lens == self.tree.query_tokens, float(self.tree.attended_new_keys), new_keys)
        object.__setattr__(self, "attended_pairs", float((q * ctx + new_keys).sum()))
        object.__setattr__(self, "new_tokens", float(q.sum()))
        object.__setattr__(self, "cached_tokens", float(ctx.sum()))

    @property
    def flops(self) -> float:
        return 2.0 * self.q_heads * (self.qk_dim + self.v_dim) * self.attended_pairs

    @property
    def kv_bytes_per_token(self) -> float:
        """KV-cache bytes per token on this device for this layer."""
        return self.kv_elements_per_token * self.kv_dtype.nbytes

    @property
    def kv_bytes(self) -> float:
        total_tokens = self.cached_tokens + self.new_tokens
        return (total_tokens + self.new_tokens) * self.kv_bytes_per_token

    @property
    def activation_bytes(self) -> float:
        return self.new_tokens * self.q_heads * (self.qk_dim + self.v_dim) * self.dtype.nbytes

    @property
    def resident_kv_bytes(self) -> float:
        return (self.cached_tokens + self.new_tokens) * self.kv_bytes_per_token

    def subset(self, mask: np.ndarray, name: str | None = None) -> AttentionOp:
        """This op over the requests of ``mask`` (a boolean array), renamed ``name`` if given."""
        return replace(self, name=self.name if name is None else name,
                                   context_lens=self.context_lens[mask], query_lens=self.query_lens[mask],
                                   verifies=None if self.verifies is None else self.verifies[mask])

    @property
    def decode_like(self) -> np.ndarray:
        """Per request: one new token, or a speculative verify's few (what a decode kernel runs)."""
        one = self.query_lens == 1
        return one if self.verifies is None else one | self.verifies

    @property
    def query_heads_per_kv_head(self) -> float:
        """Query heads sharing one K/V head (the op's reuse of each KV byte)."""
        return self.q_heads / self.kv_heads


@dataclass(frozen=True, eq=False, kw_only=True)
class ElementwiseOp(Op):
    """A vector operation over ``elements`` elements: norms, activations, RoPE, residual adds.

    ``tensors_read``/``tensors_written``: element-sized activation tensors it reads and writes;
    ``weight_elements``: parameters it reads (a norm's scale and bias).
    """

    kind: ClassVar[OpKind] = OpKind.ELEMENTWISE
    elements: int
    flops_per_element: float
    tensors_read: int = 1
    tensors_written: int = 1
    weight_elements: int = 0
    weight_dtype: DType | None = None

    @property
    def flops(self) -> float:
        return self.elements * self.flops_per_element

    @property
    def weight_bytes(self) -> float:
        return self.weight_elements * (self.weight_dtype or self.dtype).nbytes

    @property
    def activation_bytes(self) -> float:
        return self.elements * (self.tensors_read + self.tensors_written) * self.dtype.nbytes


@dataclass(frozen=True, eq=False, kw_only=True)
class EmbeddingOp(Op):
    """Token-embedding lookup: gathers ``tokens`` rows of width ``dim`` from a table of
    ``rows`` rows stored on this device."""

    kind: ClassVar[OpKind] = OpKind.ELEMENTWISE
    tokens: int
    dim: int
    rows: int
    weight_dtype: DType

    @property
    def weight_bytes(self) -> float:
        return self.tokens * self.dim * self.weight_dtype.nbytes

    @property
    def activation_bytes(self) -> float:
        return self.tokens * self.dim * self.dtype.nbytes

    @property
    def resident_weight_bytes(self) -> float:
        return self.rows * self.dim * self.weight_dtype.nbytes


@dataclass(frozen=True, eq=False, kw_only=True)
class MoEExpertsOp(Op):
    """Routed experts of one MoE layer on one device, as a grouped GEMM.

    ``expert_tokens`` has shape ``(draws, ranks, local_experts)``: tokens routed to each local
    expert of each expert-parallel rank, one independent routing draw per MoE layer. Each expert
    is a ``hidden × intermediate`` FFN (``intermediate`` is this device's shard), gated (three
    matrices) or not (two). Only experts that receive tokens read their weights.
    """

    kind: ClassVar[OpKind] = OpKind.MOE_EXPERTS
    expert_tokens: np.ndarray
    hidden: int
    intermediate: int
    gated: bool
    weight_dtype: DType
    weight_sparsity: Sparsity | None = None
    weight_bits: float | None = None  # mixed precision: average stored bits per weight (None: the dtype's)
    rank_flops: np.ndarray = field(init=False)
    rank_weight_bytes: np.ndarray = field(init=False)
    rank_activation_bytes: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        tokens = np.asarray(self.expert_tokens, dtype=np.float64)
        if tokens.ndim != 3:
            raise ValueError("expert_tokens must have shape (draws, ranks, local_experts)")
        matrices = 3 if self.gated else 2
        per_weight = stored_bytes_per_weight(self.weight_dtype, self.weight_sparsity, self.weight_bits)
        density = self.weight_sparsity.density if self.weight_sparsity else 1.0
        d, f = self.hidden, self.intermediate
        object.__setattr__(self, "rank_flops", 2.0 * matrices * d * f * density * tokens.sum(axis=2))
        active = (tokens > 0).sum(axis=2)
        object.__setattr__(self, "rank_weight_bytes", active * matrices * d * f * per_weight)
        # x in, gate/up out, activation in to the down projection, y out
        up_width = (2 if self.gated else 1) * f
        act_elems = tokens.sum(axis=2) * (2 * d + up_width + f)
        object.__setattr__(self, "rank_activation_bytes", act_elems * self.dtype.nbytes)

    @property
    def ranks(self) -> int:
        """Expert-parallel ranks."""
        return int(self.expert_tokens.shape[1])

    @property
    def local_experts(self) -> int:
        """Experts stored on each rank."""
        return int(self.expert_tokens.shape[2])

    @cached_property
    def flops(self) -> float:
        return float(self.rank_flops.mean())

    @property
    def dense_flops(self) -> float:
        density = self.weight_sparsity.density if self.weight_sparsity else 1.0
        return self.flops / density if density > 0 else 0.0

    @property
    def sparsity(self) -> Sparsity | None:
        return self.weight_sparsity

    @property
    def weight_bytes(self) -> float:
        return float(self.rank_weight_bytes.mean())

    @property
    def activation_bytes(self) -> float:
        return float(self.rank_activation_bytes.mean())

    @property
    def resident_weight_bytes(self) -> float:
        matrices = 3 if self.gated else 2
        per_weight = stored_bytes_per_weight(self.weight_dtype, self.weight_sparsity, self.weight_bits)
        return self.local_experts * matrices * self.hidden * self.intermediate * per_weight


COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "send_recv")


@dataclass(frozen=True, eq=False, kw_only=True)
class CollectiveOp(Op):
    """A collective among ``devices`` devices on a buffer of ``payload_bytes`` per device.

    ``payload_bytes`` is the full buffer each device holds (the reduced vector for an
    all-reduce, the gathered result for an all-gather, what one device sends for send_recv).
    """

    kind: ClassVar[OpKind] = OpKind.COLLECTIVE
    collective: str
    payload_bytes: float

    def __post_init__(self) -> None:
        if self.collective not in COLLECTIVES:
            raise ValueError(f"collective {self.collective!r} not one of {COLLECTIVES}")

    @property
    def activation_bytes(self) -> float:
        return self.payload_bytes
