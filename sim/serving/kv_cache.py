"""The KV cache of one replica as fixed-size blocks (vLLM's paged attention block manager).

:func:`kv_capacity` sizes the cache from the step model (bytes per token per device, weights,
workspace); :class:`BlockManager` hands out blocks to requests (by request index).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from decodex.core.errors import ArgumentError, InfeasibleError
from decodex.hw_models.system import SystemSpec
from decodex.sim.estimate import estimate
from decodex.sim.results import StepResult
from decodex.workloads.batch import Batch
from decodex.workloads.model_config import ModelConfig
from decodex.workloads.parallelism import Parallelism
from decodex.workloads.precision import Precision


@dataclass(frozen=True)
class KVCapacity:
    """How much KV cache one replica holds. Bytes are per device.

    ``kv_bytes_per_token``: KV bytes one token of one request occupies on each device (all layers
    of the most loaded pipeline stage; includes KV heads replicated under tensor parallelism).
    ``free_bytes`` = capacity × memory_utilization − weights − workspace (basis ``total``), or
    (capacity − weights − workspace) × memory_utilization (basis ``free``). ``total_blocks`` =
    ``free_bytes`` // (``block_size`` × ``kv_bytes_per_token``).
    """

    block_size: int
    kv_bytes_per_token: float
    capacity_bytes: float
    weight_bytes: float
    workspace_bytes: float
    memory_utilization: float
    free_bytes: float
    total_blocks: int

    @property
    def total_tokens(self) -> int:
        """Tokens the cache holds, summed over requests."""
        return self.total_blocks * self.block_size


def kv_capacity(model: ModelConfig, system: SystemSpec, *, precision: Precision, parallelism: Parallelism,
                block_size: int = 16, memory_utilization: float = 0.9, workspace_tokens: int = 2048,
                total_blocks: int | None = None, memory_basis: str = "total") -> KVCapacity:
    """Size the KV cache of one replica from the step model.

    KV bytes per token per device are read from two graphs (one request with 1000 and with 2000
    cached tokens: the difference of their KV bytes / 1000), so sharding and replication of KV
    heads are exact. The workspace margin is the activation working set of one step that
    processes ``workspace_tokens`` tokens (the scheduler's largest iteration). ``total_blocks``
    overrides the computed block count (a custom budget, e.g. to force preemption in tests).
    ``memory_basis``: ``"total"`` (vLLM): weights, workspace and KV cache use ``memory_utilization``
    of the memory available to the model (:attr:`hw_models.device.DeviceSpec.capacity_bytes`);
    ``"free"`` (TensorRT-LLM): the KV cache takes ``memory_utilization`` of what weights and
    workspace leave.
    """
    if memory_basis not in ("total", "free"):
        raise ArgumentError(f"memory_basis: {memory_basis!r:.40} not one of total, free")
    if isinstance(block_size, bool) or not isinstance(block_size, int) or not 1 <= block_size <= 65536:
        raise ArgumentError(f"block_size: {block_size!r} must be an integer in [1, 65536] tokens")
    if not isinstance(memory_utilization, int | float) or not 0.0 < memory_utilization <= 1.0:
        raise ArgumentError(f"memory_utilization: {memory_utilization!r} outside (0, 1]")
    def step(batch: Batch) -> StepResult:
        return estimate(model, system, batch, precision=precision, parallelism=parallelism)

    probe = min(1000, max(1, ((model.context_window or 4096) - 1) // 2))  # two contexts inside the window
    short = step(Batch.decode(1, probe))
    long = step(Batch.decode(1, 2 * probe))
    per_token = (long.kv_bytes - short.kv_bytes) / probe
    tokens = max(1, workspace_tokens)
    piece = min(tokens, model.context_window or tokens)  # prompts inside the model's window
    big = step(Batch.mixed([], [piece] * (tokens // piece) + ([tokens % piece] if tokens % piece else [])))
    workspace = big.memory_required_bytes - big.weight_bytes - big.kv_bytes
    capacity = short.memory_capacity_bytes
    if memory_basis == "total":
        free = capacity * memory_utilization - short.weight_bytes - workspace
    else:
        free = (capacity - short.weight_bytes - workspace) * memory_utilization
    if per_token <= 0:
        raise InfeasibleError(f"{model.name}: the step graph holds no KV cache; serving needs one")
    blocks = int(max(free, 0.0) // (block_size * per_token))
    if total_blocks is not None:
        if isinstance(total_blocks, bool) or not isinstance(total_blocks, int) or total_blocks < 1:
            raise ArgumentError(f"kv_blocks: {total_blocks!r} must be an integer >= 1")
        blocks = total_blocks
    elif blocks < 1:
        needed = (short.weight_bytes + workspace + block_size * per_token) / capacity
        if needed > 1.0:
            raise InfeasibleError(
                f"{model.name} on {system.name} ({parallelism.label}): weights {short.weight_bytes / 1e9:.1f} GB "
                f"+ workspace {workspace / 1e9:.2f} GB per device leave no room for a KV cache in "
                f"{capacity / 1e9:.1f} GB")
        if memory_basis == "free":
            needed = block_size * per_token / (capacity - short.weight_bytes - workspace)
        raise ArgumentError(f"memory_utilization: {memory_utilization} leaves no KV cache; "
                            f"needs > {needed:.3f} (allowed (0, 1])")
    return KVCapacity(block_size=block_size, kv_bytes_per_token=per_token, capacity_bytes=capacity,
                      weight_bytes=short.weight_bytes, workspace_bytes=workspace,
                      memory_utilization=float(memory_utilization), free_bytes=free, total_blocks=blocks)


class BlockManager:
    """Blocks of ``block_size`` tokens held per request (requests are indices ``0..n-1``).

    A request gets its prompt's blocks on admission (:meth:`allocate`), one more block each time
    its tokens cross a block boundary (:meth:`grow`), and gives all back when it finishes or is
    preempted (:meth:`free`).
    """

    def __init__(self, total_blocks: int, block_size: int, num_requests: int) -> None:
        self.total_blocks = int(total_blocks)
        self.block_size = int(block_size)
        self.free_blocks = int(total_blocks)
        self.held = np.zeros(num_requests, dtype=np.int64)

    @property
    def used_blocks(self) -> int:
        """Blocks held by requests now."""
        return self.total_blocks - self.free_blocks

    def blocks_for(self, tokens: int) -> int:
        """Blocks that ``tokens`` tokens occupy (ceil(tokens / block_size))."""
        return -(-int(tokens) // self.block_size)

    def can_allocate(self, tokens: int) -> bool:
        """Whether a new request of ``tokens`` tokens gets its blocks now."""
        return self.blocks_for(tokens) <= self.free_blocks

    def allocate(self, request: int, tokens: int) -> None:
        """Give ``request`` (holding none) the blocks for ``tokens`` tokens."""
        blocks = self.blocks_for(tokens)
        if blocks > self.free_blocks:
            raise RuntimeError(f"request {request}: {blocks} blocks needed, {self.free_blocks} free")
        self.held[request] = blocks
        self.free_blocks -= blocks

    def grow(self, requests: np.ndarray, tokens: np.ndarray) -> bool:
        """Make each of ``requests`` hold blocks for its ``tokens`` tokens (all or nothing).

        Returns False, allocating nothing, when the free blocks do not cover the growth.
        """
        need = -(-tokens // self.block_size) - self.held[requests]
        np.maximum(need, 0, out=need)
        total = int(need.sum())
        if total > self.free_blocks:
            return False
        if total:
            self.held[requests] += need
            self.free_blocks -= total
        return True

    def free(self, requests: np.ndarray | int) -> None:
        """Return every block of ``requests``."""
        self.free_blocks += int(self.held[requests].sum())
        self.held[requests] = 0
