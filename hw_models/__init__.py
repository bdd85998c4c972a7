"""Hardware models: devices, units, memories, links and systems, declared as TOML data."""

from hw_models.collectives import CollectiveCost, collective_cost
from hw_models.cost import OpCost, UnsupportedOpError
from hw_models.device import DeviceSpec, PowerSpec, device_from_dict, load_device
from hw_models.efficiency import EfficiencyCurve
from hw_models.memory import LinkSpec, MemorySpec
from hw_models.op_time import op_time
from hw_models.roofline import RooflineUnit
from hw_models.system import (
    DeviceGroup,
    Interconnect,
    SystemSpec,
    list_devices,
    list_systems,
    load_system,
    system_from_dict,
)
from hw_models.units import UNIT_MODELS, UnitModel, register_unit_model

__all__ = [
    "UNIT_MODELS", "CollectiveCost", "DeviceGroup", "DeviceSpec", "EfficiencyCurve", "Interconnect", "LinkSpec",
    "MemorySpec", "OpCost", "PowerSpec", "RooflineUnit", "SystemSpec", "UnitModel", "UnsupportedOpError",
    "collective_cost", "device_from_dict", "list_devices", "list_systems", "load_device", "load_system",
    "op_time", "register_unit_model", "system_from_dict",
]
