"""What-if spec edits for sweeps: a system with some of its TOML fields replaced, validated as any spec file.

An override key names a field of the device files (applied to every device group, or to the
groups a ``selector:`` prefix picks by role or device name) or, with the ``system.`` prefix, of
the system file:

- ``hbm.bandwidth_bytes_per_s``: the first part is a unit (``units.NAME``), a memory
  (``memories.NAME``, also ``memory.NAME``), a link (``links.NAME``), ``power``/``price``
  (``device.power``...) or a top-level table (``device``, ``units``, ``memories``, ``links``;
  ``unit``, ``memory`` and ``link`` name them too); each later part is a key of
  that table, or a unique prefix of one (``hbm.bandwidth`` is ``hbm.bandwidth_bytes_per_s``);
- ``ffn:tensor.peak_flops.fp8``: only the groups whose role or device is ``ffn``;
- ``system.devices[1].count``, ``system.interconnect.devices_per_node``: the system file;
- a trailing ``@scale`` multiplies the field's value instead of replacing it
  (``hbm.bandwidth_bytes_per_s@scale = 2``).

The edited tables are read back by the same readers as the files (``device_from_dict``,
``system_from_dict``), so a value out of range fails with the file, field and allowed range.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import re
from collections.abc import Callable, Hashable, Mapping
from pathlib import Path
from typing import Any

from decodex.core.errors import SpecError
from decodex.hw_models.device import device_from_dict, read_device_toml
from decodex.hw_models.spec_reader import read_toml
from decodex.hw_models.system import SystemSpec, load_system, system_from_dict

SCALE_SUFFIX = "@scale"
DEVICE_ALIASES = {"power": ("device", "power"), "price": ("device", "price"), "memory": ("memories",),
                  "unit": ("units",), "link": ("links",)}
_INDEX = re.compile(r"^(?P<key>[^\[\]]+)\[(?P<index>\d+)\]$")


def _freeze(value: Any) -> Hashable:
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value  # type: ignore[no-any-return]


def _thaw(value: Any) -> Any:
    return [_thaw(v) for v in value] if isinstance(value, tuple) else value


def _resolve(table: Any, parts: list[str], where: str, key: str) -> tuple[Any, str]:
    """The container holding the field ``parts`` names inside ``table`` and the field's exact key."""
    node = table
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        match = _INDEX.match(part)
        name, index = (match["key"], int(match["index"])) if match else (part, None)
        if not isinstance(node, dict):
            raise SpecError(where, key, f"{'.'.join(parts[:depth])!r} is not a table")
        if name not in node:
            candidates = [k for k in node if k.startswith(name)]
            if len(candidates) != 1:
                have = ", ".join(sorted(node)) or "none"
                why = "is ambiguous" if candidates else "is not a field"
                raise SpecError(where, key, f"{name!r} {why} here (fields: {have})")
            name = candidates[0]
        if index is not None:
            items = node[name]
            if not isinstance(items, list) or index >= len(items):
                raise SpecError(where, key, f"{name}[{index}]: no such entry")
            if last:
                raise SpecError(where, key, "an override must name a field, not a whole entry")
            node = items[index]
            continue
        if last:
            return node, name
        node = node[name]
    raise SpecError(where, key, "empty field path")


def set_field(table: dict[str, Any], path: str, value: Any, where: str, key: str,
              parts_of: Callable[[str], list[str]] = lambda bare: bare.split(".")) -> None:
    """Set (or, with the ``@scale`` suffix, multiply) the field ``path`` of ``table``; ``parts_of``
    turns the bare path into table keys."""
    scale = path.endswith(SCALE_SUFFIX)
    bare = path[: -len(SCALE_SUFFIX)] if scale else path
    container, name = _resolve(table, parts_of(bare), where, key)
    if scale:
        old = container[name]
        if isinstance(old, bool) or not isinstance(old, int | float):
            raise SpecError(where, key, f"@scale needs a number; the field holds {old!r}")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SpecError(where, key, f"@scale factor must be a number, got {value!r}")
        container[name] = old * value
    else:
        container[name] = value


def _device_parts(path: str, table: Mapping[str, Any]) -> list[str]:
    """``path`` of a device override as a list of table keys (aliases expanded, see module docstring)."""
    parts = path.split(".")
    head = parts[0]
    if head in table:
        return parts
    if head in DEVICE_ALIASES:
        return [*DEVICE_ALIASES[head], *parts[1:]]
    for section in ("units", "memories", "links"):
        if head in table.get(section, {}):
            return [section, *parts]
    return parts  # _resolve names the missing field


@functools.lru_cache(maxsize=512)
def _system_with(system: str, frozen: tuple[tuple[str, Hashable], ...]) -> SystemSpec:
    base = load_system(system)
    overrides = [(k, _thaw(v)) for k, v in frozen]
    system_keys = [(k, v) for k, v in overrides if k.startswith("system.")]
    device_keys = [(k, v) for k, v in overrides if not k.startswith("system.")]
    spec = base
    if system_keys:
        source = Path(base.source)
        if not source.is_file():
            raise SpecError(base.source, system_keys[0][0], "system overrides need a system read from a file")
        data = copy.deepcopy(read_toml(source))
        if "system" not in data:
            raise SpecError(str(source), system_keys[0][0], "a device file has no system table to override")
        for key, value in system_keys:
            set_field(data, key, value, str(source), key)
        spec = system_from_dict(data, f"{source} [what-if edits]", base=source.parent)
    if not device_keys:
        return spec
    groups = []
    for group in spec.groups:
        picked = []
        for key, value in device_keys:
            selector, _, path = key.rpartition(":")
            if selector and selector not in (group.role, group.device.name):
                continue
            picked.append((key, path, value))
        if not picked:
            groups.append(group)
            continue
        source = group.device.source
        if not Path(source).is_file():
            raise SpecError(source, picked[0][0], "device overrides need a device read from a file")
        data = copy.deepcopy(read_device_toml(source))
        for key, path, value in picked:
            set_field(data, path, value, source, key, functools.partial(_device_parts, table=data))
        note = ", ".join(f"{k}={v}" for k, _, v in picked)
        device = device_from_dict(data, f"{source} [what-if: {note}]")
        groups.append(dataclasses.replace(group, device=device))
    selectors = {k.rpartition(":")[0] for k, _ in device_keys} - {""}
    known = {g.role for g in spec.groups} | {g.device.name for g in spec.groups}
    unknown = selectors - known
    if unknown:
        raise SpecError(spec.source, sorted(unknown)[0], f"selector matches no device group (roles and devices: "
                                                          f"{', '.join(sorted(known - {''}))})")
    return dataclasses.replace(spec, groups=tuple(groups))


def system_with(system: str | Path | SystemSpec, overrides: Mapping[str, Any]) -> SystemSpec:
    """``system`` (catalog name, file or spec read from a file) with ``overrides`` applied (module
    docstring); cached per system and overrides. No overrides: the system itself."""
    if not overrides:
        return load_system(system)
    name = system.source if isinstance(system, SystemSpec) else str(system)
    frozen = tuple(sorted((str(k), _freeze(v)) for k, v in overrides.items()))
    return _system_with(name, frozen)
