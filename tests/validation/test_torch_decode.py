"""The PyTorch decode step of the GPU validation: its shapes and memory arithmetic (always), and
its arithmetic against a float64 reference on the CPU (where torch is installed)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from decodex.sim import estimate
from decodex.validation.torch_decode import GiB, LlamaShape, fits
from decodex.workloads.catalog import CATALOG_DIR

TINY = {"hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 96,
        "num_hidden_layers": 2, "vocab_size": 50, "rms_norm_eps": 1e-5, "rope_theta": 10000.0}


@pytest.mark.parametrize("name", ["llama2-7b", "llama3-8b"])
def test_weight_bytes_equal_the_workload_graphs(name: str) -> None:
    """The PyTorch model holds exactly the weights Decodex's graph reads (bf16, untied head)."""
    shape = LlamaShape.from_config(json.loads((CATALOG_DIR / f"{name}.json").read_text()))
    result = estimate(name, "h200", 1, context=512, precision="bf16")
    assert shape.weight_bytes() == pytest.approx(result.weight_bytes, rel=1e-6)


def test_kv_bytes_by_hand() -> None:
    """llama3-8b: 2 (K, V) x 32 layers x 8 KV heads x 128 x 2 B = 128 KiB per token."""
    shape = LlamaShape.from_config(json.loads((CATALOG_DIR / "llama3-8b.json").read_text()))
    assert shape.kv_bytes(4, 1023) == 4 * 1024 * 128 * 1024
    assert fits(shape, 1, 512, 140 * GiB) is None
    reason = fits(shape, 128, 8192, 140 * GiB)
    assert reason is not None and "KV cache 137.5 GB" in reason


def _reference_logits(torch, model) -> np.ndarray:  # type: ignore[no-untyped-def]
    """float64 decode step with GQA spelt out (each query head against its KV head's cache)."""
    s, b, pos = model.shape, model.batch, model.position

    def f64(t):  # type: ignore[no-untyped-def]
        return t.to(torch.float64)

    def norm(x, w):  # type: ignore[no-untyped-def]
        return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + s.rms_eps) * f64(w)

    def rope(x):  # type: ignore[no-untyped-def]
        half = s.head_dim // 2
        return x * f64(model.cos) + torch.cat([-x[..., half:], x[..., :half]], -1) * f64(model.sin)

    x = f64(model.embedding[model.tokens])
    for i, w in enumerate(model.layers):
        qkv = norm(x, w["attn_norm"]) @ f64(w["wqkv"]).t()
        q, k, v = qkv.split([s.heads * s.head_dim, s.kv_heads * s.head_dim, s.kv_heads * s.head_dim], -1)
        q = rope(q.view(b, s.heads, s.head_dim))
        k = rope(k.view(b, s.kv_heads, s.head_dim))
        keys, values = (f64(c).clone() for c in model.reference_caches[i])
        keys[:, :, pos], values[:, :, pos] = k, v.view(b, s.kv_heads, s.head_dim)
        group = s.heads // s.kv_heads
        keys, values = keys.repeat_interleave(group, 1), values.repeat_interleave(group, 1)
        scores = torch.einsum("bhd,bhld->bhl", q, keys) / s.head_dim**0.5
        out = torch.einsum("bhl,bhld->bhd", scores.softmax(-1), values).reshape(b, -1)
        x = x + out @ f64(w["wo"]).t()
        gate, up = (norm(x, w["ffn_norm"]) @ f64(w["w_gate_up"]).t()).chunk(2, -1)
        x = x + (torch.nn.functional.silu(gate) * up) @ f64(w["w_down"]).t()
    return (norm(x, model.final_norm) @ f64(model.lm_head).t()).numpy()


@pytest.mark.parametrize("kv_heads", [1, 2, 4])
def test_step_matches_a_float64_reference(kv_heads: int) -> None:
    """GQA as query rows of one KV head, RoPE, the cache write and the FFN compute the model."""
    torch = pytest.importorskip("torch")
    from decodex.validation.torch_decode import DecodeModel

    model = DecodeModel(torch, LlamaShape.from_config({**TINY, "num_key_value_heads": kv_heads}), seed=1,
                        device="cpu")
    model.set_batch(3, 7)
    model.reference_caches = [(k.clone(), v.clone()) for k, v in model.caches]
    reference = _reference_logits(torch, model)
    with torch.no_grad():
        logits = model.logits().to(torch.float64).numpy()
    assert np.isfinite(logits).all()
    assert np.abs(logits - reference).max() / np.abs(reference).max() < 3e-2
    for layer, (k_cache, _) in enumerate(model.caches):  # the new token's K landed at position 7
        assert not torch.equal(k_cache[:, :, 7], model.reference_caches[layer][0][:, :, 7])
        assert torch.equal(k_cache[:, :, :7], model.reference_caches[layer][0][:, :, :7])


def test_partial_steps_run() -> None:
    """The attention-only and projections-only parts run on the step's shapes."""
    torch = pytest.importorskip("torch")
    from decodex.validation.torch_decode import DecodeModel

    model = DecodeModel(torch, LlamaShape.from_config(TINY), seed=2, device="cpu")
    model.set_batch(2, 5)
    model.make_probes()
    with torch.no_grad():
        model.attention_only()
        model.projections_only()
        assert model.step().shape == (2,)
