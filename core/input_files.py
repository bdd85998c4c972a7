"""The one reader of input files: spec and config files, sweep spaces, uploads and traces.

Every file a user hands Decodex (a device or system TOML, a Hugging Face ``config.json``, a sweep
space, a dashboard upload, a request trace) is read here, so that every way a file can be bad
ends in one :class:`~decodex.core.errors.SpecError` naming the file (and the field where there is
one) instead of a traceback:

- missing, a folder, unreadable, or larger than the cap for its kind (:data:`MAX_SPEC_BYTES`,
  :data:`MAX_TRACE_BYTES`);
- not UTF-8 text (a UTF-8 byte-order mark is accepted);
- bad TOML or JSON syntax; JSON's ``NaN``/``Infinity`` literals; integers with more digits than
  Python parses (``sys.get_int_max_str_digits``);
- tables or lists nested deeper than :data:`MAX_NESTING` (a recursion bomb);
- integers beyond :data:`MAX_ABS_INT` (no physical quantity in a spec needs more; larger ones
  overflow the float arithmetic downstream).

Ranges of individual fields are the readers' job (``hw_models.spec_reader.TableReader``,
``workloads.config_fields.ConfigFields``); this module checks what every file shares.
"""

from __future__ import annotations

import json
import os
import stat
import threading
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from decodex.core.errors import SpecError

MAX_SPEC_BYTES = 4 * 2**20  # B; a spec, config or sweep file (the largest catalog file is ~12 kB)
MAX_TRACE_BYTES = 512 * 2**20  # B; a request trace (the Azure 2023 conversation trace is ~1 MB)
MAX_NESTING = 32  # tables/lists inside each other (catalog files use at most 4)
MAX_ABS_INT = 2**63 - 1  # the largest integer a field may hold (int64, what numpy arrays take)


def file_mtime_ns(path: str) -> int | None:
    """Modification time (ns) of the regular file at ``path``; None when there is none (missing,
    a folder, unreadable): one ``stat`` call, what the spec caches key an edited file by."""
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return None
    return info.st_mtime_ns if stat.S_ISREG(info.st_mode) else None


_READS = threading.local()  # .logs: the lists of the files_read blocks open in this thread


@contextmanager
def files_read() -> Iterator[list[tuple[str, int]]]:
    """The files :func:`read_text` reads in this thread inside the block, as (absolute path, its
    modification time in ns when read): what a cached spec depends on, to be checked before it is
    reused (:func:`hw_models.system.load_system`: a system file and the device files it names)."""
    logs: list[list[tuple[str, int]]] = _READS.__dict__.setdefault("logs", [])
    log: list[tuple[str, int]] = []
    logs.append(log)
    try:
        yield log
    finally:
        logs.remove(log)


def read_text(path: str | Path, *, max_bytes: int = MAX_SPEC_BYTES, what: str = "spec file") -> str:
    """The text of the file at ``path`` (UTF-8, a byte-order mark dropped), at most ``max_bytes``
    bytes; every failure is a SpecError naming the file."""
    path = Path(path)
    source = str(path)
    try:
        if path.is_dir():
            raise SpecError(source, "", f"is a folder, not a {what}")
        info = path.stat()  # before the read: an edit during it shows as a newer time later
        if info.st_size > max_bytes:
            raise SpecError(source, "", f"{info.st_size:,} B is more than the {max_bytes:,} B allowed for a {what}")
        data = path.read_bytes()
    except FileNotFoundError:
        raise SpecError(source, "", "file not found") from None
    except OSError as err:
        raise SpecError(source, "", f"cannot be read: {err.strerror or err}") from None
    for log in getattr(_READS, "logs", ()):
        log.append((os.path.abspath(source), info.st_mtime_ns))
    return decode_text(data, source)


def decode_text(data: bytes, source: str) -> str:
    """``data`` decoded as UTF-8 (a byte-order mark dropped); SpecError naming ``source`` and the
    first bad byte otherwise."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise SpecError(source, "", f"not UTF-8 text (byte {err.start}: {data[err.start:err.start + 1]!r})") from None


def check_structure(data: Any, source: str, field: str = "", depth: int = 0) -> None:
    """Refuse nesting deeper than :data:`MAX_NESTING` and integers beyond :data:`MAX_ABS_INT`,
    naming the dotted field where it happens."""
    if depth > MAX_NESTING:
        raise SpecError(source, field, f"nested more than {MAX_NESTING} levels deep")
    if isinstance(data, bool):
        return
    if isinstance(data, int):
        if abs(data) > MAX_ABS_INT:
            raise SpecError(source, field, f"integer with {len(str(abs(data)))} digits is beyond ±{MAX_ABS_INT}")
        return
    if isinstance(data, Mapping):
        for key, value in data.items():
            check_structure(value, source, f"{field}.{key}" if field else str(key), depth + 1)
    elif isinstance(data, list):
        for index, value in enumerate(data):
            check_structure(value, source, f"{field}[{index}]", depth + 1)


def parse_toml(text: str, source: str) -> dict[str, Any]:
    """The tables of TOML ``text`` (from ``source``, for messages), structure checked."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SpecError(source, "", f"not valid TOML: {err}") from None
    except RecursionError:
        raise SpecError(source, "", f"nested more than {MAX_NESTING} levels deep") from None
    except ValueError as err:  # an integer beyond Python's digit limit
        raise SpecError(source, "", f"not valid TOML: {err}") from None
    check_structure(data, source)
    return data


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def parse_json(text: str, source: str) -> Any:
    """The value of JSON ``text`` (from ``source``), structure checked; ``NaN``/``Infinity``
    refused."""
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as err:
        raise SpecError(source, "", f"not valid JSON ({err.msg} at line {err.lineno})") from None
    except RecursionError:
        raise SpecError(source, "", f"nested more than {MAX_NESTING} levels deep") from None
    except ValueError as err:  # NaN/Infinity, or an integer beyond Python's digit limit
        raise SpecError(source, "", f"not valid JSON: {err}") from None
    check_structure(data, source)
    return data


def read_toml(path: str | Path) -> dict[str, Any]:
    """Read and parse a TOML file (:func:`read_text`, :func:`parse_toml`)."""
    return parse_toml(read_text(path), str(path))


def read_json(path: str | Path) -> Any:
    """Read and parse a JSON file (:func:`read_text`, :func:`parse_json`)."""
    return parse_json(read_text(path), str(path))
