"""The FlightLLM mapper: an LLM step on an FPGA's DSP engine and special-function unit (FPGA 2024).

Placement (policy; the ``fpga_dsp`` unit model prices it, hw_models/fpga.py):

- matmuls, attention and MoE experts on the device's matrix engine (MV mode for decode, MM
  mode for prefill, the faster of the two per op); norms, softmax, activations and element-wise
  ops on its special-function unit; collectives on the system's link;
- ``on_chip_decode`` (default on): the compiler keeps activations in on-chip buffers and fuses
  the operators of a layer, and lays each weight stream out inside its own HBM pseudo-channels.
  Modelled as the units' ``activations_on_chip = true`` and ``access = "local"``; off, every op
  reads and writes its activations in HBM and the streams cross channels (``access = "cross"``),
  the paper's baseline for the ablation;
- ``sparse_chain`` (default on): weights with an N:M pattern the DSP chain supports run only the
  kept MACs; off, the chain runs them dense (``sparsity_patterns`` emptied);
- ``attention_density`` (default 1): block-sparse attention keeps this fraction of each
  request's KV blocks; the attention op reads and multiplies that fraction of the context (the
  cache itself is stored whole).

What the compiler's instruction stream adds to a step (512-column MV tiles, INT8 attention, the
KV append's second read of the cache, attention as barrier-separated phases) is a property of the
device's engine, set in its spec and priced by the unit model (hw_models/fpga.py); the mapper
leaves those fields as the spec has them.

Weight precision (INT8 or mixed 8/4-bit with an average bits per weight) and N:M sparsity come
from the run's precision (``w=int4,a=int8,kv=int8,wbits=4.1,sparsity=8:16``). One stream, one task
per op (``mappers.gpu.single_stream_schedule``): the FPGA runs its instruction stream in order.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from decodex.core.errors import ArgumentError, InfeasibleError
from decodex.hw_models.device import DeviceSpec
from decodex.hw_models.fpga import FpgaUnit
from decodex.hw_models.system import SystemSpec
from decodex.mappers.base import Placement, Plan, register_mapper, replica_device
from decodex.mappers.gpu import choose_unit, single_stream_schedule
from decodex.workloads.graph import Graph, LayerTemplate
from decodex.workloads.ops import AttentionOp, Op, OpKind


def compiled_device(device: DeviceSpec, *, on_chip_decode: bool, sparse_chain: bool) -> DeviceSpec:
    """``device`` with its FPGA units set up as the compiler leaves them (module docstring)."""
    units = {}
    for name, unit in device.units.items():
        if isinstance(unit, FpgaUnit):
            changes: dict[str, object] = {"activations_on_chip": on_chip_decode,
                                          "access": "local" if on_chip_decode else "cross"}
            if not sparse_chain:
                changes["sparsity_patterns"] = ()
            unit = dataclasses.replace(unit, **changes)
        units[name] = unit
    return dataclasses.replace(device, units=units)


def block_sparse(op: AttentionOp, density: float) -> AttentionOp:
    """``op`` attending to ``density`` of each request's cached tokens (block-sparse attention)."""
    if density >= 1.0:
        return op
    kept = np.ceil(op.context_lens * density).astype(op.context_lens.dtype)
    return dataclasses.replace(op, name=f"{op.name}.block_sparse", context_lens=kept)


@register_mapper("flightllm")
@dataclass(frozen=True)
class FlightLlmMapper:
    """FlightLLM mapping (module docstring)."""

    name: str = "flightllm"
    on_chip_decode: bool = True
    sparse_chain: bool = True
    attention_density: float = 1.0

    def map(self, graph: Graph, system: SystemSpec) -> Plan:
        if not 0.0 < self.attention_density <= 1.0:
            raise ArgumentError(f"attention_density: {self.attention_density!r} outside (0, 1]")
        base = replica_device(graph, system, "flightllm")
        if not any(isinstance(u, FpgaUnit) and u.role == "matrix" for u in base.units.values()):
            raise InfeasibleError(f"the flightllm mapper needs an fpga_dsp matrix unit; device {base.name!r} has "
                                  f"{sorted(base.units)}")
        device = compiled_device(base, on_chip_decode=self.on_chip_decode, sparse_chain=self.sparse_chain)
        placed: dict[int, Placement] = {}
        for template, op in graph.ops():
            placed[id(op)] = self._place(template, op, system, device)
        placements = tuple(placed[id(op)] for _, op in graph.ops())
        options = {"on_chip_decode": self.on_chip_decode, "sparse_chain": self.sparse_chain,
                   "attention_density": self.attention_density}
        return Plan(graph, system, self.name, placements, graph.parallelism.devices, options,
                    single_stream_schedule(graph, placed, device))

    def _place(self, template: LayerTemplate, op: Op, system: SystemSpec, device: DeviceSpec) -> Placement:
        if op.kind in (OpKind.COLLECTIVE, OpKind.TRANSFER):
            return Placement(template, op, device, link=system.link_for_group(op.devices))
        if isinstance(op, AttentionOp):
            op = block_sparse(op, self.attention_density)
        return Placement(template, op, device, unit=choose_unit(op, device))
