"""One decode step of a Llama-architecture model in PyTorch, timed on a CUDA GPU.

The model is built from its Hugging Face ``config.json`` with random weights (no download), in
bf16, with every request's KV cache filled with random values up to its context. A step is
what a serving engine runs per token (vLLM / gpt-fast layout): embedding lookup; per layer
RMSNorm, one fused QKV projection, RoPE, the new token's K/V written into the cache, decode
attention over ``context + 1`` keys (``scaled_dot_product_attention`` with the query heads of a
KV head as its query rows, so each KV head's cache is read once, as GQA kernels do), output
projection, RMSNorm, fused gate-up projection, SiLU-and-multiply, down projection; final
RMSNorm, LM head and greedy sampling (argmax).

The step is captured in a CUDA graph (no Python or launch gaps between kernels, as vLLM and
gpt-fast run decode) and timed with CUDA events around each replay after warm-up replays; the
median replay is the step time. Two partial graphs are timed the same way to split the step:
the attention part alone (cache write + attention, every layer) and the projections alone
(the four GEMMs of every layer + LM head). ``validation.e2e_decode`` compares the rows with
``estimate``.

Only :func:`time_decode_grid` and the helpers it calls import torch, so the module is importable
(and its shapes testable) without it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

GiB = 1 << 30


@dataclass(frozen=True)
class LlamaShape:
    """The dimensions of a Llama-architecture decoder (from a Hugging Face ``config.json``)."""

    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    layers: int
    vocab: int
    rms_eps: float
    rope_theta: float

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> LlamaShape:
        """The shape of a ``LlamaForCausalLM``-style config (``num_key_value_heads`` defaults to
        ``num_attention_heads``, ``head_dim`` to ``hidden_size / num_attention_heads``)."""
        heads = int(config["num_attention_heads"])
        hidden = int(config["hidden_size"])
        return cls(hidden=hidden, heads=heads, kv_heads=int(config.get("num_key_value_heads") or heads),
                   head_dim=int(config.get("head_dim") or hidden // heads),
                   intermediate=int(config["intermediate_size"]), layers=int(config["num_hidden_layers"]),
                   vocab=int(config["vocab_size"]), rms_eps=float(config.get("rms_norm_eps", 1e-6)),
                   rope_theta=float(config.get("rope_theta", 10000.0)))

    def weight_bytes(self, element_bytes: int = 2) -> int:
        """Bytes of all weights (embedding and LM head untied, norms included), B."""
        qkv = (self.heads + 2 * self.kv_heads) * self.head_dim * self.hidden
        out = self.heads * self.head_dim * self.hidden
        per_layer = qkv + out + 3 * self.hidden * self.intermediate + 2 * self.hidden
        return element_bytes * (self.layers * per_layer + 2 * self.vocab * self.hidden + self.hidden)

    def kv_bytes(self, batch: int, context: int, element_bytes: int = 2) -> int:
        """Bytes of the KV caches of ``batch`` requests with room for ``context + 1`` tokens each, B."""
        return element_bytes * 2 * self.layers * batch * self.kv_heads * (context + 1) * self.head_dim


def fits(shape: LlamaShape, batch: int, context: int, free_bytes: float, headroom: float = 0.9) -> str | None:
    """None if weights + KV caches + activations (about 2 GiB, logits included) fit in
    ``headroom`` of ``free_bytes`` (B: the memory for all three, weights included); else the
    reason, one line."""
    activations = 2 * GiB + 4 * batch * shape.vocab
    need = shape.weight_bytes() + shape.kv_bytes(batch, context) + activations
    if need <= headroom * free_bytes:
        return None
    return (f"weights {shape.weight_bytes() / 1e9:.1f} GB + KV cache {shape.kv_bytes(batch, context) / 1e9:.1f} GB "
            f"+ activations exceed {headroom:.0%} of the {free_bytes / 1e9:.1f} GB free")


def median_event_time_s(torch: Any, replay: Callable[[], None], warmup: int, repeats: int) -> tuple[float, float]:
    """Median and minimum seconds of ``replay()`` (a graph replay or any GPU work) between CUDA
    events, after ``warmup`` calls; every pair is recorded before one synchronize."""
    for _ in range(warmup):
        replay()
    torch.cuda.synchronize()
    pairs = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(repeats)]
    for start, end in pairs:
        start.record()
        replay()
        end.record()
    torch.cuda.synchronize()
    samples = [start.elapsed_time(end) * 1e-3 for start, end in pairs]
    return statistics.median(samples), min(samples)


def _graph(torch: Any, fn: Callable[[], Any]) -> Callable[[], None]:
    """``fn`` captured in a CUDA graph (after three eager runs on a side stream); returns its replay."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


class DecodeModel:
    """Random bf16 weights of a Llama decoder on ``device``, its KV caches, and the step functions
    (the whole step and the two partial ones)."""

    def __init__(self, torch: Any, shape: LlamaShape, seed: int, device: str = "cuda") -> None:
        self.torch, self.shape, self.device = torch, shape, device
        gen = torch.Generator(device=device).manual_seed(seed)
        s = shape

        def randn(*dims: int, std: float = 0.02) -> Any:
            return torch.randn(*dims, device=device, dtype=torch.bfloat16, generator=gen) * std

        qkv = (s.heads + 2 * s.kv_heads) * s.head_dim
        self.embedding = randn(s.vocab, s.hidden, std=1.0)
        self.lm_head = randn(s.vocab, s.hidden)
        self.final_norm = 1.0 + randn(s.hidden)
        self.layers = [{"attn_norm": 1.0 + randn(s.hidden), "wqkv": randn(qkv, s.hidden),
                        "wo": randn(s.hidden, s.heads * s.head_dim), "ffn_norm": 1.0 + randn(s.hidden),
                        "w_gate_up": randn(2 * s.intermediate, s.hidden), "w_down": randn(s.hidden, s.intermediate)}
                       for _ in range(s.layers)]
        self.caches: list[tuple[Any, Any]] = []
        self.gen = gen

    def set_batch(self, batch: int, context: int) -> None:
        """Fresh random KV caches (``batch`` x kv_heads x (context + 1) x head_dim per layer), token
        ids and the RoPE angles of position ``context``."""
        torch, s = self.torch, self.shape
        self.caches = []
        if self.device == "cuda":
            torch.cuda.empty_cache()
        for _ in range(s.layers):
            k = torch.randn(batch, s.kv_heads, context + 1, s.head_dim, device=self.device, dtype=torch.bfloat16,
                            generator=self.gen)
            self.caches.append((k, torch.randn_like(k)))
        self.position = context
        self.tokens = torch.randint(0, s.vocab, (batch,), device=self.device, generator=self.gen)
        even = torch.arange(0, s.head_dim, 2, device=self.device, dtype=torch.float32)
        inv = 1.0 / (s.rope_theta ** (even / s.head_dim))
        angles = context * inv
        self.cos = torch.cat([angles.cos(), angles.cos()]).to(torch.bfloat16)
        self.sin = torch.cat([angles.sin(), angles.sin()]).to(torch.bfloat16)
        self.batch = batch

    def _norm(self, x: Any, weight: Any) -> Any:
        return self.torch.nn.functional.rms_norm(x, (x.shape[-1],), weight, self.shape.rms_eps)

    def _rope(self, x: Any) -> Any:
        half = x.shape[-1] // 2
        rotated = self.torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * self.cos + rotated * self.sin

    def _attention(self, layer: int, q: Any, k: Any, v: Any) -> Any:
        """Write the new K/V at ``position`` and attend all ``position + 1`` keys; q (B, H, D)."""
        s, b = self.shape, self.batch
        k_cache, v_cache = self.caches[layer]
        k_cache[:, :, self.position] = k
        v_cache[:, :, self.position] = v
        group = s.heads // s.kv_heads
        out = self.torch.nn.functional.scaled_dot_product_attention(
            q.view(b, s.kv_heads, group, s.head_dim), k_cache, v_cache)
        return out.reshape(b, s.heads * s.head_dim)

    def step(self) -> Any:
        """One decode step: next token ids (batch,), greedy."""
        return self.torch.argmax(self.logits(), dim=-1)

    def logits(self) -> Any:
        """One decode step up to the logits (batch, vocab); writes the new token's K/V."""
        torch, s, b = self.torch, self.shape, self.batch
        x = self.embedding[self.tokens]
        for i, w in enumerate(self.layers):
            qkv = self._norm(x, w["attn_norm"]) @ w["wqkv"].t()
            q, k, v = qkv.split([s.heads * s.head_dim, s.kv_heads * s.head_dim, s.kv_heads * s.head_dim], dim=-1)
            q = self._rope(q.view(b, s.heads, s.head_dim))
            k = self._rope(k.view(b, s.kv_heads, s.head_dim))
            x = x + self._attention(i, q, k, v.view(b, s.kv_heads, s.head_dim)) @ w["wo"].t()
            gate, up = (self._norm(x, w["ffn_norm"]) @ w["w_gate_up"].t()).chunk(2, dim=-1)
            x = x + (torch.nn.functional.silu(gate) * up) @ w["w_down"].t()
        return self._norm(x, self.final_norm) @ self.lm_head.t()

    def attention_only(self) -> None:
        """The attention part of a step alone: cache write + attention, every layer."""
        s, b = self.shape, self.batch
        q = self.q_probe.view(b, s.heads, s.head_dim)
        kv = self.kv_probe.view(b, s.kv_heads, s.head_dim)
        for i in range(s.layers):
            self._attention(i, q, kv, kv)

    def projections_only(self) -> None:
        """The GEMMs of a step alone: QKV, output, gate-up and down of every layer, and the LM head."""
        x = self.x_probe
        for w in self.layers:
            x @ w["wqkv"].t()
            self.q_probe @ w["wo"].t()
            x @ w["w_gate_up"].t()
            self.ffn_probe @ w["w_down"].t()
        x @ self.lm_head.t()

    def make_probes(self) -> None:
        """Random activations of the step's shapes for the partial graphs."""
        torch, s, b = self.torch, self.shape, self.batch
        self.q_probe = torch.randn(b, s.heads * s.head_dim, device=self.device, dtype=torch.bfloat16,
                                   generator=self.gen)
        self.kv_probe = torch.randn(b, s.kv_heads * s.head_dim, device=self.device, dtype=torch.bfloat16,
                                    generator=self.gen)
        self.x_probe = torch.randn(b, s.hidden, device=self.device, dtype=torch.bfloat16, generator=self.gen)
        self.ffn_probe = torch.randn(b, s.intermediate, device=self.device, dtype=torch.bfloat16, generator=self.gen)


def time_decode_grid(model_name: str, config: Mapping[str, Any], batches: Iterable[int], contexts: Iterable[int], *,
                     warmup: int = 5, repeats: int = 30, seed: int = 0,
                     on_row: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Time one decode step of ``config`` for every (batch, context) on the current CUDA GPU.

    Returns one row per point: ``model``, ``batch``, ``context`` (cached tokens per request),
    ``step_s`` (median of ``repeats`` graph replays, s), ``step_min_s``, ``attention_s`` and
    ``projections_s`` (the partial graphs, s), ``weight_bytes`` and ``kv_bytes`` (B), and
    ``skipped`` (the reason a point was not run, else empty). ``on_row`` sees each row as it is
    made (so a caller can write it at once).
    """
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("time_decode_grid needs a CUDA GPU")
    shape = LlamaShape.from_config(config)
    model = DecodeModel(torch, shape, seed)
    rows = []
    for batch in batches:
        for context in contexts:
            row: dict[str, Any] = {"model": model_name, "batch": batch, "context": context,
                                   "weight_bytes": shape.weight_bytes(), "kv_bytes": shape.kv_bytes(batch, context),
                                   "step_s": math.nan, "step_min_s": math.nan, "attention_s": math.nan,
                                   "projections_s": math.nan, "skipped": ""}
            model.caches = []
            torch.cuda.empty_cache()
            free, _ = torch.cuda.mem_get_info()
            reason = fits(shape, batch, context, free + shape.weight_bytes())
            if reason is None:
                try:
                    model.set_batch(batch, context)
                    model.make_probes()
                    with torch.no_grad():
                        tokens = model.step()
                        if not bool(((tokens >= 0) & (tokens < shape.vocab)).all()):
                            raise RuntimeError("the step's sampled token ids are out of range")
                        row["step_s"], row["step_min_s"] = median_event_time_s(torch, _graph(torch, model.step),
                                                                            warmup, repeats)
                        row["attention_s"], _ = median_event_time_s(torch, _graph(torch, model.attention_only),
                                                                 warmup, repeats)
                        row["projections_s"], _ = median_event_time_s(torch, _graph(torch, model.projections_only),
                                                                   warmup, repeats)
                except torch.OutOfMemoryError as err:
                    reason = f"out of GPU memory: {str(err).splitlines()[0]}"
            row["skipped"] = reason or ""
            rows.append(row)
            if on_row is not None:
                on_row(row)
    model.caches = []
    del model
    torch.cuda.empty_cache()
    return rows
