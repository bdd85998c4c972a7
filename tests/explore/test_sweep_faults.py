"""Sweeps that survive faults: a point or a worker that fails is a row with its reason, bad parts are
skipped and recomputed, failed writes leave no temporary, read-only sweeps are read, a lock keeps
two runs apart, interrupts stop the workers, and time and memory are bounded."""

from __future__ import annotations

import errno
import fcntl
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import decodex.explore.chunk_runs as chunk_runs
import decodex.explore.dask_scheduler as dask_scheduler
import decodex.explore.points as points_module
import decodex.explore.sweep_memory as sweep_memory
import decodex.explore.sweep_store as sweep_store
from decodex.app.cli import main
from decodex.core.errors import ArgumentError, DecodexError
from decodex.core.run_limits import parse_bytes
from decodex.explore.points import evaluate_point
from decodex.explore.runner import run_sweep
from decodex.explore.sweep_memory import estimate_memory_bytes
from decodex.explore.sweep_space import load_space
from decodex.explore.sweep_store import (
    LOCK,
    RETRY_REASON,
    SweepDirError,
    SweepDirReadOnlyError,
    SweepPartWarning,
    SweepStore,
)

SPACE: dict[str, Any] = {"name": "faults", "fixed": {"model": "llama3-8b", "system": "h100-sxm"},
                         "axes": {"batch": [1, 2, 3, 4, 5, 6, 7, 8], "context": [128, 256]}}
ROWS = ["point_id", "batch", "context", "tpot_s", "tokens_per_s", "feasible", "reason"]
POISON = 5  # the batch of the points the tests make fail


def _write_space(path: Path, space: dict[str, Any], mode: str = "estimate") -> str:
    lines = ["[sweep]", f"name = {json.dumps(space['name'])}", f'mode = "{mode}"', "[sweep.fixed]",
             *(f"{k} = {json.dumps(v)}" for k, v in space["fixed"].items()), "[sweep.axes]",
             *(f"{k} = {json.dumps(v)}" for k, v in space["axes"].items())]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _rows(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[ROWS].reset_index(drop=True)


def _files(directory: Path) -> dict[str, tuple[int, bytes]]:
    """(mtime, bytes) of each file but the lock (whose holder writes its pid in it)."""
    return {str(p.relative_to(directory)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(directory.rglob("*")) if p.is_file() and p.name != LOCK}


@pytest.fixture(scope="module")
def whole() -> pd.DataFrame:
    """The rows of SPACE from an undisturbed run."""
    return run_sweep(SPACE)


# --- item 6: a bad point is a row --------------------------------------------------------------


@pytest.mark.parametrize("error", [ZeroDivisionError("float division by zero"), OverflowError("math range error"),
                                   AttributeError("'NoneType' object has no attribute 'x'"),
                                   RecursionError("maximum recursion depth exceeded"), MemoryError(),
                                   RuntimeError("simpy: event already triggered\nsecond line")])
def test_any_exception_of_a_point_is_its_row(monkeypatch: pytest.MonkeyPatch, error: Exception,
                                             whole: pd.DataFrame) -> None:
    step_row = points_module._step_row

    def failing(point: dict[str, Any], mode: str) -> dict[str, Any]:
        if point["batch"] == POISON:
            raise error
        return step_row(point, mode)

    monkeypatch.setattr(points_module, "_step_row", failing)
    frame = run_sweep(SPACE, vectorize=False)
    bad = frame["batch"] == POISON
    assert len(frame) == 16 and (~frame.loc[bad, "feasible"]).all()
    message = " ".join(str(error).split())
    expected = f"{type(error).__name__}: {message}" if message else type(error).__name__
    assert (frame.loc[bad, "reason"] == expected).all() and "\n" not in expected
    pd.testing.assert_frame_equal(_rows(frame[~bad]), _rows(whole[whole["batch"] != POISON]))


def test_an_interrupt_in_a_point_still_propagates(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(point: dict[str, Any], mode: str) -> dict[str, Any]:
        raise KeyboardInterrupt

    monkeypatch.setattr(points_module, "_step_row", interrupted)
    with pytest.raises(KeyboardInterrupt):
        evaluate_point({"model": "llama3-8b", "system": "h100-sxm"}, "simulate")


def test_a_failing_vectorized_group_falls_back_point_by_point(monkeypatch: pytest.MonkeyPatch,
                                                              whole: pd.DataFrame) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr("decodex.sim.vector_estimate.estimate_grid", broken)
    frame = run_sweep(SPACE)
    pd.testing.assert_frame_equal(_rows(frame), _rows(whole), check_exact=False, rtol=1e-9)


def test_a_chunk_that_raises_falls_back_and_its_failures_are_retried(tmp_path: Path, whole: pd.DataFrame,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def chunk_fails(chunk: list[dict[str, Any]], *args: Any) -> list[dict[str, Any]]:
        raise MemoryError("chunk too big")

    monkeypatch.setattr(chunk_runs, "run_chunk", chunk_fails)
    pd.testing.assert_frame_equal(_rows(run_sweep(SPACE)), _rows(whole), check_exact=False, rtol=1e-9)

    def point_fails(point: dict[str, Any], mode: str = "estimate") -> dict[str, Any]:
        if point["batch"] == POISON:
            raise OSError("cannot allocate")
        return evaluate_point(point, mode)

    monkeypatch.setattr(chunk_runs, "evaluate_point", point_fails)  # the per-point fallback fails too
    frame = run_sweep(SPACE, out=tmp_path, chunk_size=4, vectorize=False)
    bad = frame["reason"].str.startswith(RETRY_REASON)
    assert bad.sum() == 4 and (frame.loc[bad, "reason"] == f"{RETRY_REASON}OSError: cannot allocate").all()
    assert json.loads((tmp_path / "summary.json").read_text())["complete"]
    monkeypatch.undo()  # the fault is gone: a rerun retries only the failed chunk
    sizes: list[int] = []
    real = chunk_runs.run_chunk
    monkeypatch.setattr(chunk_runs, "run_chunk", lambda chunk, *a: sizes.append(len(chunk)) or real(chunk, *a))
    again = run_sweep(SPACE, out=tmp_path, chunk_size=4, vectorize=False)
    assert sizes == [4]
    pd.testing.assert_frame_equal(_rows(again), _rows(whole), check_exact=False, rtol=1e-9)


def _exit_on_poison(chunk: list[dict[str, Any]], *args: Any) -> list[dict[str, Any]]:
    if any(p["batch"] == POISON for p in chunk):
        os._exit(9)  # a worker process dies (killed, out of memory...)
    return chunk_runs.evaluate_points(chunk, *args)


@pytest.mark.skipif(multiprocessing.get_start_method() != "fork", reason="the poison is set up by forking")
def test_a_dying_worker_loses_only_its_chunk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             whole: pd.DataFrame) -> None:
    monkeypatch.setattr(chunk_runs, "run_chunk", _exit_on_poison)
    frame = run_sweep(SPACE, out=tmp_path, workers=2, chunk_size=2, vectorize=False)
    bad = frame["batch"] == POISON
    assert len(frame) == 16 and bad.sum() == 2
    assert frame.loc[bad, "reason"].str.startswith(f"{RETRY_REASON}a worker process died").all()
    pd.testing.assert_frame_equal(_rows(frame[~bad]), _rows(whole[~bad.to_numpy()]), check_exact=False, rtol=1e-9)
    assert set(SweepStore(tmp_path).finished_ids()) == set(frame.loc[~bad, "point_id"])  # the dead are retried
    monkeypatch.undo()
    pd.testing.assert_frame_equal(_rows(run_sweep(SPACE, out=tmp_path, workers=2, chunk_size=2)), _rows(whole),
                                  check_exact=False, rtol=1e-9)


# --- item 7: the directory survives faults --------------------------------------------------------


def _damage(parts: list[Path], directory: Path) -> dict[str, str]:
    """Four kinds of bad part: truncated, garbage, no point_id, another space's points."""
    parts[0].write_bytes(parts[0].read_bytes()[:200])
    parts[1].write_bytes(b"not parquet at all" * 10)
    pd.DataFrame({"batch": [1]}).to_parquet(directory / "parts" / "part-000097-noid0000.parquet")
    pd.DataFrame({"point_id": ["0123456789abcdef"], "batch": [1]}).to_parquet(
        directory / "parts" / "part-000098-foreign0.parquet")
    return {parts[0].name: "is not a readable Parquet file", parts[1].name: "is not a readable Parquet file",
            "part-000097-noid0000.parquet": "has no point_id column",
            "part-000098-foreign0.parquet": "holds points of another space"}


def test_bad_parts_are_reported_on_read_and_recomputed_on_resume(tmp_path: Path, whole: pd.DataFrame) -> None:
    run_sweep(SPACE, out=tmp_path, chunk_size=4, vectorize=False)
    store = SweepStore(tmp_path)
    problems = _damage(store.part_files(), tmp_path)
    before = _files(tmp_path)
    ids = list(whole["point_id"])
    with pytest.warns(SweepPartWarning) as caught:
        frame = SweepStore(tmp_path).read(ids)
    assert len(frame) == 8  # the two good parts of four points
    assert _files(tmp_path) == before  # reading moves and writes nothing
    messages = [str(w.message) for w in caught]
    for name, words in problems.items():
        line = next(m for m in messages if name in m)
        assert words in line and "skipped" in line and "\n" not in line
    sizes: list[int] = []
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        resumed = run_sweep(SPACE, out=tmp_path, chunk_size=4, vectorize=False,
                            on_part=lambda n: sizes.append(n))
    assert resumed.attrs["sweep"]["complete"] and len(resumed.attrs["sweep"]["problems"]) == 4
    assert all("moved to parts/corrupt/" in line for line in resumed.attrs["sweep"]["problems"])
    assert len(sizes) == 2  # two chunks: only the points of the two unreadable parts ran again
    pd.testing.assert_frame_equal(_rows(resumed), _rows(whole), check_exact=False, rtol=1e-9)
    assert sorted(p.name for p in (tmp_path / "parts" / "corrupt").iterdir()) == sorted(problems)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the directory is clean again
        assert len(SweepStore(tmp_path).read(ids)) == 16


def test_cli_prints_each_bad_part_on_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    space, out = _write_space(tmp_path / "s.toml", SPACE), tmp_path / "out"
    run_sweep(space, out=out, chunk_size=4)
    (out / "parts" / "part-000050-garbage0.parquet").write_bytes(b"garbage")
    assert main(["sweep", space, "--out", str(out), "-q"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("decodex: warning: ")
    assert "part-000050-garbage0.parquet: is not a readable Parquet file" in err[0]


def test_a_full_disk_leaves_no_temporary_and_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      whole: pd.DataFrame) -> None:
    written: list[str] = []
    real = sweep_store._write_bytes

    def full_disk(path: Path, data: bytes) -> None:
        if path.name.startswith("part-") and len(written) == 1:
            path.write_bytes(data[:len(data) // 2])  # half written, then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if path.name.startswith("part-"):
            written.append(path.name)
        real(path, data)

    monkeypatch.setattr(sweep_store, "_write_bytes", full_disk)
    with pytest.raises(SweepDirError) as refused:
        run_sweep(SPACE, out=tmp_path, workers=2, chunk_size=4, vectorize=False)
    message = str(refused.value)
    assert message.startswith(f"{tmp_path}: cannot write parts/part-000001-") and "\n" not in message
    assert "No space left on device [ENOSPC]" in message and "rerun to resume" in message
    assert not list(tmp_path.rglob("*.tmp"))
    assert len(SweepStore(tmp_path).part_files()) == 1
    monkeypatch.undo()
    pd.testing.assert_frame_equal(_rows(run_sweep(SPACE, out=tmp_path, chunk_size=4)), _rows(whole),
                                  check_exact=False, rtol=1e-9)


def test_temporaries_of_a_killed_run_are_removed_by_the_next(tmp_path: Path) -> None:
    run_sweep(SPACE, out=tmp_path, chunk_size=8)
    (tmp_path / "parts" / "part-000009-deadbeef.tmp").write_bytes(b"half")
    (tmp_path / "summary.tmp").write_text("{")
    run_sweep(SPACE, out=tmp_path, chunk_size=8)
    assert not list(tmp_path.rglob("*.tmp"))


def _read_only(monkeypatch: pytest.MonkeyPatch, lock_too: bool = True) -> None:
    """Every file the store would create or write fails: with EROFS (a read-only file system), or
    with EACCES for new files only, the lock file being there already (a directory chmod a-w; chmod
    does not stop root, so the tests fake it)."""
    code = errno.EROFS if lock_too else errno.EACCES
    real_open = os.open

    def open_read_only(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if lock_too and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(code, os.strerror(code), str(path))
        return real_open(path, flags, *args, **kwargs)

    def write_read_only(path: Path, data: bytes) -> None:
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr(sweep_store.os, "open", open_read_only)
    monkeypatch.setattr(sweep_store, "_write_bytes", write_read_only)


@pytest.mark.parametrize("lock_too", [True, False], ids=["read-only-fs", "no-write-permission"])
def test_a_finished_sweep_in_a_read_only_directory_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str], lock_too: bool) -> None:
    space = _write_space(tmp_path / "s.toml", SPACE)
    out = tmp_path / "out"
    written = run_sweep(space, out=out)
    before = _files(out)
    _read_only(monkeypatch, lock_too)
    pd.testing.assert_frame_equal(run_sweep(space, out=out), written)
    assert main(["sweep", space, "--out", str(out), "-q"]) == 0
    assert "16 points" in capsys.readouterr().out
    assert len(SweepStore(out).read()) == 16 and _files(out) == before
    if lock_too:  # (with permissions alone, --fresh would remove what it may: the parts folder is writable)
        with pytest.raises(SweepDirReadOnlyError, match="--fresh") as refused:
            run_sweep(space, out=out, fresh=True)
        assert "\n" not in str(refused.value) and _files(out) == before


def test_an_unfinished_sweep_in_a_read_only_directory_is_one_line(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(KeyboardInterrupt):
        run_sweep(SPACE, out=tmp_path, chunk_size=4, on_part=_stop_after(2))
    _read_only(monkeypatch)
    with pytest.raises(SweepDirReadOnlyError) as refused:
        run_sweep(SPACE, out=tmp_path)
    assert str(refused.value) == (f"{tmp_path} cannot be written (Read-only file system [EROFS]) and holds 8 of the "
                                  "16 points of this sweep: make it writable or use another --out")
    with pytest.raises(SweepDirReadOnlyError, match="does not hold this sweep"):
        run_sweep(SPACE, mode="serve", out=tmp_path)


def _stop_after(parts: int) -> Any:
    def stop(count: int) -> None:
        if count == parts:
            raise KeyboardInterrupt

    return stop


def test_an_empty_out_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ArgumentError, match=r"^--out \(out\): an empty path"):
        run_sweep(SPACE, out="")
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", _write_space(tmp_path / "s.toml", SPACE), "--out", ""])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and "--out: an empty path" in err


def test_a_second_run_into_a_locked_directory_is_refused(tmp_path: Path, whole: pd.DataFrame) -> None:
    run_sweep(SPACE, out=tmp_path, chunk_size=4)
    before = _files(tmp_path)
    with SweepStore(tmp_path).lock():
        for fresh in (False, True):  # --fresh removes nothing while another run holds the lock
            with pytest.raises(SweepDirError) as refused:
                run_sweep(SPACE, out=tmp_path, fresh=fresh)
            assert str(refused.value) == (f"{tmp_path} is in use: another run (pid {os.getpid()}) holds "
                                          f"{tmp_path / LOCK}; wait for it to end or use another --out")
        assert len(SweepStore(tmp_path).read()) == 16  # reading does not lock
    assert _files(tmp_path) == before
    assert len(run_sweep(SPACE, out=tmp_path, fresh=True)) == 16  # released


def test_the_lock_of_a_crashed_run_is_released(tmp_path: Path) -> None:
    tmp_path.joinpath(LOCK).touch()
    code = (f"import fcntl, os, time\nfd = os.open({str(tmp_path / LOCK)!r}, os.O_RDWR)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\nos.write(fd, b'%d' % os.getpid())\nprint('held', flush=True)\n"
            "time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(SweepDirError, match=rf"another run \(pid {holder.pid}\) holds"):
            run_sweep(SPACE, out=tmp_path)
    finally:
        holder.kill()  # a crash: nothing released by the holder itself
        holder.wait()
    assert len(run_sweep(SPACE, out=tmp_path)) == 16
    fd = os.open(tmp_path / LOCK, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released when the run ended
    finally:
        os.close(fd)


SLOW: dict[str, Any] = {"name": "slow", "fixed": {"model": "llama3-8b", "system": "h100-sxm", "dataset": "fixed",
                                                 "requests": 100},
                        "axes": {"rate": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], "max_batch": [4, 8, 16]}}
MANY: dict[str, Any] = {"name": "many", "fixed": {"model": "llama3-8b", "system": "h100-sxm"},
                        "axes": {"batch": list(range(1, 41)), "context": list(range(128, 40 * 128 + 1, 128))}}


def _cli_in_child(argv: list[str], err: str) -> None:
    """``decodex ARGV`` in a forked child (the modules are imported already), stderr to ``err``."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - the child ends with os._exit
    sys.stderr = open(err, "w", buffering=1)  # noqa: SIM115
    try:
        status = main(argv)
    except BaseException:  # any escape is a failure of the test
        status = 99
    sys.stderr.flush()
    os._exit(status)


@pytest.mark.skipif(multiprocessing.get_start_method() != "fork", reason="the CLI runs in a forked child")
@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_killing_a_sweep_stops_its_workers_and_keeps_its_parts(tmp_path: Path, signum: int, status: int,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    psutil = pytest.importorskip("psutil")
    space, out, err = _write_space(tmp_path / "many.toml", MANY, "simulate"), tmp_path / "out", tmp_path / "err"
    child = multiprocessing.get_context("fork").Process(
        target=_cli_in_child, args=(["sweep", space, "--out", str(out), "--workers", "2", "-q"], str(err)))
    child.start()
    try:
        end = time.monotonic() + 30
        while not list((out / "parts").glob("part-*.parquet")) and time.monotonic() < end and child.is_alive():
            time.sleep(0.02)
        workers = psutil.Process(child.pid).children(recursive=True)
        assert child.is_alive() and len(workers) == 2  # running, with its two worker processes
        assert child.pid is not None
        os.kill(child.pid, signum)
        child.join(5)
    finally:
        if child.is_alive():
            child.kill()
            child.join()
    assert child.exitcode == status
    text = err.read_text()
    assert text.count("\n") == 1 and text.endswith("the parts written so far are kept in "
                                                   f"{out}: rerun the same command to resume\n")
    _, alive = psutil.wait_procs(workers, timeout=3)
    assert not alive  # no worker outlives the sweep
    finished = len(SweepStore(out).finished_ids())
    assert finished >= 16 and finished % 16 == 0 and finished < 1600
    summary = json.loads((out / "summary.json").read_text())
    assert not summary["complete"] and summary["stopped"].startswith("interrupted")
    # a rerun resumes from those parts, taking the lock the killed run held (--time-limit 0: none runs)
    assert main(["sweep", space, "--out", str(out), "-q", "--time-limit", "0"]) == 3
    assert f"with {1600 - finished} of 1600 points left" in capsys.readouterr().err


# --- item 8: bounded time and memory --------------------------------------------------------------


def test_time_limit_stops_submitting_and_a_rerun_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str],
                                                         whole: pd.DataFrame) -> None:
    real = chunk_runs.run_chunk
    now = [0.0]

    def slow(chunk: list[dict[str, Any]], *args: Any) -> list[dict[str, Any]]:
        now[0] += 0.25  # each chunk takes 0.25 s of the deadline's clock
        return real(chunk, *args)

    monkeypatch.setattr(chunk_runs, "run_chunk", slow)
    monkeypatch.setattr(chunk_runs.Deadline, "clock", staticmethod(lambda: now[0]))
    frame = run_sweep(SPACE, out=tmp_path, chunk_size=4, vectorize=False, time_limit_s=0.4)
    state = frame.attrs["sweep"]
    assert len(frame) == 8 and state["left"] == 8 and not state["complete"]  # two chunks started in 0.4 s
    assert state["stopped"] == "time limit of 0.4 s reached"
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert not summary["complete"] and summary["left"] == 8 and summary["stopped"] == state["stopped"]
    space = _write_space(tmp_path / "s.toml", SPACE)
    assert main(["sweep", space, "--out", str(tmp_path / "cli"), "-q", "--time-limit", "0"]) == 3
    out, err = capsys.readouterr()
    assert "0 points" in out
    assert err == ("decodex: stopped: time limit of 0 s reached with 16 of 16 points left; rerun the same command "
                   "to resume\n")
    monkeypatch.undo()
    resumed = run_sweep(SPACE, out=tmp_path, chunk_size=4, time_limit_s=60)
    assert resumed.attrs["sweep"]["complete"] and resumed.attrs["sweep"]["stopped"] == ""
    pd.testing.assert_frame_equal(_rows(resumed), _rows(whole), check_exact=False, rtol=1e-9)


def test_time_limit_with_workers(tmp_path: Path) -> None:
    frame = run_sweep(SPACE, workers=2, chunk_size=2, time_limit_s=0)
    assert frame.empty and frame.attrs["sweep"]["left"] == 16


@pytest.mark.parametrize(("text", "value"), [("2G", 2e9), ("512M", 512e6), ("1.5GiB", 1.5 * 2**30), ("100", 100.0),
                                             ("8 gb", 8e9), ("64KiB", 65536.0), ("1e9", 1e9), (4096, 4096.0)])
def test_sizes_parse(text: str | int, value: float) -> None:
    assert parse_bytes(text) == value


@pytest.mark.parametrize("text", ["", "G", "2X", "-1G", "0", "nan", "1e40", "2 G B"])
def test_bad_sizes_are_one_line_naming_max_memory(text: str) -> None:
    with pytest.raises(ArgumentError, match=r"^--max-memory ") as refused:
        parse_bytes(text)
    assert "\n" not in str(refused.value)


def test_memory_estimate_grows_with_points_workers_and_requests() -> None:
    space = load_space(SPACE)
    base = estimate_memory_bytes(space)
    assert base == 16 * sweep_memory.ROW_BYTES["estimate"] + 16 * sweep_memory.ROW_BYTES["estimate"] + \
        sweep_memory.CHUNK_BYTES["estimate"]
    row, chunk = sweep_memory.ROW_BYTES["estimate"], sweep_memory.CHUNK_BYTES["estimate"]
    assert estimate_memory_bytes(space, workers=4, chunk_size=4) == \
        16 * row + 4 * (4 * row + chunk + sweep_memory.WORKER_BYTES)
    fixed = {k: v for k, v in SLOW["fixed"].items() if k != "requests"}
    few = estimate_memory_bytes({**SLOW, "fixed": {**fixed, "requests": 10}}, "serve")
    many = estimate_memory_bytes({**SLOW, "fixed": fixed, "axes": {**SLOW["axes"], "requests": [10, 5000]}}, "serve")
    assert many - few == pytest.approx(24 * sweep_memory.ROW_BYTES["serve"] + 4990 * sweep_memory.REQUEST_BYTES)
    assert estimate_memory_bytes({**SLOW, "fixed": fixed}, "serve") - few == pytest.approx(
        190 * sweep_memory.REQUEST_BYTES)  # serve's default of 200 requests


def test_a_sweep_above_max_memory_is_refused_up_front(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    huge = {"name": "huge", "fixed": {"model": "llama3-8b", "system": "h100-sxm"},
            "axes": {"batch": list(range(1, 2001)), "context": list(range(1, 2001)), "tp": [1, 2, 4, 8, 16]}}
    with pytest.raises(ArgumentError) as refused:
        run_sweep(huge, out=tmp_path / "huge", max_memory_bytes="8G")  # 20 M points: refused before making them
    message = str(refused.value)
    assert message.startswith("--max-memory (max_memory_bytes): this sweep needs about 50 GB (20,000,000 estimate "
                              "points, 1 worker(s)), above the limit of 8 GB") and "\n" not in message
    assert not (tmp_path / "huge").exists()
    space = _write_space(tmp_path / "s.toml", SPACE)
    assert main(["sweep", space, "--out", str(tmp_path / "o"), "--max-memory", "1M", "--workers", "4"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "above the limit of 1 MB" in err
    assert len(run_sweep(SPACE, max_memory_bytes=50e6)) == 16


def test_bad_scheduler_addresses_are_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("distributed")
    monkeypatch.setattr(dask_scheduler, "SCHEDULER_TIMEOUT_S", 1.0)
    for address, words in [("http://host:8786", "not a Dask scheduler address; give tcp://HOST:PORT"),
                           ("tcp://host", "missing port number"), ("tcp://host:99999", "outside [1, 65535]"),
                           ("tcp://127.0.0.1:1", "no Dask scheduler answered within 1 s (Connection refused")]:
        started = time.monotonic()
        with pytest.raises(ArgumentError) as refused:
            run_sweep(SPACE, scheduler=address)
        message = str(refused.value)
        assert message.startswith(f"--scheduler {address!r}: ") and words in message and "\n" not in message
        assert time.monotonic() - started < 3
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "nonsense")
    with pytest.raises(ArgumentError, match=r"^--scheduler \(\$DASK_SCHEDULER_ADDRESS\) 'nonsense'"):
        run_sweep(SPACE)


def test_progress_is_on_stderr_and_quiet_turns_it_off(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    space = _write_space(tmp_path / "s.toml", SPACE)
    assert main(["sweep", space, "--out", str(tmp_path / "a")]) == 0
    out, err = capsys.readouterr()
    assert "16/16" in err and "16/16" not in out and "16 points" in out
    assert main(["sweep", space, "--out", str(tmp_path / "b"), "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_errors_of_the_store_are_decodex_errors() -> None:
    assert issubclass(SweepDirReadOnlyError, SweepDirError) and issubclass(SweepDirError, DecodexError)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="chmod does not stop root's writes")
def test_a_finished_sweep_in_a_chmod_read_only_directory_is_read(tmp_path: Path) -> None:
    out = tmp_path / "out"
    written = run_sweep(SPACE, out=out)
    before = _files(out)
    folders = [out, out / "parts"]
    for folder in folders:
        folder.chmod(0o555)
    try:
        pd.testing.assert_frame_equal(run_sweep(SPACE, out=out), written)
        assert len(SweepStore(out).read()) == 16
        with pytest.raises(SweepDirError, match="holds a sweep of mode estimate; this run asks simulate"):
            run_sweep(SPACE, mode="simulate", out=out)  # refused before anything is written
    finally:
        for folder in folders:
            folder.chmod(0o755)
    assert _files(out) == before
