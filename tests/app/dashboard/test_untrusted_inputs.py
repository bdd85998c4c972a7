"""Dashboard inputs name catalog entries or uploaded content, never a file on the server
(app/dashboard/untrusted.py): every route is refused with a message naming the field, and the
file it names is not opened, read or even probed for existence.

Each refusal test points at a file in ``tmp_path`` shaped like a valid input (a device TOML, a
config.json, a trace CSV) and watches every filesystem access under ``tmp_path`` while the input
is handled: ``open`` and directory listings through Python's audit hooks (which see every
``open``, ``io.open`` and ``os.open``), ``os.stat`` / ``os.lstat`` (what ``Path.is_file`` and
``Path.exists`` call) through monkeypatching. The positive control shows the watch does see the
command line's reads of the same file, which the CLI still accepts.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from decodex.app.dashboard.sweep_view import parse_space_bytes
from decodex.app.dashboard.untrusted import (
    UntrustedInputError,
    allowed_names,
    check_name,
    check_space,
    check_spec_tables,
    check_sweep_dir,
    names_device_file,
)
from decodex.app.dashboard.uploads import parse_system_upload, resolve_model, resolve_system
from decodex.core.errors import DecodexError
from decodex.examples import list_examples
from decodex.explore.runner import run_sweep
from decodex.explore.spec_overrides import system_with
from decodex.explore.sweep_space import load_space
from decodex.hw_models.system import DEVICES_DIR, SYSTEMS_DIR, load_system
from decodex.workloads.catalog import CATALOG_DIR

PAGE = str(Path(__file__).resolve().parents[3] / "app/dashboard/views/sweep_explorer.py")

# --- watching the filesystem ----------------------------------------------------------------------

_WATCH: dict[str, Any] = {"root": None, "seen": []}
_EVENTS = ("open", "os.listdir", "os.scandir", "os.chdir")


def _note(path: object) -> None:
    """Record ``path`` when it lies under the watched folder (relative paths against the cwd)."""
    root = _WATCH["root"]
    if root is None or not isinstance(path, str | bytes | os.PathLike):
        return
    try:
        text = os.path.abspath(os.fsdecode(path))
    except (TypeError, ValueError):
        return
    if text == root or text.startswith(root + os.sep):
        _WATCH["seen"].append(text)


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _WATCH["root"] is not None and event in _EVENTS and args:
        _note(args[0])


sys.addaudithook(_audit)  # cannot be removed; does nothing while no folder is watched


@contextlib.contextmanager
def accesses(root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The paths under ``root`` opened, listed or stat'ed inside the block."""
    real_stat, real_lstat = os.stat, os.lstat

    def stat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        _note(path)
        return real_stat(path, *args, **kwargs)

    def lstat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        _note(path)
        return real_lstat(path, *args, **kwargs)

    seen: list[str] = []
    _WATCH.update(root=str(root.resolve()), seen=seen)
    with monkeypatch.context() as patch:
        patch.setattr(os, "stat", stat)
        patch.setattr(os, "lstat", lstat)
        try:
            yield seen
        finally:
            _WATCH.update(root=None, seen=[])


# --- files on the "server" that an input might name -----------------------------------------------

@pytest.fixture
def device_file(tmp_path: Path) -> Path:
    """A valid device TOML outside the catalog (an H100 named ``evil``)."""
    text = (DEVICES_DIR / "h100-sxm.toml").read_text(encoding="utf-8")
    path = tmp_path / "evil.toml"
    path.write_text(text.replace('name = "h100-sxm"', 'name = "evil"', 1), encoding="utf-8")
    assert load_system(path).primary_device.name == "evil"  # usable, were it read
    return path


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    """A valid HF config.json outside the catalog."""
    path = tmp_path / "secret-model.json"
    shutil.copy(CATALOG_DIR / "llama3-8b.json", path)
    return path


@pytest.fixture
def trace_file(tmp_path: Path) -> Path:
    """A valid request trace CSV outside the catalog."""
    path = tmp_path / "trace.csv"
    path.write_text("arrival_s,input_tokens,output_tokens\n0.0,100,20\n0.5,200,30\n", encoding="utf-8")
    return path


def _space(fixed: str, axes: str = "", head: str = "") -> bytes:
    """The bytes of a space TOML with the given ``[sweep]`` head lines, fixed settings and axes."""
    return f"[sweep]\nname = \"probe\"\n{head}\n[sweep.fixed]\n{fixed}\n[sweep.axes]\n{axes}\n".encode()


def _refused(data: bytes, root: Path, monkeypatch: pytest.MonkeyPatch, *words: str) -> str:
    """Parse ``data`` as a dashboard space: it must be refused with a one-line message holding
    ``words``, and nothing under ``root`` may be touched."""
    with accesses(root, monkeypatch) as seen, pytest.raises(DecodexError) as info:
        space = parse_space_bytes(data, "probe.toml")
        run_sweep(space)  # reached only if the check let it through: would read the file
    message = str(info.value)
    assert seen == [], f"the server touched {seen}"
    assert "\n" not in message
    for word in words:
        assert word in message, message
    return message


# --- sweep spaces ---------------------------------------------------------------------------------

def test_axis_naming_a_server_file_is_refused(device_file: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    data = _space('model = "llama3-8b"', f'system = ["h100-sxm", "{device_file}"]')
    message = _refused(data, tmp_path, monkeypatch, "sweep.axes.system[1]", "not a catalog system", "h100-sxm")
    assert "8x-h100-sxm" in message  # the allowed names are listed


def test_fixed_setting_naming_a_server_file_is_refused(model_file: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    data = _space(f'model = "{model_file}"\nsystem = "h100-sxm"')
    _refused(data, tmp_path, monkeypatch, "sweep.fixed.model", "not a catalog model", "llama3-8b")


@pytest.mark.parametrize("key", ["spec.system.devices[0].device", "spec.system.devices[0].dev"])
def test_spec_override_naming_a_device_file_is_refused(key: str, device_file: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The reported hole: an override of a system's device entry, also through a prefix of the field."""
    data = _space('model = "llama3-8b"\nsystem = "8x-h100-sxm"', f'"{key}" = ["h100-sxm", "{device_file}"]')
    _refused(data, tmp_path, monkeypatch, f'sweep.axes."{key}"[1]', "not a catalog device",
             "a device of 8x-h100-sxm", "h200")


def test_spec_override_as_a_fixed_setting_is_refused(device_file: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    data = _space(f'model = "llama3-8b"\nsystem = "8x-h100-sxm"\n"spec.system.devices[0].device" = "{device_file}"')
    _refused(data, tmp_path, monkeypatch, 'sweep.fixed."spec.system.devices[0].device"', "not a catalog device")


def test_spec_override_bringing_a_device_table_is_refused(device_file: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    data = _space('model = "llama3-8b"\nsystem = "8x-h100-sxm"',
                  f'"spec.system.devices" = [[{{device = "{device_file}", count = 1}}]]')
    _refused(data, tmp_path, monkeypatch, '"spec.system.devices"[0]', "not tables")


def test_extends_through_an_override_is_refused(device_file: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    data = _space('model = "llama3-8b"\nsystem = "h100-sxm"', f'"spec.device.extends" = ["{device_file}"]')
    _refused(data, tmp_path, monkeypatch, '"spec.device.extends"', "cannot be overridden")


def test_serve_mode_trace_paths_are_refused(trace_file: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A serve sweep takes workload presets by name: a trace path as the dataset, as a parameter
    or as an option of the [sweep] table is refused before anything reads it."""
    serve = 'mode = "serve"'
    fixed = 'model = "llama3-8b"\nsystem = "h100-sxm"'
    _refused(_space(f'{fixed}\ndataset = "{trace_file}"', head=serve), tmp_path, monkeypatch,
             "sweep.fixed.dataset", "not a catalog dataset", "sharegpt")
    _refused(_space(f'{fixed}\ntrace = "{trace_file}"', head=serve), tmp_path, monkeypatch,
             "sweep.fixed.trace", "unknown parameter")
    _refused(_space(fixed, head=f'{serve}\ntrace = "{trace_file}"'), tmp_path, monkeypatch,
             "sweep.trace: unknown field")


def test_out_folder_in_a_space_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _space('model = "llama3-8b"\nsystem = "h100-sxm"', head=f'out = "{tmp_path / "runs"}"')
    _refused(data, tmp_path, monkeypatch, "sweep.out: unknown field")
    assert not (tmp_path / "runs").exists()


def test_a_range_of_models_is_refused(model_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A range draws numbers, which the model reader would take as relative paths ('3')."""
    shutil.copy(model_file, tmp_path / "3")
    monkeypatch.chdir(tmp_path)
    data = _space('system = "h100-sxm"', "model = {low = 1, high = 5, integer = true}",
                  head='sampling = "random"\nsamples = 4')
    _refused(data, tmp_path, monkeypatch, "sweep.axes.model must be a list of catalog model names")


def test_the_dashboard_page_refuses_the_space_without_reading_the_file(
        device_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """End to end: the space pasted into the Sweep explorer is an error message, no run button."""
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.run()
    at.radio(key="sweep.space_kind").set_value("Paste or upload a space TOML").run()
    text = _space('model = "llama3-8b"\nsystem = "8x-h100-sxm"',
                  f'"spec.system.devices[0].device" = ["{device_file}"]').decode()
    with accesses(tmp_path, monkeypatch) as seen:
        at.text_area(key="sweep.toml_text").input(text).run()
    assert not at.exception
    assert seen == []
    assert len(at.error) == 1 and "not a catalog device" in at.error[0].value
    assert '"spec.system.devices[0].device"[0]' in at.error[0].value
    assert not any(b.key == "sweep.run" for b in at.button)


# --- uploaded device and system files -------------------------------------------------------------

def test_uploaded_device_extending_a_server_file_is_refused(device_file: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    for ref in (str(device_file), device_file.stem, str(device_file.relative_to(tmp_path.parent))):
        monkeypatch.chdir(tmp_path.parent)
        text = f'[device]\nname = "mine"\nextends = "{ref}"\n'.encode()
        with accesses(tmp_path, monkeypatch) as seen, pytest.raises(UntrustedInputError) as info:
            parse_system_upload(text, "mine.toml")
        assert seen == []
        assert "upload:mine.toml: device.extends" in str(info.value)
        assert "not a catalog device" in str(info.value) and "h100-sxm" in str(info.value)


def test_uploaded_system_naming_a_device_file_is_refused(device_file: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    text = (f'[system]\nname = "s"\ndefault_mapper = "gpu"\n[[system.devices]]\ndevice = "h100-sxm"\ncount = 1\n'
            f'[[system.devices]]\ndevice = "{device_file}"\ncount = 1\n').encode()
    with accesses(tmp_path, monkeypatch) as seen, pytest.raises(UntrustedInputError) as info:
        parse_system_upload(text, "two.toml")
    assert seen == []
    assert "upload:two.toml: system.devices[1].device" in str(info.value)
    assert "upload a device file" in str(info.value)


def test_a_page_model_or_system_that_is_a_path_is_refused(device_file: Path, model_file: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an upload, a page's model and system are catalog names (whatever the browser sends)."""
    with accesses(tmp_path, monkeypatch) as seen:
        with pytest.raises(UntrustedInputError, match=r"^system = .* is not a catalog system"):
            resolve_system(str(device_file), None)
        with pytest.raises(UntrustedInputError, match=r"^model = .* is not a catalog model"):
            resolve_model(str(model_file), None)
    assert seen == []


def test_checker_functions_refuse_odd_values() -> None:
    with pytest.raises(UntrustedInputError, match="not a catalog device"):
        check_spec_tables({"system": {"devices": [{"count": 1}]}}, "upload:x.toml")  # no device: refused
    with pytest.raises(UntrustedInputError, match=r"\.\.\.'"):
        check_name("x" * 500, "model", "model")  # a long value is cut in the message
    with pytest.raises(UntrustedInputError):
        check_name(["h100-sxm"], "system", "system")  # not a string
    with pytest.raises(ValueError, match="unknown kind"):
        allowed_names("file")


# --- what still works -----------------------------------------------------------------------------

def test_catalog_names_still_work() -> None:
    for path in list_examples().values():  # every example space passes the dashboard's check
        parse_space_bytes(path.read_bytes(), path.name)
    assert resolve_system("h100-sxm", None).name == "h100-sxm"
    assert resolve_model("llama3-8b", None).name == "llama3-8b"
    check_spec_tables({"device": {"extends": "h100-sxm"}}, "upload:x.toml")
    system = parse_system_upload(b'[device]\nname = "h100-2x"\nextends = "h100-sxm"\n', "h100-2x.toml")
    assert system.primary_device.name == "h100-2x"
    catalog = (SYSTEMS_DIR / "8x-h100-sxm.toml").read_bytes()
    assert parse_system_upload(catalog, "8x.toml").device_count == load_system("8x-h100-sxm").device_count


def test_catalog_device_through_a_system_override_runs() -> None:
    """The override route stays open to catalog devices: an H200 in place of the H100s is faster."""
    data = _space('model = "llama3-8b"\nsystem = "8x-h100-sxm"\ntp = 8\nbatch = 8',
                  '"spec.system.devices[0].device" = ["h100-sxm", "h200"]')
    space = parse_space_bytes(data)
    frame = run_sweep(space)
    assert frame["feasible"].all(), frame["reason"].tolist()
    by_device = dict(zip(frame["spec.system.devices[0].device"], frame["tpot_s"], strict=True))
    assert by_device["h200"] < by_device["h100-sxm"]


def test_which_overrides_name_device_files() -> None:
    assert names_device_file("8x-h100-sxm", "system.devices[0].device")
    assert names_device_file("8x-h100-sxm", "system.devices[0].d")  # a unique prefix, as the sweep reads it
    assert not names_device_file("8x-h100-sxm", "system.devices[0].count")
    assert not names_device_file("8x-h100-sxm", "system.devices[0].device@scale")
    assert not names_device_file("8x-h100-sxm", "system.devices[5].device")  # no such entry: fails in the sweep too
    assert not names_device_file("alveo-u280", "system.devices[0].device")  # a device: no system table
    space = load_space({"fixed": {"model": "llama3-8b", "system": "8x-h100-sxm", "spec.system.devices[0].role": "ffn",
                                  "spec.hbm.bandwidth_bytes_per_s@scale": 2.0}})
    check_space(space)  # a string for another field and a device override are fine


def test_the_cli_still_takes_paths(device_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Positive control: the command line's readers (no dashboard check) read the same file, and
    the watch sees it: the refusals above are not the watch missing reads."""
    with accesses(tmp_path, monkeypatch) as seen:
        spec = system_with("8x-h100-sxm", {"system.devices[0].device": str(device_file)})
    assert spec.primary_device.name == "evil"
    assert str(device_file) in seen
    space = load_space({"fixed": {"model": "llama3-8b", "system": "8x-h100-sxm", "tp": 8,
                                  "spec.system.devices[0].device": str(device_file)}})
    row = run_sweep(space).iloc[0]  # `decodex sweep` on the same space uses the file
    assert row["feasible"], row["reason"]
    with pytest.raises(UntrustedInputError):
        check_space(space)  # which the dashboard refuses


# --- sweep directories ----------------------------------------------------------------------------

def test_a_sweep_directory_outside_the_root_is_not_probed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Sweep explorer's directory is refused before anything outside the sweeps root is
    opened, listed or stat'ed, with the same message whether it exists or not."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "runs").mkdir(parents=True)
    (outside / "sweep" / "parts").mkdir(parents=True)
    monkeypatch.setenv("DECODEX_SWEEPS_ROOT", str(root))
    messages = set()
    with accesses(outside, monkeypatch) as seen:
        for text in (str(outside / "sweep"), str(outside / "missing"), "../outside/sweep", "../outside/missing",
                     "runs/../../outside/sweep", f"{root}/../outside/sweep"):
            with pytest.raises(UntrustedInputError) as info:
                check_sweep_dir(text)
            messages.add(str(info.value))
    assert seen == [], f"the server touched {seen}"
    assert len(messages) == 1 and str(tmp_path) not in messages.pop()
    assert check_sweep_dir("runs") == ((root / "runs").resolve(), "runs")
