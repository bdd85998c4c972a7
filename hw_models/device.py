"""A device: its compute units, memories, links, power and price, read from a TOML file."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import decodex.hw_models.bank_pim  # registers the "bank_pim" unit model
import decodex.hw_models.fpga  # registers the "fpga_dsp" unit model
import decodex.hw_models.logic_pim  # registers the "logic_pim" unit model
import decodex.hw_models.roofline  # registers the "roofline" unit model
import decodex.hw_models.systolic  # noqa: F401  (registers the "systolic" unit model)
from decodex.core.errors import SpecError
from decodex.hw_models.memory import LinkSpec, MemorySpec
from decodex.hw_models.spec_reader import TableReader, read_toml
from decodex.hw_models.units import UnitModel, read_unit

DEVICE_KINDS = ("gpu", "cpu", "npu", "pim", "fpga")
DEFAULT_MAPPER_BY_KIND = {"gpu": "gpu", "cpu": "gpu"}
MAX_EXTENDS_DEPTH = 16  # device files extending each other in a chain (the catalog uses 2)
CATALOG_DEVICES_DIR = Path(__file__).resolve().parent / "catalog" / "devices"  # the catalog devices `extends` may name


@dataclass(frozen=True)
class PowerSpec:
    """Idle (static) power, the board power limit and the power floor while running, W.

    ``active_w``: power drawn whenever the device executes a step, whatever it computes (clocks
    at speed, resident kernels, memory PHYs); a step's energy is ``active_w`` x its time plus the
    dynamic energy of its FLOPs and bytes, capped at ``tdp_w`` x its time. Defaults to ``idle_w``
    (no separate measurement)."""

    idle_w: float
    tdp_w: float
    active_w: float | None = None

    @property
    def running_w(self) -> float:
        """The power floor while a step runs, W (``active_w``, else ``idle_w``)."""
        return self.idle_w if self.active_w is None else self.active_w

    def step_energy(self, dynamic_j: float, seconds: float, devices: int) -> float:
        """Energy (J) of a step of ``seconds`` on ``devices`` devices with ``dynamic_j`` of
        dynamic energy: the running floor plus the dynamic energy, at most the power limit."""
        return min(dynamic_j + self.running_w * devices * seconds, self.tdp_w * devices * seconds)


@dataclass(frozen=True)
class DeviceSpec:
    """One device. ``units``, ``memories`` and ``links`` are keyed by their names in the file."""

    name: str
    kind: str
    description: str
    units: Mapping[str, UnitModel]
    memories: Mapping[str, MemorySpec]
    links: Mapping[str, LinkSpec]
    power: PowerSpec
    usd_per_hour: float
    default_mapper: str
    source: str = field(default="<dict>", compare=False)
    purchase_usd: float = 0.0

    def unit_for_role(self, role: str) -> list[UnitModel]:
        """Units of a role (``matrix`` or ``vector``), in file order."""
        return [u for u in self.units.values() if u.role == role]

    @property
    def main_memory(self) -> MemorySpec:
        """The memory the matrix units read (HBM on a GPU, DRAM on a CPU)."""
        for unit in self.units.values():
            return self.memories[unit.memory]
        raise AssertionError("a device has at least one unit")

    @property
    def capacity_bytes(self) -> float:
        """Bytes of the main memory a model's weights, KV cache and activations can use: the
        driver-exposed capacity minus the runtime's reservation (:attr:`MemorySpec.available_bytes`)."""
        return self.main_memory.available_bytes


def device_from_dict(data: Mapping[str, object], source: str = "<dict>",
                     expected_name: str | None = None) -> DeviceSpec:
    """Build and validate a DeviceSpec from a parsed TOML mapping."""
    root = TableReader(data, source)
    dev = root.sub("device")
    name = dev.string("name")
    if expected_name is not None and name != expected_name:
        raise dev.error("name", f"{name!r} must equal the file name {expected_name!r}")
    kind = dev.string("kind", choices=DEVICE_KINDS)
    power = dev.sub("power")
    idle = power.number("idle_w")
    tdp = power.positive("tdp_w")
    if idle > tdp:
        raise power.error("idle_w", f"{idle} exceeds tdp_w={tdp}")
    active = power.number("active_w", lo=idle, hi=tdp) if power.has("active_w") else None
    price = dev.sub("price")
    mem_table = root.sub("memories")
    memories = {key: MemorySpec.read(key, mem_table.sub(key)) for key in mem_table}
    if not memories:
        raise root.error("memories", "at least one memory is required")
    unit_table = root.sub("units")
    units = {key: read_unit(key, unit_table.sub(key), tuple(memories)) for key in unit_table}
    if not units:
        raise root.error("units", "at least one unit is required")
    for key, unit in units.items():
        if memories[unit.memory].bandwidth_bytes_per_s <= 0:
            raise unit_table.error(f"{key}.memory", f"memory {unit.memory!r} has no bandwidth_bytes_per_s")
        memories[unit.memory] = _budget_covers_kernel(memories[unit.memory], unit)
    link_table = root.optional_sub("links")
    links = {} if link_table is None else {k: LinkSpec.read(k, link_table.sub(k)) for k in link_table}
    spec = DeviceSpec(
        name=name,
        kind=kind,
        description=dev.string("description", default=""),
        units=units,
        memories=memories,
        links=links,
        power=PowerSpec(idle, tdp, active),
        usd_per_hour=price.number("usd_per_hour"),
        purchase_usd=price.number("purchase_usd", default=0.0),
        default_mapper=dev.string("default_mapper", default=DEFAULT_MAPPER_BY_KIND.get(kind, kind)),
        source=source,
    )
    root.check_unknown()
    return spec


def merge_tables(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` laid over it: tables merge key by key (recursively), any other
    value (number, string, array) in ``override`` replaces the base's."""
    out: dict[str, Any] = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_tables(out[key], value)
        else:
            out[key] = value
    return out


def read_device_toml(path: str | Path, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A device file's tables with ``device.extends`` resolved: the named device (a file stem in
    the same folder, a path relative to it, or else a catalog device name) is read first and this
    file's tables are merged over it (:func:`merge_tables`), so a variant states only what
    differs; a unit table that names a different ``model`` than the base's unit of that name
    replaces it whole (none of the base unit's fields carry over). Chains are allowed; a cycle
    or a missing base raises SpecError naming the file and field."""
    path = Path(path).resolve()
    data = read_toml(path)
    device = data.get("device")
    if not isinstance(device, Mapping) or "extends" not in device:
        return data
    ref = device["extends"]
    if not isinstance(ref, str) or not ref:
        raise SpecError(str(path), "device.extends", f"{ref!r} must be a device name or a path")
    base_path = path.parent / (ref if ref.endswith(".toml") else f"{ref}.toml")
    if not base_path.is_file() and CATALOG_DEVICES_DIR.joinpath(f"{ref}.toml").is_file():
        base_path = CATALOG_DEVICES_DIR / f"{ref}.toml"  # a catalog device, from any folder
    if not base_path.is_file():
        raise SpecError(str(path), "device.extends", f"{ref!r}: no file {base_path} and no catalog device {ref!r}")
    if base_path.resolve() in (*_chain, path):
        raise SpecError(str(path), "device.extends", f"{ref!r} extends itself (cycle)")
    if len(_chain) >= MAX_EXTENDS_DEPTH:
        raise SpecError(str(path), "device.extends", f"more than {MAX_EXTENDS_DEPTH} files extend each other")
    base = read_device_toml(base_path, (*_chain, path))
    merged = merge_tables(base, data)
    merged["device"] = {k: v for k, v in merged["device"].items() if k != "extends"}
    # a unit whose `model` changes is replaced whole: the base unit's fields belong to another model
    base_units, own_units = base.get("units"), data.get("units")
    if isinstance(base_units, Mapping) and isinstance(own_units, Mapping):
        for key, unit in own_units.items():
            old = base_units.get(key)
            if isinstance(unit, Mapping) and isinstance(old, Mapping) and "model" in unit \
                    and unit["model"] != old.get("model"):
                merged["units"][key] = dict(unit)
    return merged


def load_device(path: str | Path) -> DeviceSpec:
    """Read a device TOML file (``device.extends`` resolved, see :func:`read_device_toml`); its
    ``device.name`` must equal the file stem."""
    path = Path(path)
    return device_from_dict(read_device_toml(path), str(path), expected_name=path.stem)


def _budget_covers_kernel(memory: MemorySpec, unit: object) -> MemorySpec:
    """``memory`` with its shared bandwidth budget raised, when not given in the file, to what a
    decode-attention kernel of ``unit`` is known to pull from it (``memory_efficiency x``
    bandwidth, hw_models/decode_attention.py): the budget concurrent transfers share is the most
    its units achieve, so that a kernel alone is never slowed by its own memory channel."""
    kernel = getattr(unit, "decode_attention", None)
    if kernel is None or memory.shared_budget_bytes_per_s is not None:
        return memory
    streaming = kernel.memory_efficiency * memory.bandwidth_bytes_per_s
    if streaming <= memory.shared_bandwidth_bytes_per_s:
        return memory
    return dataclasses.replace(memory, shared_budget_bytes_per_s=streaming)
