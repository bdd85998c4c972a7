"""Uploaded specs, parsed as data only: a Hugging Face ``config.json`` (JSON) or a hardware
TOML file (a ``[device]`` or a ``[system]`` file). No pickle, no code: the bytes are decoded as
UTF-8 and read by ``json`` / ``tomllib`` and then by the same validating readers as the catalog.
Uploads larger than :data:`MAX_UPLOAD_BYTES` are refused. A file reference inside an upload
(``device.extends``, ``system.devices[].device``) and a page's model or system without an upload
must be catalog names (:mod:`app.dashboard.untrusted`): an upload never makes the server open a
file it names. Every problem is an :class:`UploadError` (or an ``UntrustedInputError``) whose
message names the file and, where known, the field."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from typing import Any

from decodex.app.dashboard.untrusted import check_name, check_spec_tables
from decodex.core.errors import DecodexError
from decodex.hw_models.device import device_from_dict, merge_tables, read_device_toml
from decodex.hw_models.system import DEVICES_DIR, SystemSpec, load_system, system_from_dict
from decodex.workloads.catalog import load_model
from decodex.workloads.hf_config import model_from_dict
from decodex.workloads.model_config import ModelConfig

MAX_UPLOAD_BYTES = 256 * 1024
"""Largest accepted upload, bytes (a config.json or a spec TOML is a few kB)."""
MAX_NESTING = 32
"""Deepest nesting of tables and arrays in an upload (the catalog's files nest 4 deep); deeper
text is refused before the readers walk it, so that no reader recurses without bound."""


class UploadError(DecodexError):
    """An uploaded file that cannot be used; the message is meant for the user."""


def upload_text(data: bytes, filename: str) -> str:
    """The text of an uploaded file: at most :data:`MAX_UPLOAD_BYTES`, not empty, UTF-8;
    raises UploadError naming the file otherwise."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise UploadError(f"{filename}: {len(data):,} B is larger than the {MAX_UPLOAD_BYTES:,} B limit")
    if not data.strip():
        raise UploadError(f"{filename}: the file is empty")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UploadError(f"{filename}: not a UTF-8 text file") from None


def _first_line(err: BaseException) -> str:
    """The first sentence of an error's message, on one line (the parser's advice is left out)."""
    text = " ".join(str(err).split())
    return text.split(";", 1)[0]


def nesting_depth(value: Any) -> int:
    """How deep tables (dicts) and arrays (lists) nest in ``value`` (0 for a scalar), found
    without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            stack += [(v, depth + 1) for v in item.values()]
        elif isinstance(item, list):
            stack += [(v, depth + 1) for v in item]
        else:
            continue
        deepest = max(deepest, depth + 1)
    return deepest


def check_nesting(value: Any, filename: str) -> None:
    """Raise UploadError naming the file when ``value`` nests deeper than :data:`MAX_NESTING`."""
    if nesting_depth(value) > MAX_NESTING:
        raise UploadError(f"{filename}: tables and arrays nest more than {MAX_NESTING} levels deep")


def parse_toml_upload(data: bytes, filename: str) -> dict[str, Any]:
    """The tables of an uploaded TOML file (:func:`upload_text`, then ``tomllib``: data only,
    nested at most :data:`MAX_NESTING` levels); raises UploadError naming the file."""
    text = upload_text(data, filename)
    try:
        parsed = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise UploadError(f"{filename}: not valid TOML ({' '.join(str(err).split())})") from None
    except RecursionError:  # arrays or inline tables nested thousands deep
        raise UploadError(f"{filename}: tables and arrays nest more than {MAX_NESTING} levels deep") from None
    except ValueError as err:  # e.g. an integer of more digits than Python converts
        raise UploadError(f"{filename}: not valid TOML ({_first_line(err)})") from None
    check_nesting(parsed, filename)
    return parsed


def parse_model_upload(data: bytes, filename: str = "config.json") -> ModelConfig:
    """A ModelConfig from the bytes of a Hugging Face ``config.json``; the model is named after
    the file (without ``.json``). Raises UploadError (size, encoding, JSON) or SpecError (a field)."""
    text = upload_text(data, filename)
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as err:
        raise UploadError(f"{filename}: not valid JSON ({err.msg} at line {err.lineno})") from None
    except RecursionError:
        raise UploadError(f"{filename}: objects and arrays nest more than {MAX_NESTING} levels deep") from None
    except ValueError as err:  # e.g. an integer of more digits than Python converts
        raise UploadError(f"{filename}: not valid JSON ({_first_line(err)})") from None
    check_nesting(parsed, filename)
    name = filename.removesuffix(".json") or "uploaded-model"
    if name == "config":
        name = str(parsed.get("_name_or_path") or "uploaded-model").rsplit("/", 1)[-1] if isinstance(parsed, dict) \
            else "uploaded-model"
    return model_from_dict(parsed, name=name, source=f"upload:{filename}")


def _device_with_catalog_base(data: dict[str, Any], source: str) -> dict[str, Any]:
    """Resolve ``device.extends`` (checked by :func:`~app.dashboard.untrusted.check_spec_tables`
    to name a catalog device) against the catalog devices only (an upload has no folder)."""
    device = data.get("device")
    if not isinstance(device, Mapping) or "extends" not in device:
        return data
    ref = check_name(device["extends"], "device", f"{source}: device.extends")
    merged = merge_tables(read_device_toml(DEVICES_DIR / f"{ref}.toml"), data)
    merged["device"] = {k: v for k, v in merged["device"].items() if k != "extends"}
    return merged


def parse_system_upload(data: bytes, filename: str = "system.toml") -> SystemSpec:
    """A SystemSpec from the bytes of a device or system TOML file. A device file may extend a
    catalog device; a system file's devices must be catalog devices (both checked before any file
    is read). Raises UploadError, UntrustedInputError or SpecError naming the file and field."""
    source = f"upload:{filename}"
    parsed = parse_toml_upload(data, filename)
    check_spec_tables(parsed, source)  # extends and devices[].device name catalog devices, before any read
    if "system" in parsed:
        return system_from_dict(parsed, source, base=DEVICES_DIR)
    if "device" in parsed:
        merged = _device_with_catalog_base(parsed, source)
        device_from_dict(merged, source)  # validate the device first: its errors name device fields
        return system_from_dict(merged, source)
    raise UploadError(f"{filename}: expected a [device] or a [system] table")


def resolve_model(name: str, text: str | None) -> ModelConfig:
    """The model a page runs: ``text`` (an uploaded config.json named ``name``) parsed as data,
    or the catalog model ``name`` when there is no upload (anything else, a path included, is
    refused by :func:`~app.dashboard.untrusted.check_name` before it is opened)."""
    if text is not None:
        return parse_model_upload(text.encode(), name)
    return load_model(check_name(name, "model", "model"))


def resolve_system(name: str, text: str | None) -> SystemSpec:
    """The system a page runs: ``text`` (an uploaded device or system TOML named ``name``) parsed
    as data, or the catalog system or device ``name`` when there is no upload (anything else, a
    path included, is refused by :func:`~app.dashboard.untrusted.check_name` before it is opened)."""
    if text is not None:
        return parse_system_upload(text.encode(), name)
    return load_system(check_name(name, "system", "system"))
