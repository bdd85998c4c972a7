"""Fuzzing what the dashboard reads from a browser: a pasted or uploaded sweep space TOML, an
uploaded device or system TOML, an uploaded HF ``config.json`` and a typed sweep directory each end
in a valid object or one clean :class:`DecodexError` (one line, naming something), never another
exception, and never make the server open a file outside the package's catalog and example
directories (or, for a sweep directory, touch anything outside the sweeps root).

The parsers are driven directly (an AppTest run costs seconds): :func:`parse_space_bytes` (the
Sweep explorer: TOML, ``check_space``, the size bounds), :func:`parse_system_upload`,
:func:`parse_model_upload` and :func:`check_sweep_dir`. Values come from pools of hostile values
(paths to real files outside the catalog, ``..``, huge and non-finite numbers, wrong types, deep
nesting) mixed with valid ones, so that hypothesis also reaches the deeper readers. Every file
access is watched through Python's audit hooks (``open`` covers ``builtins.open``, ``io.open``,
``os.open`` and ``Path.open``; listings too) while a parser runs.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from decodex.app.dashboard.sweep_view import parse_space_bytes
from decodex.app.dashboard.untrusted import UntrustedInputError, check_sweep_dir
from decodex.app.dashboard.uploads import parse_model_upload, parse_system_upload
from decodex.core.errors import DecodexError
from decodex.examples import EXAMPLES_DIR
from decodex.explore.sweep_space import SweepSpace
from decodex.hw_models.system import DEVICES_DIR, SYSTEMS_DIR, SystemSpec
from decodex.workloads.catalog import CATALOG_DIR
from decodex.workloads.model_config import ModelConfig

ALLOWED = tuple(str(p.resolve()) for p in (CATALOG_DIR, DEVICES_DIR, SYSTEMS_DIR, EXAMPLES_DIR))
SETTINGS = settings(max_examples=120, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# --- watching the file system ---------------------------------------------------------------------

_WATCH: dict[str, Any] = {"on": False, "seen": []}
_EVENTS = ("open", "os.listdir", "os.scandir", "os.chdir", "os.mkdir", "os.remove", "os.rename")


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _WATCH["on"] and event in _EVENTS and args and isinstance(args[0], str | bytes | os.PathLike):
        _WATCH["seen"].append(os.path.abspath(os.fsdecode(args[0])))


sys.addaudithook(_audit)  # cannot be removed; records nothing while the watch is off


@contextmanager
def watched() -> Iterator[list[str]]:
    """The paths opened, listed or stat'ed (``os.stat`` / ``os.lstat``: what ``Path.exists`` and
    ``os.path.realpath`` call) inside the block."""
    seen: list[str] = []
    real_stat, real_lstat = os.stat, os.lstat

    def stat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        _audit("open", (path,))
        return real_stat(path, *args, **kwargs)

    def lstat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        _audit("open", (path,))
        return real_lstat(path, *args, **kwargs)

    _WATCH.update(on=True, seen=seen)
    os.stat, os.lstat = stat, lstat  # type: ignore[assignment]
    try:
        yield seen
    finally:
        os.stat, os.lstat = real_stat, real_lstat  # type: ignore[assignment]
        _WATCH.update(on=False, seen=[])


def _outside(seen: list[str], roots: tuple[str, ...]) -> list[str]:
    """Accesses neither under one of ``roots`` nor on the way to one (resolving a catalog path
    stats its parent folders), Python's own module files aside."""
    def allowed(path: str) -> bool:
        return any(path == r or path.startswith(r + os.sep) or r.startswith(path.rstrip(os.sep) + os.sep)
                   for r in roots)
    return [p for p in seen if not allowed(p) and not p.endswith((".py", ".pyc", ".so"))]


# --- files on the "server" that a value may name --------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Real files outside the catalog, shaped like valid inputs, and a sweeps root with a
    symlink out of it."""
    base = tmp_path_factory.mktemp("fuzz-uploads")
    (base / "evil.toml").write_text((DEVICES_DIR / "h100-sxm.toml").read_text().replace('"h100-sxm"', '"evil"', 1))
    (base / "secret.json").write_text((CATALOG_DIR / "llama3-8b.json").read_text())
    (base / "root" / "runs" / "a").mkdir(parents=True)
    (base / "outside").mkdir()
    (base / "root" / "out-link").symlink_to(base / "outside")
    (base / "root" / "in-link").symlink_to(base / "root" / "runs")
    return {"base": str(base), "evil": str(base / "evil.toml"), "secret": str(base / "secret.json"),
            "root": str(base / "root"), "outside": str(base / "outside")}


PATHS = ["{evil}", "{secret}", "/etc/passwd", "../../etc/passwd", "~/.ssh/id_rsa", "evil", "./evil.toml", "",
         "{base}/../evil.toml", "devices/h100-sxm.toml", "\u00e9t\u00e9", "a" * 300]
NAMES = {"model": ["llama3-8b", "mixtral-8x7b", "gpt3-7b", "nope"],
         "system": ["h100-sxm", "8x-h100-sxm", "neupims", "alveo-u280", "nope"],
         "dataset": ["sharegpt", "alpaca", "fixed", "nope"], "device": ["h100-sxm", "h200", "a100-80g"]}
NUMBERS = [0, 1, 2, 8, 64, -1, 1.5, 4096, 4097, 10**6, 10**9, 2**63, -(2**63), 10**30, 1e308, -1e308, 5e-324,
           math.inf, -math.inf, math.nan, True, False]
SIZE_KEYS = ["batch", "context", "tp", "pp", "ep", "requests", "input_len", "output_len", "chunk", "max_batch",
             "mapper.microbatches", "rate", "seed", "skew"]
OTHER_KEYS = ["precision", "mapper", "scheduler", "routing", "spec.system.devices[0].device", "spec.system.devices",
              "spec.device.extends", "spec.hbm.bandwidth_bytes_per_s@scale", "spec.system.devices[0].count",
              "trace", "out", "foo"]


VALID = {"precision": ["bf16", "fp8"], "mapper": ["gpu"], "scheduler": ["continuous", "chunked", "static"],
         "routing": ["uniform", "zipf"], "spec.system.devices[0].device": ["h100-sxm", "h200"],
         "spec.hbm.bandwidth_bytes_per_s@scale": [0.5, 2.0], "spec.system.devices[0].count": [1, 8]}


def _mostly(draw: st.DrawFn, valid: Any, hostile: list[Any]) -> Any:
    """``valid`` four times in five, else one of ``hostile``."""
    return draw(st.sampled_from(hostile)) if draw(st.integers(0, 8)) == 4 else valid


def _scalar(kind: str | None = None) -> st.SearchStrategy[Any]:
    pools = [st.sampled_from(NUMBERS), st.sampled_from(PATHS), st.sampled_from(NAMES.get(kind or "", ["bf16"]))]
    return st.one_of(*pools)


def _value(kind: str | None = None) -> st.SearchStrategy[Any]:
    """A value for one parameter: a scalar, a list of them, a range table, or something nested."""
    scalar = _scalar(kind)
    return st.one_of(
        scalar,
        st.lists(scalar, min_size=0, max_size=4),
        st.fixed_dictionaries({"low": st.sampled_from(NUMBERS), "high": st.sampled_from(NUMBERS)},
                              optional={"integer": st.booleans(), "log": st.booleans()}),
        st.recursive(scalar, lambda inner: st.lists(inner, max_size=2) | st.dictionaries(
            st.sampled_from(["device", "count", "a"]), inner, max_size=2), max_leaves=6),
    )


def toml_value(value: Any) -> str:
    """``value`` written as a TOML value (inline tables for mappings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(str(k))} = {toml_value(v)}" for k, v in value.items()) + "}"


def _tables(data: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """(dotted name, scalar fields) of every table in ``data``, sub-tables included."""
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict)}
    if prefix and scalars:
        yield prefix, scalars
    for key, value in data.items():
        if isinstance(value, dict):
            yield from _tables(value, f"{prefix}.{key}" if prefix else key)


def _fill(text: str, paths: dict[str, str]) -> str:
    for key, path in paths.items():
        text = text.replace("{" + key + "}", path)
    return text


@st.composite
def space_text(draw: st.DrawFn) -> str:
    """A space TOML: a [sweep] head, fixed settings and axes from the pools, sometimes broken."""
    head = {"name": _mostly(draw, "fuzz", [3, ""]),
            "mode": _mostly(draw, draw(st.sampled_from(["estimate", "simulate", "serve"])), ["fast", 1]),
            "sampling": _mostly(draw, draw(st.sampled_from(["grid", "random", "lhs"])), ["none", True]),
            "samples": _mostly(draw, draw(st.sampled_from([1, 4, 16])), [0, 10**9, -1, 1.5, 2**64])}
    extra = draw(st.dictionaries(st.sampled_from(["out", "trace", "extends", "workers", "seed"]),
                                 _scalar(), max_size=1)) if draw(st.integers(0, 4)) == 0 else {}
    fixed: dict[str, Any] = {}
    for key in ("model", "system", "dataset"):
        if draw(st.integers(0, 9)) < 9:
            fixed[key] = draw(st.sampled_from(NAMES[key][:-1])) if draw(st.integers(0, 3)) else draw(_value(key))
    keys = draw(st.lists(st.sampled_from(SIZE_KEYS + OTHER_KEYS), unique=True, max_size=4))
    axes: dict[str, Any] = {}
    for key in keys:
        small = st.sampled_from([1, 2, 4, 8]) if key in SIZE_KEYS else st.sampled_from(VALID.get(key, ["bf16"]))
        value = draw(st.one_of(small, st.lists(small, min_size=1, max_size=3))) if draw(st.integers(0, 2)) \
            else draw(_value("device" if "device" in key else None))
        if isinstance(value, list | dict) and draw(st.booleans()):
            axes[key] = value
        else:
            fixed[key] = value
    lines = ["[sweep]", *(f"{k} = {toml_value(v)}" for k, v in {**head, **extra}.items()), "[sweep.fixed]",
             *(f"{json.dumps(k)} = {toml_value(v)}" for k, v in fixed.items()), "[sweep.axes]",
             *(f"{json.dumps(k)} = {toml_value(v)}" for k, v in axes.items())]
    if draw(st.booleans()):
        lines += ["[[sweep.constraints]]", f"metric = {toml_value(_mostly(draw, 'tpot_s', [3, '']))}",
                  f"op = {toml_value(_mostly(draw, '<=', ['==', 1]))}",
                  f"bound = {toml_value(_mostly(draw, 0.05, NUMBERS))}"]
    return _mangle(draw, "\n".join(lines))


MANGLES = ["none"] * 8 + ["cut", "garbage", "deep", "dotted"] + ["none"] * 8


def _mangle(draw: st.DrawFn, text: str) -> str:
    """Now and then (one time in five): cut the text, insert garbage, or nest it deep."""
    how = draw(st.sampled_from(MANGLES))
    if how == "cut":
        return text[: draw(st.integers(1, max(1, len(text))))]
    if how == "garbage":
        at = draw(st.integers(0, len(text)))
        garbage = draw(st.sampled_from(["[", "]]", "= =", '"', "\\", "\x00", "{a=", "\n[sweep]\n"]))
        return text[:at] + garbage + text[at:]
    if how == "deep":
        return text + "\nx = " + "[" * 2000 + "]" * 2000
    if how == "dotted":
        return text + "\n[" + ".".join(["t"] * 200) + "]\nx = 1"
    return text


DEVICE_TEXT = (DEVICES_DIR / "h100-sxm.toml").read_text()
DEVICE_FIELDS = [(".".join(path), key) for path, key in (
    (tuple(name.split(".")), k) for name, table in (
        (name, table) for name, table in _tables(tomllib.loads(DEVICE_TEXT))) for k in table)]


@st.composite
def hardware_text(draw: st.DrawFn) -> str:
    """A device or system TOML: the catalog H100 with fields replaced, a device extending a
    catalog device with some fields overridden, or a system of devices."""
    how = draw(st.integers(0, 2))
    if how == 0:  # the whole catalog file, some values replaced
        lines = []
        for line in DEVICE_TEXT.split("\n"):
            if "=" in line and not line.lstrip().startswith(("#", "[")) and draw(st.integers(0, 11)) == 0:
                line = f"{line.split('=', 1)[0]}= {toml_value(draw(_scalar()))}"
            lines.append(line)
        text = "\n".join(lines).replace('name = "h100-sxm"', 'name = "mine"', 1)
    elif how == 1:  # a device extending a catalog device
        extends = draw(st.sampled_from(NAMES["device"]) if draw(st.integers(0, 3)) else _scalar())
        overrides: dict[str, dict[str, Any]] = {}
        for table, key in draw(st.lists(st.sampled_from(DEVICE_FIELDS), unique=True, max_size=4)):
            overrides.setdefault(table, {})[key] = draw(_scalar())
        lines = ["[device]", 'name = "mine"', f"extends = {toml_value(extends)}"]
        for table, values in overrides.items():
            if table != "device":
                lines.append(f"[{table}]")
            lines += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in values.items()]
        text = "\n".join(lines)
    else:  # a system of devices
        groups = draw(st.lists(st.fixed_dictionaries(
            {"device": st.sampled_from(NAMES["device"] + PATHS) | _scalar()},
            optional={"count": st.sampled_from([1, 2, 8, *NUMBERS]), "role": st.sampled_from(["ffn", "attention", 3])}),
            min_size=1, max_size=3))
        lines = ["[system]", 'name = "s"', f"default_mapper = {toml_value(draw(st.sampled_from(['gpu', 'nope', 1])))}"]
        for group in groups:
            lines.append("[[system.devices]]")
            lines += [f"{k} = {toml_value(v)}" for k, v in group.items()]
        text = "\n".join(lines)
    return _mangle(draw, text)


CONFIG = json.loads((CATALOG_DIR / "llama3-8b.json").read_text())


@st.composite
def config_text(draw: st.DrawFn) -> str:
    """A config.json: the catalog Llama-3-8B with some fields replaced, dropped or added."""
    data: Any = dict(CONFIG)
    for key in draw(st.lists(st.sampled_from(sorted(CONFIG)), unique=True, max_size=4)):
        if draw(st.integers(0, 3)) == 0:
            del data[key]
        else:
            data[key] = draw(_value())
    if draw(st.integers(0, 10)) == 5:
        data = draw(_value())
    text = json.dumps(data, allow_nan=True)
    how = draw(st.sampled_from(MANGLES))
    if how == "cut":
        return text[: draw(st.integers(1, max(1, len(text))))]
    if how == "garbage":
        return text.replace("4096", "9" * 5000, 1)
    if how in ("deep", "dotted"):
        return "[" * 3000 + "]" * 3000
    return text


def _check(parse: Callable[[], Any], kind: type, paths: dict[str, str], text: str) -> None:
    """``parse()`` gives a ``kind`` or one clean DecodexError, and opens nothing outside the catalog."""
    with watched() as seen:
        try:
            result = parse()
        except DecodexError as err:
            message = str(err)
            assert message.strip() and "\n" not in message and "Traceback" not in message, (text, message)
        else:
            assert isinstance(result, kind), (text, result)
    outside = _outside(seen, ALLOWED)
    assert outside == [], (text, outside)
    assert not any(paths["base"] in p for p in seen), (text, seen)  # never a file the input names


@SETTINGS
@given(text=space_text())
def test_any_space_toml_is_a_space_or_one_line(text: str, server: dict[str, str]) -> None:
    text = _fill(text, server)
    _check(lambda: parse_space_bytes(text.encode("utf-8", "surrogatepass"), "fuzz.toml"), SweepSpace, server, text)


@SETTINGS
@given(text=hardware_text())
def test_any_device_or_system_toml_is_a_system_or_one_line(text: str, server: dict[str, str]) -> None:
    text = _fill(text, server)
    _check(lambda: parse_system_upload(text.encode(), "fuzz.toml"), SystemSpec, server, text)


@SETTINGS
@given(text=config_text())
def test_any_config_json_is_a_model_or_one_line(text: str, server: dict[str, str]) -> None:
    text = _fill(text, server)
    _check(lambda: parse_model_upload(text.encode(), "fuzz.json"), ModelConfig, server, text)


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=64), route=st.sampled_from(["space", "system", "model"]))
def test_any_bytes_are_refused_in_one_line(data: bytes, route: str, server: dict[str, str]) -> None:
    parse = {"space": lambda: parse_space_bytes(data, "b.toml"), "system": lambda: parse_system_upload(data, "b.toml"),
             "model": lambda: parse_model_upload(data, "b.json")}[route]
    kind = {"space": SweepSpace, "system": SystemSpec, "model": ModelConfig}[route]
    _check(parse, kind, server, repr(data))


SEGMENTS = ["..", ".", "runs", "a", "out-link", "in-link", "missing", "~", "", "{outside}", "{root}", "{base}",
            "/etc", "x" * 50]


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(st.sampled_from(SEGMENTS), min_size=0, max_size=6), absolute=st.booleans())
def test_any_sweep_directory_is_under_the_root_or_refused(parts: list[str], absolute: bool,
                                                          server: dict[str, str]) -> None:
    """A typed sweep directory resolves under the root or is refused with the one message;
    nothing outside the root is touched but the target of the symlink placed in it."""
    text = ("/" if absolute else "") + "/".join(_fill(p, server) for p in parts)
    root = server["root"]
    with watched() as seen:
        try:
            directory, shown = check_sweep_dir(text, root)
        except UntrustedInputError as err:
            message = str(err)
            assert "\n" not in message and server["base"] not in message, (text, message)
        else:
            real_root = os.path.realpath(root)
            assert str(directory) == real_root or str(directory).startswith(real_root + os.sep), (text, directory)
            assert not os.path.isabs(shown) and ".." not in Path(shown).parts, (text, shown)
    outside = [p for p in _outside(seen, (root, os.path.realpath(root))) if not p.startswith(server["outside"])]
    assert outside == [], (text, outside)
