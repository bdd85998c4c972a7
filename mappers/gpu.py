"""The GPU mapper: one model replica on identical devices, tensor/expert/pipeline parallel.

Matrix-class ops (matmul, attention, experts) go to the device's matrix unit (tensor cores)
when it has a datapath for the op's dtype, else to a vector unit (CUDA cores); element-wise ops
go to a vector unit. Collectives run on the link that joins the devices of their group.
"""

from __future__ import annotations

from dataclasses import dataclass

from hw_models.cost import UnsupportedOpError
from hw_models.device import DeviceSpec
from hw_models.system import SystemSpec
from mappers.base import Placement, Plan, register_mapper
from workloads.errors import InfeasibleError
from workloads.graph import Graph
from workloads.ops import Op, OpKind

MATRIX_KINDS = (OpKind.MATMUL, OpKind.ATTENTION, OpKind.MOE_EXPERTS)


def choose_unit(op: Op, device: DeviceSpec) -> str:
    """Name of the unit that runs ``op``: the preferred role's first unit with the op's dtype,
    else the other role's."""
    roles = ("matrix", "vector") if op.kind in MATRIX_KINDS else ("vector", "matrix")
    for role in roles:
        for name, unit in device.units.items():
            if unit.role == role and unit.supports(op.dtype):
                return name
    raise UnsupportedOpError(
        f"device {device.name!r} has no unit with a {op.dtype} datapath for op {op.name!r}; "
        "try another --precision")


@register_mapper("gpu")
@dataclass(frozen=True)
class GpuMapper:
    """Homogeneous devices running one replica (see module docstring)."""

    name: str = "gpu"

    def map(self, graph: Graph, system: SystemSpec) -> Plan:
        if len(system.groups) != 1:
            raise InfeasibleError(f"the gpu mapper needs identical devices; {system.name!r} has "
                                  f"{len(system.groups)} device groups")
        device = system.primary_device
        devices = graph.parallelism.devices
        if devices > system.device_count and not system.scalable:
            raise InfeasibleError(f"{graph.parallelism.label} needs {devices} devices; system "
                                  f"{system.name!r} has {system.device_count}")
        placements = []
        for template, op in graph.ops():
            if op.kind in (OpKind.COLLECTIVE, OpKind.TRANSFER):
                placements.append(Placement(template, op, device, link=system.link_for_group(op.devices)))
            else:
                placements.append(Placement(template, op, device, unit=choose_unit(op, device)))
        return Plan(graph, system, self.name, tuple(placements), devices)
