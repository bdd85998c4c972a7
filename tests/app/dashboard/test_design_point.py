"""Design point page (AppTest), its figures, data-only uploads, the page frame and ``decodex app``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from decodex.api import estimate
from decodex.app.cli import build_parser
from decodex.app.cli_app import DASHBOARD, streamlit_command
from decodex.app.dashboard.charts import band_factors, op_breakdown, op_breakdown_figure, roofline_with_band
from decodex.app.dashboard.uploads import MAX_UPLOAD_BYTES, UploadError, parse_model_upload, parse_system_upload
from decodex.core.errors import ArgumentError, DecodexError, SpecError
from decodex.hw_models.system import DEVICES_DIR, load_system
from decodex.sim.auto_layout import choose_layout
from decodex.workloads.catalog import CATALOG_DIR, load_model
from decodex.workloads.parallelism import Parallelism

ROOT = Path(__file__).resolve().parents[3]
PAGE = str(ROOT / "app/dashboard/views/design_point.py")
MAIN = str(ROOT / "app/dashboard/main.py")


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _auto(system: str, batch: int) -> Parallelism:
    """The automatic layout of llama3-70b on ``system`` at ``batch`` x 2048 tokens (the page's default)."""
    return choose_layout("llama3-70b", system, batch, context=2048).parallelism


def test_page_shows_the_estimate_of_the_default_point() -> None:
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    layout = _auto("h100-sxm", 64)
    assert layout.label == "tp4"  # 141 GB of weights and 43 GB of KV cache: four 80 GB devices
    assert any(c.value.startswith("Layout tp4:") for c in at.sidebar.caption)
    expected = estimate("llama3-70b", "h100-sxm", 64, context=2048, parallelism=layout)
    shown = _metrics(at)
    assert shown["Output tokens/s"] == f"{expected.tokens_per_s:,.0f}"
    assert shown["Step time"] == f"{expected.step_time_s * 1e3:.3f} ms"
    assert len(at.get("plotly_chart")) == 2


def test_changing_batch_and_system_changes_the_shown_values() -> None:
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    before = _metrics(at)["Output tokens/s"]
    at.sidebar.number_input(key="design.batch").set_value(128).run()
    after = _metrics(at)["Output tokens/s"]
    expected = estimate("llama3-70b", "h100-sxm", 128, context=2048, parallelism=_auto("h100-sxm", 128))
    assert after == f"{expected.tokens_per_s:,.0f}" != before
    at.sidebar.selectbox(key="design.system").set_value("h200").run()  # the layout follows the system
    on_h200 = estimate("llama3-70b", "h200", 128, context=2048, parallelism=_auto("h200", 128))
    assert _auto("h200", 128).devices < _auto("h100-sxm", 128).devices
    assert _metrics(at)["Output tokens/s"] == f"{on_h200.tokens_per_s:,.0f}"
    at.sidebar.selectbox(key="design.system").set_value("alveo-u280").run()  # an FPGA card is selectable
    assert not at.exception


def test_a_point_that_does_not_fit_is_reported_not_raised() -> None:
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.sidebar.checkbox(key="design.auto").uncheck().run()  # set the layout by hand
    at.sidebar.number_input(key="design.tp").set_value(1).run()  # 70B in bf16 on one 80 GB device
    assert not at.exception
    assert any("Does not fit" in w.value for w in at.warning)


def test_bad_mapper_choice_is_an_error_message_not_a_traceback() -> None:
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.sidebar.selectbox(key="design.mapper").set_value("neupims").run()  # an H100 has no systolic NPU or PIM
    assert not at.exception
    assert at.error, "the mapper's DecodexError must be shown"


def test_every_page_of_the_frame_runs() -> None:
    at = AppTest.from_file(MAIN, default_timeout=120).run()
    assert not at.exception
    assert at.title[0].value == "Design point"


# --- figures ---------------------------------------------------------------------------------

def test_breakdown_conserves_time_and_stacks_by_choice() -> None:
    result = estimate("llama2-7b", "a100-80g", 16, context=1024)
    frame = op_breakdown(result)
    assert frame["total_time_s"].sum() == pytest.approx(result.ops["total_time_s"].sum(), rel=1e-12)
    for stack_by in ("name", "unit", "bound"):
        figure = op_breakdown_figure(result, stack_by=stack_by)
        total_ms = sum(float(np.sum(trace.y)) for trace in figure.data)
        assert total_ms == pytest.approx(frame["time_ms"].sum(), rel=1e-9)
    with pytest.raises(ValueError, match="stack_by"):
        op_breakdown_figure(result, stack_by="colour")


def test_roofline_error_bars_follow_the_validation_band() -> None:
    result = estimate("llama2-7b", "h100-sxm", 16, context=1024)
    low, high = band_factors(result)
    assert low <= 1.0 <= high
    figure = roofline_with_band(result)
    markers = [t for t in figure.data if t.mode == "markers"]
    assert markers
    for trace in markers:
        y = np.asarray(trace.y, dtype=float)
        up, down = np.asarray(trace.error_y.array), np.asarray(trace.error_y.arrayminus)
        np.testing.assert_allclose(y + up, y / low, rtol=1e-12)  # faster than predicted: more FLOP/s
        np.testing.assert_allclose(y - down, y / high, rtol=1e-12)


# --- uploads -------------------------------------------------------------------------------------

def test_model_upload_equals_the_catalog_model() -> None:
    data = (CATALOG_DIR / "llama2-7b.json").read_bytes()
    uploaded = parse_model_upload(data, "llama2-7b.json")
    assert uploaded.parameter_count() == load_model("llama2-7b").parameter_count()
    assert uploaded.name == "llama2-7b"


@pytest.mark.parametrize(("data", "message"), [
    (b"", "empty"),
    (b"\xff\xfe\x00binary", "UTF-8"),
    (b"{not json", "not valid JSON"),
    (b"x" * (MAX_UPLOAD_BYTES + 1), "limit"),
])
def test_bad_model_uploads_name_the_problem(data: bytes, message: str) -> None:
    with pytest.raises(UploadError, match=message):
        parse_model_upload(data, "bad.json")


def test_model_upload_with_a_bad_field_names_the_field() -> None:
    config = json.loads((CATALOG_DIR / "llama2-7b.json").read_text())
    config["num_attention_heads"] = "many"
    with pytest.raises(SpecError, match="num_attention_heads"):
        parse_model_upload(json.dumps(config).encode(), "llama.json")


def test_device_upload_extending_a_catalog_device() -> None:
    text = b'[device]\nname = "h100-2x-hbm"\nextends = "h100-sxm"\n'
    system = parse_system_upload(text, "h100-2x-hbm.toml")
    assert system.primary_device.name == "h100-2x-hbm"
    assert system.primary_device.main_memory.bandwidth_bytes_per_s == \
        load_system("h100-sxm").primary_device.main_memory.bandwidth_bytes_per_s


def test_system_upload_of_catalog_devices_equals_the_catalog_system() -> None:
    text = (DEVICES_DIR.parent / "systems" / "8x-h100-sxm.toml").read_bytes()
    system = parse_system_upload(text, "8x-h100-sxm.toml")
    assert system.device_count == load_system("8x-h100-sxm").device_count


@pytest.mark.parametrize(("text", "message"), [
    (b"[device\nname = 1", "not valid TOML"),
    (b'[other]\nx = 1\n', r"\[device\] or a \[system\]"),
    (b'[device]\nname = "x"\nextends = "../../secret"\n', "catalog device"),
    (b'[system]\nname = "s"\ndefault_mapper = "gpu"\n[[system.devices]]\ndevice = "/etc/passwd"\ncount = 1\n',
     "catalog device"),
])
def test_bad_system_uploads_are_refused_with_a_message(text: bytes, message: str) -> None:
    with pytest.raises(DecodexError, match=message):
        parse_system_upload(text, "bad.toml")


def test_uploaded_device_with_a_bad_field_names_file_and_field() -> None:
    text = b'[device]\nname = "slow"\nextends = "h100-sxm"\n[device.power]\ntdp_w = -5\n'
    with pytest.raises(SpecError, match=r"upload:slow.toml.*tdp_w"):
        parse_system_upload(text, "slow.toml")


# --- decodex app --------------------------------------------------------------------------------

def test_app_command_binds_localhost_by_default() -> None:
    args = build_parser().parse_args(["app", "--port", "8600"])
    assert (args.port, args.address) == (8600, "127.0.0.1")
    command = streamlit_command(args.port, args.address)
    assert command[command.index("--server.address") + 1] == "127.0.0.1"
    assert command[command.index("--server.port") + 1] == "8600"
    assert str(DASHBOARD) in command and DASHBOARD.is_file()


def test_app_command_hides_tracebacks_and_sets_the_sweeps_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from decodex.app import cli_app

    command = streamlit_command(8600, "127.0.0.1")
    assert command[command.index("--client.showErrorDetails") + 1] == "none"
    monkeypatch.setenv(cli_app.SWEEPS_ROOT_ENV, "restored after the test")
    started: list[list[str]] = []
    monkeypatch.setattr(cli_app, "run_server", lambda cmd: started.append(cmd) or 0)
    monkeypatch.setattr(cli_app, "check_address", lambda address, port: None)
    link = tmp_path / "link"
    link.symlink_to(tmp_path, target_is_directory=True)
    args = build_parser().parse_args(["app", "--sweeps-root", str(link)])
    assert cli_app.cmd_app(args) == 0 and started
    assert os.environ[cli_app.SWEEPS_ROOT_ENV] == str(tmp_path.resolve())
    for bad in (str(tmp_path / "missing"), str(link / "x.txt"), ""):
        (tmp_path / "x.txt").write_text("a file")
        with pytest.raises(ArgumentError, match="--sweeps-root"):
            cli_app.cmd_app(build_parser().parse_args(["app", "--sweeps-root", bad]))


def test_validation_notes_are_one_box_and_the_band_is_said() -> None:
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.sidebar.selectbox(key="design.system").set_value("h200").run()  # no H200 records: notes on the band
    expected = estimate("llama3-70b", "h200", 64, context=2048,
                        parallelism=choose_layout("llama3-70b", "h200", 64, context=2048).parallelism)
    assert len(expected.warnings) >= 2
    assert not at.info  # no stack of boxes
    notes = [e for e in at.main.expander if "validated" in e.label]
    assert len(notes) == 1 and notes[0].label.startswith(f"{len(expected.warnings)} notes")
    assert any(c.value.startswith("Measured step time likely in:") for c in at.caption)


def test_operator_table_shows_units_and_conserves_the_step() -> None:
    """The op table labels each quantity with its unit and one SI prefix per column, never raw
    bytes or seconds, and its per-step times still add up to the step."""
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    table = next(d.value for d in at.dataframe if "op" in d.value.columns)
    assert not {"flops", "bytes", "time_s", "total_time_s"} & set(table.columns)
    per_step = next(c for c in table.columns if c.startswith("time per step ("))
    scale = {"(s)": 1.0, "(ms)": 1e-3, "(µs)": 1e-6}[per_step[len("time per step "):]]
    expected = estimate("llama3-70b", "h100-sxm", 64, context=2048, parallelism=_auto("h100-sxm", 64))
    assert table[per_step].sum() * scale == pytest.approx(expected.ops["total_time_s"].sum(), rel=1e-9)
    assert any(c.startswith("bytes (") and c.endswith("B)") for c in table.columns)
    assert table["share (%)"].sum() == pytest.approx(100.0 * expected.ops["time_share"].sum(), rel=1e-9)
