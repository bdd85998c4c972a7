"""Memory a plan needs on each device: weights, KV cache and activation workspace."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from decodex.workloads.graph import Graph

GB = 1e9


@dataclass(frozen=True)
class MemoryUse:
    """Bytes per device on the most loaded pipeline stage."""

    weight_bytes: float
    kv_bytes: float
    workspace_bytes: float

    @property
    def total_bytes(self) -> float:
        return self.weight_bytes + self.kv_bytes + self.workspace_bytes


def memory_use(graph: Graph) -> MemoryUse:
    """Weights and KV cache stored per device on the heaviest stage, plus the largest
    activation working set of any op (its inputs and outputs live at once)."""
    pp = graph.parallelism.pp
    weights = [0.0] * pp
    kv = [0.0] * pp
    workspace = 0.0
    for template in graph.templates:
        if template.layers and pp == 1:
            layers_per_stage = [len(template.layers)]
        elif template.layers:
            layers_per_stage = [0] * pp
            for layer in template.layers:
                layers_per_stage[graph.stage_of_layer(layer)] += 1
        elif template.name in ("embedding", "head", "draft_heads", "adapter"):  # drafting parts sit by the LM head
            layers_per_stage = [0] * pp
            layers_per_stage[0 if template.name == "embedding" else pp - 1] = 1
        else:
            layers_per_stage = [0] * pp
        template_weights = sum(op.resident_weight_bytes for op in template.ops)
        template_kv = sum(op.resident_kv_bytes for op in template.ops)
        workspace = max([workspace, *(op.activation_bytes for op in template.ops)])
        for stage, count in enumerate(layers_per_stage):
            weights[stage] += template_weights * count
            kv[stage] += template_kv * count
    return heaviest_stage(weights, kv, workspace)


def heaviest_stage(weights: Sequence[float], kv: Sequence[float], workspace: float) -> MemoryUse:
    """The use of the pipeline stage storing the most bytes (the first of equals), from each
    stage's weight and KV bytes per device and the workspace (B)."""
    heaviest = max(range(len(weights)), key=lambda s: weights[s] + kv[s])
    return MemoryUse(weights[heaviest], kv[heaviest], workspace)


def fit_reason(use: MemoryUse, capacity_bytes: float, device: str) -> str:
    """Empty when ``use`` fits in ``capacity_bytes``, else why not, in GB."""
    if use.total_bytes <= capacity_bytes:
        return ""
    return (f"needs {use.total_bytes / GB:.1f} GB per device (weights {use.weight_bytes / GB:.1f}, "
            f"KV cache {use.kv_bytes / GB:.1f}, workspace {use.workspace_bytes / GB:.1f}); "
            f"{device} has {capacity_bytes / GB:.1f} GB for them (after the driver's and runtime's reservations)")
