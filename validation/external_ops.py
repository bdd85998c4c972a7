"""Vidur's measured operators as Decodex ops (``decodex validate external``).

One row of a Vidur ``mlp.csv`` (``num_tokens`` tokens, ``tp`` tensor-parallel shards, the model's
shape columns) times ten operators of a decoder layer; :func:`ops_for_row` gives the Decodex op
each stands for, per device, in 16-bit. Sizes in elements; the ops report FLOP and bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from decodex.core.dtypes import DType
from decodex.validation.external_data import SHAPE_COLUMNS
from decodex.workloads.builder import (
    ACTIVATION_FLOPS_PER_ELEMENT,
    GATE_MULTIPLY_FLOPS_PER_ELEMENT,
    RESIDUAL_ADD_FLOPS_PER_ELEMENT,
    RMSNORM_FLOPS_PER_ELEMENT,
    ROPE_FLOPS_PER_ELEMENT,
)
from decodex.workloads.ops import ElementwiseOp, EmbeddingOp, MatmulOp, Op

DTYPE = DType.BF16  # Vidur profiles in 16-bit


def ops_for_row(row: Mapping[str, Any]) -> dict[str, Op]:
    """The Decodex op of each operator Vidur measured in one ``mlp.csv`` row (per device, 16-bit).

    ``row`` holds ``num_tokens``, ``tp`` (or ``num_tensor_parallel_workers``) and the shape
    columns (sizes in elements). GEMMs (``attn_pre_proj`` = QKV, ``attn_post_proj``,
    ``mlp_up_proj`` = gate+up when gated, ``mlp_down_proj``) are ``MatmulOp`` with bf16 weights;
    norms (RMSNorm without the residual, which Vidur times as ``add``), RoPE, the activation and
    the residual add are ``ElementwiseOp`` with workloads/builder.py's FLOP-per-element
    conventions; ``emb`` is an ``EmbeddingOp`` over this shard's vocabulary rows.
    """
    return dict(_ops_for_shape(*_shape_key(row)))


def compute_ops(frame: pd.DataFrame) -> list[Op]:
    """The Decodex op of each row of a ``load_compute`` frame (one per row, in order; FLOP and
    bytes per device)."""
    columns = ("num_tokens", "tp", *SHAPE_COLUMNS)
    out = []
    for values in zip(*(frame[c] for c in (*columns, "op")), strict=True):
        row = dict(zip(columns, values[:-1], strict=True))
        out.append(dict(_ops_for_shape(*_shape_key(row)))[values[-1]])
    return out


def shape_text(op: Op) -> str:
    """A short text of an op's shape (sizes in elements), e.g. ``m=32,n=12288,k=4096``."""
    if isinstance(op, MatmulOp):
        return f"m={op.m},n={op.n},k={op.k}"
    if isinstance(op, EmbeddingOp):
        return f"tokens={op.tokens},dim={op.dim}"
    if isinstance(op, ElementwiseOp):
        return f"elements={op.elements}"
    return ""


def _shape_key(row: Mapping[str, Any]) -> tuple[int, int, int, int, int, int, int, bool]:
    tp = row["tp"] if "tp" in row else row["num_tensor_parallel_workers"]
    gated = row["use_gated_mlp"]
    gated = gated if isinstance(gated, bool | np.bool_) else str(gated).lower() == "true"
    return (int(row["num_tokens"]), int(tp), int(row["n_head"]), int(row["n_kv_head"]), int(row["n_embd"]),
            int(row["n_expanded_embd"]), int(row["vocab_size"]), bool(gated))


@lru_cache(maxsize=8192)
def _ops_for_shape(tokens: int, tp: int, heads: int, kv_heads: int, d: int, ffn: int, vocab: int,
                   gated: bool) -> tuple[tuple[str, Op], ...]:
    head_dim = d // heads
    q_local, kv_local, f_local = heads // tp, max(1, kv_heads // tp), ffn // tp

    def gemm(name: str, n: int, k: int) -> MatmulOp:
        return MatmulOp(name=name, dtype=DTYPE, devices=tp, m=tokens, n=n, k=k, weight_dtype=DTYPE)

    def vector(name: str, elements: int, fpe: float, reads: int = 1, weights: int = 0) -> ElementwiseOp:
        return ElementwiseOp(name=name, dtype=DTYPE, devices=tp, elements=elements, flops_per_element=fpe,
                             tensors_read=reads, tensors_written=1, weight_elements=weights,
                             weight_dtype=DTYPE if weights else None)

    act = "silu" if gated else "gelu"
    act_fpe = ACTIVATION_FLOPS_PER_ELEMENT[act] + (GATE_MULTIPLY_FLOPS_PER_ELEMENT if gated else 0.0)
    ops: list[tuple[str, Op]] = [
        ("attn_pre_proj", gemm("attn_pre_proj", (q_local + 2 * kv_local) * head_dim, d)),
        ("attn_post_proj", gemm("attn_post_proj", d, q_local * head_dim)),
        ("mlp_up_proj", gemm("mlp_up_proj", (2 if gated else 1) * f_local, d)),
        ("mlp_down_proj", gemm("mlp_down_proj", d, f_local)),
        ("input_layernorm", vector("input_layernorm", tokens * d, RMSNORM_FLOPS_PER_ELEMENT, weights=d)),
        ("post_attention_layernorm",
         vector("post_attention_layernorm", tokens * d, RMSNORM_FLOPS_PER_ELEMENT, weights=d)),
        ("attn_rope", vector("attn_rope", tokens * (q_local + kv_local) * head_dim, ROPE_FLOPS_PER_ELEMENT)),
        ("mlp_act", vector("mlp_act", tokens * f_local, act_fpe, reads=2 if gated else 1)),
        ("add", vector("add", tokens * d, RESIDUAL_ADD_FLOPS_PER_ELEMENT, reads=2)),
        ("emb", EmbeddingOp(name="emb", dtype=DTYPE, devices=tp, tokens=tokens, dim=d, rows=-(-vocab // tp),
                            weight_dtype=DTYPE)),
    ]
    return tuple(ops)
