"""Every bad input a user can type or upload ends in one error message on the page, never a
traceback or a server path (app/dashboard/guard.py); sweep directories open only under the
sweeps root (app/dashboard/untrusted.py); each point's size is bounded (app/dashboard/limits.py).

The page tests drive the views with Streamlit's AppTest, several inputs per page run (each run
costs about a second), and check each time: no exception element, an error element, and no
"Traceback", no path of the repository, of site-packages or of ``tmp_path`` in its text.
"""

from __future__ import annotations

import json
import os
import site
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from decodex.app.dashboard import charts, design
from decodex.app.dashboard.design import DesignPoint
from decodex.app.dashboard.guard import internal_message, page_errors, scrub_paths, user_message
from decodex.app.dashboard.limits import (
    MAX_BATCH,
    MAX_BATCH_TOKENS,
    MAX_CONTEXT,
    MAX_PP,
    MAX_SERVE_ITERATIONS,
    MAX_SERVE_LENGTH,
    MAX_SERVE_REQUESTS,
    MAX_SIMULATE_PIPELINE,
    MAX_TP,
    check_serve_size,
    check_simulate_size,
    check_space_sizes,
    check_step_size,
)
from decodex.app.dashboard.serving_charts import ServingPoint
from decodex.app.dashboard.sweep_view import parse_space_bytes
from decodex.app.dashboard.untrusted import SWEEPS_ROOT_ENV, UntrustedInputError, check_sweep_dir
from decodex.core.errors import ArgumentError, DecodexError
from decodex.examples import list_examples
from decodex.explore.runner import run_sweep
from decodex.explore.sweep_space import load_space
from decodex.workloads.catalog import CATALOG_DIR

ROOT = Path(__file__).resolve().parents[3]
VIEWS = ROOT / "app/dashboard/views"
MAIN = str(ROOT / "app/dashboard/main.py")
SERVER_PATHS = [str(ROOT.parent) + os.sep, str(ROOT), "site-packages", sys.prefix, *site.getsitepackages()]
PASTE = "Paste or upload a space TOML"
FIXED = 'model = "llama3-8b"\nsystem = "h100-sxm"'


def _page(name: str) -> AppTest:
    at = AppTest.from_file(str(VIEWS / name), default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _one_clean_error(at: AppTest, *also_absent: str) -> str:
    """The page shows no exception and one error at least, none with a traceback or a server
    path; returns the errors' text."""
    assert not at.exception, [e.value for e in at.exception]
    texts = [e.value for e in at.error]
    assert texts, "an error message must be shown"
    for text in texts:
        for bad in ("Traceback", 'File "', *SERVER_PATHS, *also_absent):
            assert bad not in text, (bad, text)
    return " | ".join(texts)


def _space(fixed: str = FIXED, axes: str = "", head: str = "") -> str:
    return f"[sweep]\nname = \"probe\"\n{head}\n[sweep.fixed]\n{fixed}\n[sweep.axes]\n{axes}\n"


# --- the page frame: one message for any error ------------------------------------------------------

def test_pasted_spaces_of_every_kind_of_bad_input_are_one_message(tmp_path: Path) -> None:
    cases = [
        ("[sweep\nname = ", "not valid TOML"),
        ("[sweep]\nx = " + "[" * 5000 + "]" * 5000, "nest more than"),
        ("[" + ".".join(["t"] * 3000) + "]\nx = 1", "nest more than"),
        (_space(f"{FIXED}\nbatch = {10**6}"), f"sweep.fixed.batch = 1,000,000 is outside [1, {MAX_BATCH:,}]"),
        (_space(FIXED, f"context = [1024, {10**9}]"), "sweep.axes.context"),
        (_space(f"{FIXED}\nrequests = {10**8}", head='mode = "serve"'), "sweep.fixed.requests"),
        (_space(f"{FIXED}\nbatch = " + "9" * 5000), "digits"),
        (_space(f"{FIXED}\nbatch = inf"), "whole number"),
        (_space(f"{FIXED}\nbatch = 4096\ncontext = 1048576"), "cached tokens is more than"),
        (_space('model = "/etc/passwd"\nsystem = "h100-sxm"'), "not a catalog model"),
        (_space('model = "llama3-8b"\nsystem = "../../../etc/passwd"'), "not a catalog system"),
        (_space(head='mode = "simulate"', fixed=f"{FIXED}\npp = 64\nbatch = 64"), "micro-batches"),
        (_space(head=f'out = "{tmp_path}"'), "sweep.out: unknown field"),
    ]
    at = _page("sweep_explorer.py")
    at.radio(key="sweep.space_kind").set_value(PASTE).run()
    for text, expected in cases:
        at.text_area(key="sweep.toml_text").input(text).run()
        shown = _one_clean_error(at, str(tmp_path))
        assert expected in shown, (text[:80], shown)
        assert not any(b.key == "sweep.run" for b in at.button)
    # an uploaded file: not UTF-8, then too deep
    uploader = at.file_uploader(key="sweep.toml_file")
    uploader.set_value(("space.toml", b"\xff\xfe[sweep]\x00\x81", "application/toml")).run()
    assert "not a UTF-8 text file" in _one_clean_error(at)
    at.file_uploader(key="sweep.toml_file").set_value(("deep.toml", b"a = " + b"{b = " * 3000, "text/plain")).run()
    assert "deep.toml" in _one_clean_error(at)


def test_design_point_uploads_and_sizes_are_one_message(tmp_path: Path) -> None:
    config = json.loads((CATALOG_DIR / "llama3-8b.json").read_text())
    at = _page("design_point.py")
    model_cases = [
        (b"\x89PNG\r\n\x1a\n\x00\x00", "not a UTF-8 text file"),
        (b"{not json", "not valid JSON"),
        (b"[" * 5000 + b"]" * 5000, "nest more than"),
        (json.dumps({**config, "hidden_size": 10**30}).encode(), "hidden_size"),
        (json.dumps({**config, "num_hidden_layers": 10**9}).encode(), "num_hidden_layers"),
    ]
    for data, expected in model_cases:
        at.file_uploader(key="design.model_file").set_value(("config.json", data, "application/json")).run()
        shown = _one_clean_error(at, str(tmp_path))
        assert expected in shown, shown
    at.file_uploader(key="design.model_file").set_value(None).run()
    system_cases = [
        (b'[device]\nname = "x"\nextends = "/etc/passwd"\n', "not a catalog device"),
        (f'[device]\nname = "x"\nextends = "{tmp_path}/evil"\n'.encode(), "not a catalog device"),
        (b"[device\n", "not valid TOML"),
        (b'[device]\nname = "x"\nextends = "h100-sxm"\n[device.power]\ntdp_w = 1e308\n', "tdp_w"),
    ]
    for data, expected in system_cases:
        at.file_uploader(key="design.system_file").set_value(("spec.toml", data, "text/plain")).run()
        shown = _one_clean_error(at)
        assert expected in shown, shown
    at.file_uploader(key="design.system_file").set_value(None).run()
    assert not at.error and at.metric  # back to a valid point
    at.sidebar.number_input(key="design.batch").set_value(MAX_BATCH).run()
    at.sidebar.number_input(key="design.context").set_value(MAX_CONTEXT).run()
    assert "cached tokens is more than" in _one_clean_error(at)
    assert not at.metric


def test_a_bug_is_an_internal_error_line_without_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A function the page calls raises an unexpected exception whose message holds server paths:
    the page shows its type and scrubbed message, asks to report it, and keeps no traceback."""
    def boom(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError(f"division by zero reading {tmp_path}/secret/plan.toml from {ROOT}/sim/estimate.py "
                                f"in {site.getsitepackages()[0]}/numpy/core.py")

    monkeypatch.setattr(charts, "op_breakdown_figure", boom)
    at = _page("design_point.py")
    shown = _one_clean_error(at, str(tmp_path))
    assert "Internal error: ZeroDivisionError: division by zero reading" in shown
    assert "plan.toml" in shown and "report" in shown
    assert at.metric, "what ran before the error is still shown"
    # through the page frame (st.navigation) too, with the error raised earlier
    monkeypatch.setattr(design, "cached_estimate", boom)
    at = AppTest.from_file(MAIN, default_timeout=120).run()
    shown = _one_clean_error(at, str(tmp_path))
    assert "Internal error: ZeroDivisionError" in shown and not at.metric


def test_streamlit_control_flow_passes_through_the_guard() -> None:
    """st.stop inside the guard still stops the page (the guard catches Exception only)."""
    at = AppTest.from_string("""
import streamlit as st
from decodex.app.dashboard.guard import page_errors
with page_errors():
    st.write("before")
    if not st.session_state.get("go"):
        st.stop()
    st.write("after")
""").run()
    assert not at.exception and not at.error
    assert [m.value for m in at.markdown] == ["before"]


def test_messages_are_scrubbed_of_server_paths(tmp_path: Path) -> None:
    err = OSError(f"cannot read {tmp_path}/a/b.toml or {ROOT}/hw_models/x.toml or {Path.home()}/.ssh/id_rsa")
    message = internal_message(err)
    assert message.startswith("Internal error: OSError: cannot read ") and "/a/b.toml or <decodex>/hw_models/x.toml" \
        in message and "~/.ssh/id_rsa" in message
    assert internal_message(KeyError("/srv/secret/data/file.csv")) == "Internal error: KeyError: '.../file.csv'"
    for bad in (str(tmp_path), str(ROOT), str(Path.home()) + "/"):
        assert bad not in message
    assert "\n" not in internal_message(ValueError("two\nlines"))
    assert user_message(DecodexError(f"{ROOT}/workloads/x.json: bad")) == "<decodex>/workloads/x.json: bad"
    assert scrub_paths("see https://ui.perfetto.dev/a/b, 1/2 of w/o") == "see https://ui.perfetto.dev/a/b, 1/2 of w/o"
    with pytest.raises(KeyboardInterrupt), page_errors():  # not an Exception: never swallowed
        raise KeyboardInterrupt


# --- sweep directories under the root only ----------------------------------------------------------

@pytest.fixture
def sweeps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A sweeps root holding one small sweep; the same sweep outside it; links out of the root."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    tiny = {"sweep": {"name": "tiny", "fixed": {"model": "llama3-8b", "system": "h100-sxm"},
                      "axes": {"batch": [1, 8]}}}
    run_sweep(tiny, out=root / "runs" / "tiny", chunk_size=1)
    run_sweep(tiny, out=outside / "tiny", chunk_size=1)
    (root / "link-out").symlink_to(outside / "tiny")
    (root / "link-in").symlink_to(root / "runs" / "tiny")
    monkeypatch.setenv(SWEEPS_ROOT_ENV, str(root))
    return {"root": root, "outside": outside}


def test_sweep_directories_open_under_the_root_only(sweeps: dict[str, Path], tmp_path: Path) -> None:
    root, outside = sweeps["root"], sweeps["outside"]
    refused = [str(outside / "tiny"), str(outside / "missing"), "../outside/tiny", "../outside/missing",
               "runs/../../outside/tiny", "link-out", "/etc", "/etc/passwd", "/"]
    at = _page("sweep_explorer.py")
    at.radio(key="sweep.source").set_value("Open a sweep directory").run()
    messages = set()
    for path in refused:
        at.text_input(key="sweep.dir").input(path).run()
        messages.add(_one_clean_error(at, str(tmp_path)))
        assert not at.metric
    assert len(messages) == 1, messages  # the same line whether the path exists or not
    assert "under the sweeps root" in messages.pop()
    for path in ("runs/tiny", "link-in", str(root / "runs" / "tiny"), "runs/./x/../tiny"):
        at.text_input(key="sweep.dir").input(path).run()
        assert not at.exception and not at.error, [e.value for e in at.error]
        assert {m.label: m.value for m in at.metric}["Points"] == "2"
        assert str(tmp_path) not in " ".join(c.value for c in at.caption)  # shown relative to the root
    at.text_input(key="sweep.dir").input("runs/none").run()
    assert "runs/none: no such directory" in _one_clean_error(at, str(tmp_path))
    at.text_input(key="sweep.dir").input("~").run()  # not the server's home: a name under the root
    assert "~: no such directory" in _one_clean_error(at, str(tmp_path))


def test_a_root_that_is_not_a_directory_is_one_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SWEEPS_ROOT_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(UntrustedInputError, match=f"sweeps root \\({SWEEPS_ROOT_ENV}\\) is not a directory") as info:
        check_sweep_dir("runs")
    assert str(tmp_path) not in str(info.value)
    with pytest.raises(UntrustedInputError, match="give the DIR"):
        check_sweep_dir("  ", tmp_path)
    with pytest.raises(UntrustedInputError, match="not a path"):
        check_sweep_dir("a\x00b", tmp_path)
    monkeypatch.delenv(SWEEPS_ROOT_ENV)
    monkeypatch.chdir(tmp_path)  # the default root: the working directory
    (tmp_path / "runs").mkdir()
    assert check_sweep_dir("runs") == (tmp_path.resolve() / "runs", "runs")


# --- per-point size bounds: one test per bound ----------------------------------------------------

def test_batch_and_context_bounds() -> None:
    check_step_size(MAX_BATCH, MAX_BATCH_TOKENS // MAX_BATCH)
    with pytest.raises(ArgumentError, match=r"^batch = 1,000,000 is outside \[1, 4,096\]"):
        check_step_size(10**6, 1024)
    with pytest.raises(ArgumentError, match=r"^context = 1,000,000,000 is outside \[0, 1,048,576\]"):
        check_step_size(8, 10**9)
    with pytest.raises(ArgumentError, match=r"^batch = 0 is outside \[1, 4,096\] here$"):
        check_step_size(0, 10)
    for bad in (1.5, float("nan"), float("inf"), "64", True, None):
        with pytest.raises(ArgumentError, match=r"batch = .* must be a whole number"):
            check_step_size(bad, 10)


def test_batch_tokens_bound() -> None:
    with pytest.raises(ArgumentError, match=f"batch x context = 4,096 x 1,048,576 .* {MAX_BATCH_TOKENS:,} tokens"):
        check_step_size(MAX_BATCH, MAX_CONTEXT)
    with pytest.raises(ArgumentError, match="cached tokens is more than"):
        DesignPoint(batch=MAX_BATCH, context=MAX_CONTEXT).check_size()
    DesignPoint(batch=128, context=MAX_CONTEXT).check_size()


def test_parallel_degree_bounds() -> None:
    with pytest.raises(ArgumentError, match=f"tp = 2,048 is outside \\[1, {MAX_TP:,}\\]"):
        check_step_size(1, 1, tp=2048)
    with pytest.raises(ArgumentError, match=f"pp = 512 is outside \\[1, {MAX_PP}\\]"):
        check_step_size(1, 1, pp=512)


def test_simulate_pipeline_bound() -> None:
    check_simulate_size(256, 32)  # 32 stages x 32 micro-batches: the limit
    with pytest.raises(ArgumentError, match=f"pp x micro-batches = 64 x 64 = 4,096 .* {MAX_SIMULATE_PIPELINE:,}"):
        check_simulate_size(256, 64)
    check_simulate_size(256, 64, microbatches=16)
    with pytest.raises(ArgumentError, match="micro-batches"):
        DesignPoint(pp=64, batch=256).check_size(simulated=True)
    DesignPoint(pp=64, batch=256).check_size()  # the analytical estimate is not bounded by it


def test_serve_request_bound() -> None:
    with pytest.raises(ArgumentError, match=f"^requests = 100,000,000 is outside \\[1, {MAX_SERVE_REQUESTS:,}\\]"):
        check_serve_size(10**8)
    with pytest.raises(ArgumentError, match="requests"):
        ServingPoint(requests=10**8).run()  # refused before the model is read or a request drawn


def test_serve_length_and_iteration_bounds() -> None:
    with pytest.raises(ArgumentError, match=f"output_len = 2,000,000 is outside \\[1, {MAX_SERVE_LENGTH:,}\\]"):
        check_serve_size(10, output_len=2 * 10**6)
    with pytest.raises(ArgumentError, match=f"more than the {MAX_SERVE_ITERATIONS:,}"):
        check_serve_size(5000, "sharegpt", output_len=10_000)  # 50 M tokens, one iteration each at low load
    with pytest.raises(ArgumentError, match="prefill chunks"):
        check_serve_size(5000, "sharegpt-long", scheduler="chunked", chunk=1)
    check_serve_size(5000, "sharegpt-long", scheduler="chunked", chunk=512)  # the page's largest runs stay allowed
    check_serve_size(5000, "sharegpt")
    check_serve_size(ServingPoint().requests)


def test_sweep_space_bounds() -> None:
    for path in list_examples().values():  # every example space is within the bounds
        parse_space_bytes(path.read_bytes(), path.name)
    space = load_space({"fixed": {"model": "llama3-8b", "system": "h100-sxm"},
                        "axes": {"batch": {"low": 1, "high": 10**6, "integer": True}}, "sampling": "random"})
    with pytest.raises(ArgumentError, match=r"sweep\.axes\.batch = 1,000,000"):
        check_space_sizes(space)  # a range is checked by its high end
    serve = load_space({"mode": "serve", "fixed": {"model": "llama3-8b", "system": "h100-sxm", "requests": 5000},
                        "axes": {"output_len": [100, 5000]}})
    with pytest.raises(ArgumentError, match="iterations"):
        check_space_sizes(serve)


def test_serving_page_refuses_a_run_too_big() -> None:
    at = _page("serving.py")
    at.number_input(key="serving.output_len").set_value(MAX_SERVE_LENGTH).run()  # 200 requests of 1 M tokens
    shown = _one_clean_error(at)
    assert "200 requests of about 1,000,000 output tokens" in shown and "iterations" in shown
    assert not at.metric


def test_untouched_paths_stay_untouched(sweeps: dict[str, Path]) -> None:
    """A refused sweep directory is not created or changed (and the check works on os paths)."""
    before = sorted(os.listdir(sweeps["outside"]))
    with pytest.raises(UntrustedInputError):
        check_sweep_dir(str(sweeps["outside"] / "new"))
    assert sorted(os.listdir(sweeps["outside"])) == before
