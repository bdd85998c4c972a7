"""A system: devices, how they are connected, and the mapper that runs it by default."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from decodex.core.errors import ArgumentError, InfeasibleError
from decodex.core.input_files import file_mtime_ns, files_read
from decodex.hw_models.device import DeviceSpec, device_from_dict, load_device, read_device_toml
from decodex.hw_models.memory import LinkSpec
from decodex.hw_models.spec_reader import TableReader, read_toml

CATALOG_DIR = Path(__file__).resolve().parent / "catalog"
DEVICES_DIR = CATALOG_DIR / "devices"
SYSTEMS_DIR = CATALOG_DIR / "systems"
# a catalog system (or device) file is this + name + ".toml" (load_system: one stat per candidate)
SYSTEMS_PREFIX, DEVICES_PREFIX = f"{SYSTEMS_DIR}{os.sep}", f"{DEVICES_DIR}{os.sep}"


ROLES = ("", "attention", "ffn", "colocated")


@dataclass(frozen=True)
class DeviceGroup:
    """``count`` identical devices. ``role`` (attention-FFN disaggregation): ``attention``
    (instances holding the KV cache and running attention), ``ffn`` (instances holding the FFN /
    expert weights), ``colocated`` (both on the same devices), or empty; ``instance_devices``:
    devices per instance of that role (0: the whole group is one instance)."""

    device: DeviceSpec
    count: int
    role: str = ""
    instance_devices: int = 0

    @property
    def instances(self) -> int:
        """Instances in the group."""
        return self.count // self.instance_devices if self.instance_devices else 1


@dataclass(frozen=True)
class Interconnect:
    """Which device links join devices inside a node and across nodes."""

    intra_node_link: str | None = None
    inter_node_link: str | None = None
    devices_per_node: int = 8


@dataclass(frozen=True)
class SystemSpec:
    """Devices and their interconnect, plus the mapper (and its options) that runs the system.

    ``scalable``: a one-device catalog entry may be replicated as parallelism asks (``--tp 8``
    on ``h100-sxm`` means eight of them on their intra-node link); a system with a fixed
    device count is not.
    """

    name: str
    description: str
    default_mapper: str
    groups: tuple[DeviceGroup, ...]
    interconnect: Interconnect = Interconnect()
    mapper_options: Mapping[str, Any] = field(default_factory=dict)
    scalable: bool = False
    source: str = field(default="<dict>", compare=False)

    @property
    def device_count(self) -> int:
        """Devices in the system."""
        return sum(g.count for g in self.groups)

    @property
    def primary_device(self) -> DeviceSpec:
        """The first device group's device."""
        return self.groups[0].device

    def group_for(self, role: str) -> DeviceGroup | None:
        """The first device group with ``role`` (None if none)."""
        return next((g for g in self.groups if g.role == role), None)

    def device_index(self, group: DeviceGroup) -> int:
        """Index of ``group``'s first device among all the system's devices (groups in order)."""
        index = 0
        for g in self.groups:
            if g is group:
                return index
            index += g.count
        raise ValueError("group not in this system")

    def link_for_group(self, devices: int) -> LinkSpec:
        """The link a collective over ``devices`` devices runs on: the intra-node link while the
        group fits in one node, else the inter-node one (the slowest hop bounds a ring)."""
        inter = self.interconnect
        device = self.primary_device
        name = inter.intra_node_link if devices <= inter.devices_per_node else inter.inter_node_link
        if name is None:
            raise InfeasibleError(
                f"system {self.name!r}: no {'intra' if devices <= inter.devices_per_node else 'inter'}-node "
                f"link declared for a group of {devices} devices")
        if name not in device.links:
            raise ArgumentError(f"system {self.name!r}: device {device.name!r} has no link {name!r}")
        return device.links[name]


def _resolve_device(ref: str, base: Path, table: TableReader) -> DeviceSpec:
    candidate = DEVICES_DIR / f"{ref}.toml"
    if candidate.is_file():
        return load_device(candidate)
    path = (base / ref) if not Path(ref).is_absolute() else Path(ref)
    if path.is_file():
        return load_device(path)
    raise table.error("device", f"{ref!r} is neither a catalog device ({', '.join(list_devices())}) nor a file")


def system_from_dict(data: Mapping[str, Any], source: str = "<dict>", base: Path | None = None) -> SystemSpec:
    """Build a SystemSpec from a parsed TOML mapping: a ``[system]`` file, or a ``[device]``
    file (then a scalable one-device system run by the device's default mapper)."""
    root = TableReader(data, source)
    if root.has("device") and not root.has("system"):
        device = device_from_dict(data, source)
        return SystemSpec(device.name, device.description, device.default_mapper,
                          (DeviceGroup(device, 1),), Interconnect("nvlink" if "nvlink" in device.links else None,
                                                                   "nic" if "nic" in device.links else None),
                          scalable=True, source=source)
    sysd = root.sub("system")
    base = base or Path(".")
    groups = []
    sysd.mark("devices", "mapper_options", "scalable")
    raw_groups = sysd.data.get("devices")
    if not isinstance(raw_groups, list) or not raw_groups:
        raise sysd.error("devices", "needs at least one [[system.devices]] entry")
    for index, raw in enumerate(raw_groups):
        entry = TableReader(raw, source, sysd.field(f"devices[{index}]"))
        device = _resolve_device(entry.string("device"), base, entry)
        count = entry.integer("count", lo=1, hi=1_000_000)
        per_instance = entry.integer("instance_devices", lo=0, hi=count, default=0)
        if per_instance and count % per_instance:
            raise entry.error("instance_devices", f"{per_instance} does not divide count = {count}")
        groups.append(DeviceGroup(device, count, entry.string("role", choices=ROLES, default=""), per_instance))
        entry.check_unknown()
    inter_table = sysd.optional_sub("interconnect")
    interconnect = Interconnect()
    if inter_table is not None:
        interconnect = Interconnect(
            intra_node_link=inter_table.string("intra_node_link") if inter_table.has("intra_node_link") else None,
            inter_node_link=inter_table.string("inter_node_link") if inter_table.has("inter_node_link") else None,
            devices_per_node=inter_table.integer("devices_per_node", lo=1, hi=1_000_000, default=8),
        )
        for key in ("intra_node_link", "inter_node_link"):
            link = getattr(interconnect, key)
            if link is not None and link not in groups[0].device.links:
                raise inter_table.error(key, f"device {groups[0].device.name!r} has no link {link!r} "
                                             f"(it has: {', '.join(groups[0].device.links) or 'none'})")
    options = sysd.data.get("mapper_options", {})
    if not isinstance(options, dict):
        raise sysd.error("mapper_options", "must be a table")
    spec = SystemSpec(
        name=sysd.string("name"),
        description=sysd.string("description", default=""),
        default_mapper=sysd.string("default_mapper"),
        groups=tuple(groups),
        interconnect=interconnect,
        mapper_options=options,
        scalable=_scalable(sysd, sum(g.count for g in groups)),
        source=source,
    )
    root.check_unknown()
    return spec


def _scalable(table: TableReader, count: int) -> bool:
    value = table.data.get("scalable", count == 1)
    if not isinstance(value, bool):
        raise table.error("scalable", f"must be true or false, got {value!r}")
    return value


def scale_link(system: SystemSpec, link: str, factor: float) -> SystemSpec:
    """``system`` with the bandwidth (B/s) of every device's link ``link`` multiplied by
    ``factor`` (a what-if; devices without that link are unchanged)."""
    if not factor > 0:
        raise ArgumentError(f"link scale: {factor} must be > 0")
    if factor == 1.0:
        return system
    groups = []
    for group in system.groups:
        links = dict(group.device.links)
        if link in links:
            links[link] = dataclasses.replace(links[link], bandwidth_bytes_per_s=links[link].bandwidth_bytes_per_s
                                              * factor)
        groups.append(dataclasses.replace(group, device=dataclasses.replace(group.device, links=links)))
    return dataclasses.replace(system, groups=tuple(groups))


def list_devices() -> list[str]:
    """Names of the catalog devices."""
    return sorted(p.stem for p in DEVICES_DIR.glob("*.toml"))


def list_systems() -> list[str]:
    """Names of the catalog systems."""
    return sorted(p.stem for p in SYSTEMS_DIR.glob("*.toml"))


CACHED_SYSTEM_FILES = 256  # system and device files kept parsed (the least recently read go first)
# path -> (its modification time, (path, time) of every other file it was built from, the spec)
_SYSTEM_FILES: dict[str, tuple[int, tuple[tuple[str, int], ...], SystemSpec]] = {}


def _load_system_file(path: str, mtime_ns: int) -> SystemSpec:
    """The spec of the system or device file at ``path`` modified at ``mtime_ns``: the one built
    before while neither it nor any file it was built from (the device files a system names, a
    device's ``extends`` chain) has changed since, else read again. An unchanged spec is the same
    object (the scalar fast path finds its forms by the specs' identity)."""
    cached = _SYSTEM_FILES.get(path)
    if cached is not None and cached[0] == mtime_ns:
        for dep, seen in cached[1]:
            if file_mtime_ns(dep) != seen:
                break
        else:
            return cached[2]
    with files_read() as read:
        data = read_toml(path)
        if "device" in data and "system" not in data:
            data = read_device_toml(path)  # a device file: resolve its device.extends
        spec = system_from_dict(data, path, base=Path(path).parent)
    own = os.path.abspath(path)
    _SYSTEM_FILES.pop(path, None)
    _SYSTEM_FILES[path] = (mtime_ns, tuple(dict.fromkeys(entry for entry in read if entry[0] != own)), spec)
    if len(_SYSTEM_FILES) > CACHED_SYSTEM_FILES:
        del _SYSTEM_FILES[next(iter(_SYSTEM_FILES))]
    return spec


def load_system(name_or_path: str | Path | SystemSpec) -> SystemSpec:
    """A SystemSpec from a catalog name, a system TOML file or a device TOML file (cached per
    file and modification time); ArgumentError for anything else (another type, an empty or
    unknown name)."""
    if isinstance(name_or_path, SystemSpec):
        return name_or_path
    if not isinstance(name_or_path, (str, Path)):  # a tuple: no union object built per call
        raise ArgumentError(f"system: must be a catalog name ({', '.join(list_systems())}), a path to a system "
                            f"or device TOML file or a SystemSpec, got {type(name_or_path).__name__} "
                            f"{name_or_path!r:.80}")
    text = str(name_or_path)
    if not text.strip() or "\0" in text:
        raise ArgumentError(f"system: {text!r} is not a system name; catalog: {', '.join(list_systems())} "
                            "(or a path to a system or device TOML file)")
    for path in (f"{SYSTEMS_PREFIX}{text}.toml", f"{DEVICES_PREFIX}{text}.toml", text):
        mtime = file_mtime_ns(path)
        if mtime is not None:
            return _load_system_file(path, mtime)
    raise ArgumentError(f"system: unknown system {text!r}; catalog: {', '.join(list_systems())} "
                        "(or a path to a system or device TOML file)")
