"""Hardware models: devices, units, memories, links and systems, declared as TOML data."""

from decodex.hw_models.collectives import CollectiveCost, collective_cost
from decodex.hw_models.cost import OpCost, UnsupportedOpError
from decodex.hw_models.device import DeviceSpec, PowerSpec, device_from_dict, load_device
from decodex.hw_models.efficiency import EfficiencyCurve
from decodex.hw_models.memory import LinkSpec, MemorySpec
from decodex.hw_models.op_time import op_time
from decodex.hw_models.roofline import RooflineUnit
from decodex.hw_models.system import (
    DeviceGroup,
    Interconnect,
    SystemSpec,
    list_devices,
    list_systems,
    load_system,
    system_from_dict,
)
from decodex.hw_models.units import UNIT_MODELS, UnitModel, register_unit_model

__all__ = [
    "UNIT_MODELS", "CollectiveCost", "DeviceGroup", "DeviceSpec", "EfficiencyCurve", "Interconnect", "LinkSpec",
    "MemorySpec", "OpCost", "PowerSpec", "RooflineUnit", "SystemSpec", "UnitModel", "UnsupportedOpError",
    "collective_cost", "device_from_dict", "list_devices", "list_systems", "load_device", "load_system",
    "op_time", "register_unit_model", "system_from_dict",
]
