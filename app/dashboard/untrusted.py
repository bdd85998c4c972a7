"""What the dashboard receives is untrusted: every value that could name a file must be a catalog
name (or content uploaded with it), checked here before anything is read.

The simulator's readers take a catalog name *or a path* (``load_model``, ``load_system``, a
system file's ``devices[].device``, a device file's ``extends``): right for the command line,
where the user runs on their own files, but a page that passed a pasted or uploaded value on
would make the server open any file it names (and its error would tell whether the file exists
and where its TOML breaks). So the dashboard routes its inputs through the checks below; each
refusal is an :class:`UntrustedInputError` with a one-line message naming the field and the
allowed names, raised before any file named by the input is opened, probed or read.

- :func:`check_space`: a pasted or uploaded sweep space. ``model``, ``system`` and ``dataset``
  (fixed settings and axes) must be lists of catalog names (a range would be a number read as a
  relative path); a ``spec.system.*`` what-if override that lands on a
  ``system.devices[i].device`` field (found by applying it to the catalog system's tables, as the
  sweep does) must name a catalog device; a ``spec.system.*`` override may not carry a table (a
  table could bring in a device entry); ``extends`` cannot be overridden; keys of ``[sweep]``
  that the space reader does not read (``out``, ``workers``, ``trace`` ...) are refused, since
  the dashboard runs a space in memory and writes nothing.
- :func:`check_spec_tables`: the tables of an uploaded device or system TOML: ``device.extends``
  and ``system.devices[].device`` must name catalog devices (an upload has no folder of its own;
  a new device is uploaded as a device file).
- :func:`check_name`: a page's model or system when nothing was uploaded (the widgets offer
  catalog names only; this holds whatever the browser sends).
- :func:`check_sweep_dir`: the Sweep explorer's "Open a sweep directory" path, which must lie
  under the sweeps root (:func:`sweeps_root`: ``$DECODEX_SWEEPS_ROOT``, default the directory the
  server was started in). ``..`` is resolved before anything is touched and symlinks after, and
  a path outside gets the same one-line refusal whether or not it exists; nothing outside the
  root is opened, listed or probed (except the target of a symlink placed inside the root).
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from decodex.app.cli_app import SWEEPS_ROOT_ENV  # set by `decodex app --sweeps-root`
from decodex.core.errors import DecodexError, SpecError
from decodex.explore.spec_overrides import set_field as apply_override  # the sweep's own field resolution
from decodex.explore.sweep_space import SweepSpace
from decodex.hw_models.spec_reader import read_toml
from decodex.hw_models.system import SYSTEMS_DIR, list_devices, list_systems
from decodex.sim.serving.workload import PRESET_NAMES
from decodex.workloads.catalog import list_models

NAMED_KEYS = {"model": "model", "system": "system", "dataset": "dataset"}
"""Point parameters whose value the simulator resolves by name, or else as a path: key -> kind of catalog name."""
"""The keys of a ``[sweep]`` table that the space reader reads (:func:`explore.sweep_space.space_from_dict`)."""
MAX_SHOWN = 80
"""Most characters of a refused value repeated in a message."""
"""Environment variable naming the directory under which the Sweep explorer opens sweep
directories (default: the server's working directory; ``decodex app`` should set it)."""
MAX_PATH_CHARS = 4096
"""Longest sweep directory path taken, characters."""
_PART = re.compile(r"[.:]")
_INDEX = re.compile(r"\[\d+\]$")
_BARE = re.compile(r"[A-Za-z0-9_-]+")


class UntrustedInputError(DecodexError):
    """A dashboard input that names something other than a catalog entry or uploaded content; the
    message (one line) names the field and the allowed names."""


def allowed_names(kind: str) -> list[str]:
    """The catalog names a dashboard input of ``kind`` may take: ``model`` (catalog models),
    ``system`` (catalog systems and devices: a device runs alone), ``device`` (catalog devices)
    or ``dataset`` (serving workload presets)."""
    if kind == "model":
        return list_models()
    if kind == "system":
        return sorted({*list_systems(), *list_devices()})
    if kind == "device":
        return list_devices()
    if kind == "dataset":
        return list(PRESET_NAMES)
    raise ValueError(f"unknown kind of catalog name {kind!r}")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else f"{text[:MAX_SHOWN]}...'"


def check_name(value: Any, kind: str, where: str, hint: str = "") -> str:
    """``value`` when it is a catalog name of ``kind`` (:func:`allowed_names`); else raise
    UntrustedInputError naming ``where`` (the field) and the allowed names. Only the catalog
    listing is consulted: nothing that ``value`` names is opened or probed."""
    names = allowed_names(kind)
    if isinstance(value, str) and value in names:
        return value
    raise UntrustedInputError(f"{where} = {_shown(value)} is not a catalog {kind} (one of {', '.join(names)}); "
                              f"the dashboard takes catalog names and uploaded files, not paths on the server{hint}")


def check_spec_tables(data: Mapping[str, Any], source: str) -> None:
    """Raise UntrustedInputError unless every file reference in the tables of an uploaded device
    or system TOML (``device.extends``, ``system.devices[].device``) names a catalog device."""
    device = data.get("device")
    if isinstance(device, Mapping) and "extends" in device:
        check_name(device["extends"], "device", f"{source}: device.extends")
    system = data.get("system")
    groups = system.get("devices", []) if isinstance(system, Mapping) else []
    for index, group in enumerate(groups if isinstance(groups, list) else []):
        ref = group.get("device") if isinstance(group, Mapping) else None
        check_name(ref, "device", f"{source}: system.devices[{index}].device",
                   hint="; upload a device file for a new device")


def _toml_key(key: str) -> str:
    """``key`` as written in TOML: bare, or quoted when it holds dots or brackets."""
    return key if _BARE.fullmatch(key) else f'"{key}"'


def _values(space: SweepSpace, key: str) -> list[tuple[str, Any]] | None:
    """(field, value) of every value ``key`` takes in ``space``; None for a range axis."""
    if key in space.fixed:
        return [(f"sweep.fixed.{_toml_key(key)}", space.fixed[key])]
    for axis in space.axes:
        if axis.name == key:
            if axis.values is None:
                return None
            return [(f"sweep.axes.{_toml_key(key)}[{i}]", v) for i, v in enumerate(axis.values)]
    return []


def _holds_table(value: Any) -> bool:
    if isinstance(value, Mapping):
        return True
    return isinstance(value, list | tuple) and any(_holds_table(v) for v in value)


def _catalog_system_tables(name: str) -> dict[str, Any] | None:
    """The tables of the catalog system file ``name`` (None when ``name`` is not a system file)."""
    if name not in list_systems():
        return None
    return read_toml(SYSTEMS_DIR / f"{name}.toml")


def names_device_file(system: str, key: str) -> bool:
    """True when the ``system.*`` override ``key`` (without ``spec.``) sets a
    ``system.devices[i].device`` field of the catalog system ``system``, the one field of a
    system that is read as a device name or path. Found by applying it, with the sweep's own
    field resolution, to a copy of the catalog tables; a key that does not resolve there fails
    in the sweep too (an override without tables cannot add fields)."""
    tables = _catalog_system_tables(system)
    if tables is None or key.endswith("@scale"):  # a device file has no system table; @scale keeps a number
        return False
    data = copy.deepcopy(tables)
    marker = object()
    try:
        apply_override(data, key, marker, system, key)
    except SpecError:
        return False
    system_table = data.get("system")
    groups = system_table.get("devices") if isinstance(system_table, Mapping) else None
    return isinstance(groups, list) and any(isinstance(g, Mapping) and g.get("device") is marker for g in groups)


def _check_override(space: SweepSpace, key: str, systems: Sequence[str]) -> None:
    """A ``spec.*`` what-if override of ``space`` (:mod:`explore.spec_overrides`)."""
    path = key[len("spec."):]
    parts = [_INDEX.sub("", p.removesuffix("@scale")) for p in _PART.split(path)]
    if "extends" in parts:
        raise UntrustedInputError(f"{space.source}: {_toml_key(key)}: extends names a file and cannot be "
                                  "overridden here; override the device's fields instead")
    if not path.startswith("system."):
        return  # a device field: read by device_from_dict, which opens nothing
    values = _values(space, key)
    if values is None:
        return  # a range: numbers only
    for where, value in values:
        if _holds_table(value):
            raise UntrustedInputError(f"{space.source}: {where}: a spec.system override takes numbers, strings or "
                                      "lists of them here, not tables")
    for system in systems:
        if names_device_file(system, path):
            for where, value in values:
                check_name(value, "device", f"{space.source}: {where} (a device of {system})")


def check_space(space: SweepSpace) -> None:
    """Raise UntrustedInputError unless every value of ``space`` that could name a file names a
    catalog entry (module docstring; unknown ``[sweep]`` keys are refused by the space's reader
    itself). Nothing the space names is opened, and the sweep's own reader accepts the same space
    unchanged."""
    names: dict[str, list[str]] = {}
    for key, kind in NAMED_KEYS.items():
        values = _values(space, key)
        if values is None:
            raise UntrustedInputError(f"{space.source}: sweep.axes.{key} must be a list of catalog {kind} names, "
                                      f"not a range (one of {', '.join(allowed_names(kind))})")
        names[key] = [check_name(value, kind, f"{space.source}: {where}") for where, value in values]
    for key in space.parameters:
        if key.startswith("spec."):
            _check_override(space, key, names["system"])


def _root_forms(root: str | Path | None) -> tuple[str, str]:
    """(as given, made absolute; with symlinks resolved) of the sweeps root ``root`` (None:
    ``$DECODEX_SWEEPS_ROOT`` or the working directory)."""
    given = str(root) if root is not None else (os.environ.get(SWEEPS_ROOT_ENV, "").strip() or os.getcwd())
    return os.path.abspath(given), os.path.realpath(given)


def sweeps_root() -> Path:
    """The directory under which the Sweep explorer may open sweep directories, symlinks resolved:
    ``$DECODEX_SWEEPS_ROOT`` when set, else the server's working directory. UntrustedInputError
    when it is not a directory (a server setting: the message does not repeat the path)."""
    root = Path(_root_forms(None)[1])
    if not root.is_dir():
        raise UntrustedInputError(f"Sweep directory: the sweeps root ({SWEEPS_ROOT_ENV}) is not a directory on the "
                                  "server; whoever started the dashboard must set it to one")
    return root


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def check_sweep_dir(text: str, root: str | Path | None = None) -> tuple[Path, str]:
    """(the directory, as shown) for a sweep directory typed on the page: ``text`` relative to the
    sweeps root (``root``, default :func:`sweeps_root`) or absolute under it. ``..`` is resolved
    lexically first (nothing outside the root is touched), then symlinks; either landing outside
    the root raises UntrustedInputError with one message that does not say whether the path
    exists. The shown form is the path relative to the root (``.`` for the root itself)."""
    value = text.strip()
    hint = "the DIR of `decodex sweep SPACE.toml --out DIR`, relative to the sweeps root"
    if not value:
        raise UntrustedInputError(f"Sweep directory: give {hint}")
    if len(value) > MAX_PATH_CHARS or "\x00" in value:
        raise UntrustedInputError(f"Sweep directory: not a path (at most {MAX_PATH_CHARS:,} characters, no NUL); "
                                  f"give {hint}")
    if root is None:
        sweeps_root()  # the root must be a directory
    given_root, real_root = _root_forms(root)
    refusal = UntrustedInputError(
        f"Sweep directory: only directories under the sweeps root are opened here ({SWEEPS_ROOT_ENV}, by default "
        f"the directory the dashboard was started in); give {hint}")
    lexical = os.path.normpath(os.path.join(real_root, value))  # an absolute value replaces the root; no file touched
    if not (_under(lexical, real_root) or _under(lexical, given_root)):
        raise refusal
    resolved = os.path.realpath(lexical)  # symlinks: every part up to the first link lies under the root
    if not _under(resolved, real_root):
        raise refusal
    return Path(resolved), os.path.relpath(resolved, real_root)
