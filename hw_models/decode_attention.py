"""Decode attention as a GPU kernel runs it: thread blocks, SM waves, split-KV, a floor.

A decode-attention kernel (FlashAttention-2's decode path, FlashInfer's, vLLM's PagedAttention)
gives each (request, KV head) one thread block that streams that head's K and V; the group of
query heads sharing the KV head is computed inside the block. With few blocks the kernel splits
each request's KV into ``splits`` partitions (split-KV) so that more blocks run at once.
The blocks run in waves of ``sm_count x blocks_per_sm``; inside a wave a block streams its bytes
at most at ``block_bandwidth_share x`` an SM's fair share of HBM bandwidth (one SM cannot pull
the whole memory system), and the wave's blocks together at most at ``memory_efficiency x`` the
HBM bandwidth. Each wave also pays ``block_overhead_s`` (loading the query, the softmax and
writing the output, which do not overlap the stream), and the kernel a ``floor_s``:

    blocks  = requests x kv_heads x splits
    splits  = floor(sm_count / (requests x kv_heads)) when requests x kv_heads < split_below x
              sm_count, else 1 (FlashAttention-2's heuristic: split only when the blocks cannot
              nearly fill the SMs)
    bytes per block b = what one (request, KV head) moves (its K and V, the new token's K and V,
              its query and output heads) / splits
    wave of k blocks: block_overhead_s + max(b / (share x B / sm_count), block FLOP / (peak / sm_count),
                                             k x b / (eff x B), k x block FLOP / peak)
    time    = floor_s + the full waves + the last, partial one

``B`` is the memory's bandwidth. Every field is device data (``[units.NAME.decode_attention]``)
with its source; this module holds only the mechanism. Requests of one batch with different
contexts are priced with their mean context (exact for equal contexts). Prefill chunks are not
decode and stay on the roofline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from decodex.hw_models.spec_reader import TableReader


@dataclass(frozen=True)
class DecodeAttentionKernel:
    """The decode-attention kernel's parallelism and limits on one GPU (module docstring)."""

    sm_count: int
    blocks_per_sm: int
    split_below: float
    floor_s: float
    block_overhead_s: float
    block_bandwidth_share: float
    memory_efficiency: float

    def splits(self, heads: float) -> int:
        """KV partitions per (request, KV head) for ``heads`` = requests x KV heads blocks."""
        if heads <= 0 or heads >= self.split_below * self.sm_count:
            return 1
        return max(1, math.floor(self.sm_count / heads))

    def time_s(self, requests: int, kv_heads: int, head_bytes: float, block_flops: float,
               bandwidth_bytes_per_s: float, peak_flops: float) -> float:
        """Seconds of one decode-attention kernel: ``requests`` decodes over ``kv_heads`` KV heads
        (this device); ``head_bytes`` B and ``block_flops`` FLOP per (request, KV head) over its
        whole context; ``bandwidth_bytes_per_s`` the memory's, ``peak_flops`` the unit's."""
        heads = requests * kv_heads
        if heads <= 0:
            return 0.0
        splits = self.splits(heads)
        blocks = heads * splits
        block_bytes = head_bytes / splits
        flops = block_flops / splits
        per_block = max(block_bytes / (self.block_bandwidth_share * bandwidth_bytes_per_s / self.sm_count),
                        flops / (peak_flops / self.sm_count) if peak_flops > 0 else 0.0)
        capacity = self.sm_count * self.blocks_per_sm
        full, rest = divmod(blocks, capacity)

        def wave(k: int) -> float:
            together = max(k * block_bytes / (self.memory_efficiency * bandwidth_bytes_per_s),
                           k * flops / peak_flops if peak_flops > 0 else 0.0)
            return self.block_overhead_s + max(per_block, together)

        return self.floor_s + full * wave(capacity) + (wave(rest) if rest else 0.0)

    def time_many(self, requests: np.ndarray, kv_heads: int, head_bytes: np.ndarray, block_flops: np.ndarray,
                  bandwidth_bytes_per_s: float, peak_flops: float) -> np.ndarray:
        """Vectorized :meth:`time_s` over arrays of ``requests``, ``head_bytes`` and
        ``block_flops`` (one kernel per element; same units)."""
        heads = np.asarray(requests, dtype=np.float64) * kv_heads
        safe = np.maximum(heads, 1.0)
        split = np.where(heads >= self.split_below * self.sm_count, 1.0,
                         np.maximum(1.0, np.floor(self.sm_count / safe)))
        blocks = heads * split
        block_bytes = head_bytes / split
        flops = block_flops / split
        per_block = block_bytes / (self.block_bandwidth_share * bandwidth_bytes_per_s / self.sm_count)
        if peak_flops > 0:
            per_block = np.maximum(per_block, flops / (peak_flops / self.sm_count))
        capacity = self.sm_count * self.blocks_per_sm
        full = np.floor(blocks / capacity)
        rest = blocks - full * capacity

        def wave(k: np.ndarray | float) -> np.ndarray:
            together = k * block_bytes / (self.memory_efficiency * bandwidth_bytes_per_s)
            if peak_flops > 0:
                together = np.maximum(together, k * flops / peak_flops)
            return self.block_overhead_s + np.maximum(per_block, together)

        time = self.floor_s + full * wave(float(capacity)) + np.where(rest > 0, wave(rest), 0.0)
        return np.where(heads > 0, time, 0.0)


def read_decode_attention(table: TableReader) -> DecodeAttentionKernel | None:
    """``[units.NAME.decode_attention]`` of a roofline unit, or None when the table is absent."""
    sub = table.optional_sub("decode_attention")
    if sub is None:
        return None
    return DecodeAttentionKernel(
        sm_count=sub.integer("sm_count", lo=1, hi=100_000),
        blocks_per_sm=sub.integer("blocks_per_sm", lo=1, hi=64),
        split_below=sub.number("split_below", lo=0.0, hi=1.0),
        floor_s=sub.number("floor_s", lo=0.0, hi=1e-2),
        block_overhead_s=sub.number("block_overhead_s", lo=0.0, hi=1e-2),
        block_bandwidth_share=sub.number("block_bandwidth_share", lo=0.0, hi=1000.0, lo_open=True),
        memory_efficiency=sub.number("memory_efficiency", lo=0.0, hi=1.0, lo_open=True),
    )
