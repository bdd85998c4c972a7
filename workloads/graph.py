"""A decode (or mixed) step as a graph of operator templates with repeat counts."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

from decodex.workloads.batch import Batch
from decodex.workloads.model_config import ModelConfig
from decodex.workloads.ops import Op, OpKind
from decodex.workloads.parallelism import Parallelism
from decodex.workloads.precision import Precision


@dataclass(frozen=True, eq=False)
class LayerTemplate:
    """Ops that run in sequence, ``repeat`` times per step.

    ``layers`` lists the model layer indices a decoder-layer template stands for (then
    ``repeat == len(layers)``); it is empty for the embedding, the head and the pipeline sends.
    """

    name: str
    ops: tuple[Op, ...]
    repeat: int = 1
    layers: tuple[int, ...] = ()


@dataclass(frozen=True, eq=False)
class Graph:
    """One step of a model on a batch, per device of one model replica.

    Ops run in template order; within a template in op order; a template runs ``repeat`` times.
    ``omitted``: op kinds left out of this graph by :meth:`without` (a mapper that rebuilds
    graphs for parts of the batch leaves the same kinds out).
    """

    model: ModelConfig
    batch: Batch
    precision: Precision
    parallelism: Parallelism
    templates: tuple[LayerTemplate, ...]
    omitted: frozenset[OpKind] = frozenset()

    def without(self, kinds: frozenset[OpKind] | tuple[OpKind, ...]) -> Graph:
        """This step with every op of ``kinds`` removed (templates left empty are dropped).

        A what-if, not a model: e.g. ``without((OpKind.COLLECTIVE, OpKind.TRANSFER))`` is one
        device's shard with free communication, the scope of simulators that model a single
        device (the NeuPIMs artifact). FLOPs and bytes of the other ops are unchanged."""
        drop = frozenset(kinds)
        if not drop:
            return self
        templates = []
        for template in self.templates:
            ops = tuple(op for op in template.ops if op.kind not in drop)
            if ops:
                templates.append(replace(template, ops=ops))
        return replace(self, templates=tuple(templates), omitted=self.omitted | drop)

    def ops(self) -> Iterator[tuple[LayerTemplate, Op]]:
        """Every (template, op) pair, in execution order (each template once)."""
        for template in self.templates:
            for op in template.ops:
                yield template, op

    def total(self, quantity: str, useful: bool = False, kinds: tuple[OpKind, ...] | None = None) -> float:
        """Sum of an op quantity (``flops``, ``bytes``, ``weight_bytes`` ...) over the step.

        Summed over every device of the replica: an op's per-device value times ``devices``.
        With ``useful``, a replicated op counts once (the work the model needs, which is what
        tensor parallelism must conserve); otherwise every device's copy counts (work executed).
        """
        total = 0.0
        for template, op in self.ops():
            if kinds is not None and op.kind not in kinds:
                continue
            copies = 1 if (useful and op.replicated) else op.devices
            total += getattr(op, quantity) * copies * template.repeat
        return total

    def stage_of_layer(self, layer: int) -> int:
        """Pipeline stage holding a model layer (contiguous split, earlier stages take the remainder)."""
        pp = self.parallelism.pp
        per_stage, extra = divmod(self.model.num_layers, pp)
        boundary = extra * (per_stage + 1)
        if layer < boundary:
            return layer // (per_stage + 1)
        return extra + (layer - boundary) // per_stage
