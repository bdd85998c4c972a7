"""Measured records: one file pair per run under ``validation/records/<device>/``.

``<run_id>.csv`` holds one row per case (``kernel``, ``op_kind``, ``shape``, ``dtype``, ``flops``,
``bytes``, ``measured_s``, ``predicted_s``, ``error``); ``<run_id>.json`` holds the machine
(CPU or GPU model, cores, memory, clocks, driver, library versions, date). Keyed by device and
run on disk (AIConfigurator style); a run never edits another run's files.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from decodex.core.errors import DecodexError

if TYPE_CHECKING:
    import pandas as pd

RECORDS_DIR = Path(__file__).resolve().parent / "records"
records_written = 0  # records written by this process (write_record); validation.bands.band_table reads it
STEP_KINDS = ("e2e",)
"""Record kinds that hold whole decode steps (``validation/e2e_decode.py``), not kernel or operator cases."""
CASE_COLUMNS = ("kernel", "op_kind", "shape", "dtype", "flops", "bytes", "measured_s", "predicted_s", "error")


def relative_errors(measured_s: np.ndarray, predicted_s: np.ndarray) -> np.ndarray:
    """Signed relative errors predicted / measured - 1 (dimensionless)."""
    measured = np.asarray(measured_s, dtype=float)
    return np.asarray(predicted_s, dtype=float) / measured - 1.0


def mape(measured_s: np.ndarray, predicted_s: np.ndarray) -> float:
    """Mean absolute percentage error as a fraction: mean |predicted / measured - 1|."""
    errors = relative_errors(measured_s, predicted_s)
    return float(np.mean(np.abs(errors))) if errors.size else float("nan")


def error_summary(frame: pd.DataFrame, by: tuple[str, str] = ("device", "op_kind")) -> dict[str, dict[str, Any]]:
    """``{device: {op_kind: {"mape", "max_error", "n"}}}`` from a frame with measured/predicted columns."""
    out: dict[str, dict[str, Any]] = {}
    for (device, kind), group in frame.groupby(list(by), sort=True):
        errors = np.abs(relative_errors(group["measured_s"].to_numpy(), group["predicted_s"].to_numpy()))
        out.setdefault(str(device), {})[str(kind)] = {
            "mape": float(errors.mean()), "max_error": float(errors.max()), "n": int(errors.size)}
    return out


def _atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file; a folder that cannot be written (an
    installed package in a read-only site-packages) raises RecordWriteError, one line."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except OSError as err:
        raise RecordWriteError(f"cannot write the record {path}: {err.strerror or err}; "
                               "run with --no-write, or from a writable install or checkout") from None


class RecordWriteError(DecodexError):
    """A record could not be written (the records folder is not writable)."""


def write_record(device: str, machine: Mapping[str, Any], cases: pd.DataFrame, *, kind: str,
                 root: Path = RECORDS_DIR, run_id: str | None = None) -> Path:
    """Write a run's cases (CSV: ``CASE_COLUMNS`` first, then any other columns but ``device``)
    and machine (JSON) under ``root/<device>/``; returns the CSV path.

    ``kind`` names the validation (``cpu``, ``gpu``, ``external``); the run id is
    ``<kind>-<UTC timestamp>`` unless given. Files are written atomically.
    """
    missing = [c for c in CASE_COLUMNS if c not in cases.columns]
    if missing:
        raise ValueError(f"record cases lack columns {missing}")
    run_id = run_id or f"{kind}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"
    base = root / device / run_id
    columns = list(CASE_COLUMNS) + [c for c in cases.columns if c not in CASE_COLUMNS and c != "device"]
    _atomic_write(base.with_suffix(".csv"), cases.loc[:, columns].to_csv(index=False))
    meta = {"device": device, "kind": kind, "run_id": run_id, **machine}
    _atomic_write(base.with_suffix(".json"), json.dumps(meta, indent=2, default=str) + "\n")
    global records_written
    records_written += 1  # this process's error bands read the records again at once (validation.bands)
    return base.with_suffix(".csv")


def record_files(root: Path = RECORDS_DIR, device: str | None = None) -> list[tuple[Path, dict[str, Any]]]:
    """The case records under ``root`` (or one device's) with their JSON: ``(csv path, meta)``,
    sorted; a CSV without its JSON and records of whole steps (``STEP_KINDS``) are left out."""
    out = []
    for path in sorted(root.glob(f"{device}/*.csv" if device else "*/*.csv")):
        meta_path = path.with_suffix(".json")
        if not meta_path.is_file():
            continue
        meta = json.loads(meta_path.read_text())
        if meta.get("kind") in STEP_KINDS:
            continue  # whole steps, not cases: validation/e2e_decode.py reads them
        out.append((path, meta))
    return out


BAND_FIELDS = ("op_kind", "dtype", "flops", "bytes", "measured_s", "predicted_s")
"""The case columns the error bands read."""


def load_band_columns(root: Path = RECORDS_DIR) -> dict[str, np.ndarray]:
    """Every case under ``root`` as columns: ``BAND_FIELDS`` (numbers as float arrays, text as
    object arrays, a missing dtype as ``""``) plus ``device``, ``device_kind`` and ``kind``, read
    with the ``csv`` module so that the error bands of a CLI estimate need no pandas. Same cases
    and defaults as :func:`load_records`."""
    import csv

    columns: dict[str, list[Any]] = {key: [] for key in (*BAND_FIELDS, "device", "device_kind", "kind")}
    for path, meta in record_files(root):
        with path.open(newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, [])
            cases = list(reader)
        where = {name: i for i, name in enumerate(header)}
        for key in BAND_FIELDS:
            columns[key].extend(case[where[key]] if key in where else "" for case in cases)
        for key, default in (("device", meta.get("device", path.parent.name)),
                             ("device_kind", meta.get("device_kind", "gpu"))):
            columns[key].extend((case[where[key]] or default) if key in where else default for case in cases)
        columns["kind"].extend([meta.get("kind", "")] * len(cases))
    text = ("op_kind", "dtype", "device", "device_kind", "kind")
    return {key: np.array(values, dtype=object if key in text else float) for key, values in columns.items()}


def load_records(root: Path = RECORDS_DIR, device: str | None = None) -> pd.DataFrame:
    """All record cases under ``root`` (or one device's), with ``device``, ``kind`` and ``run_id``;
    records of whole steps (``STEP_KINDS``) are left out."""
    import pandas as pd

    frames = []
    for path, meta in record_files(root, device):
        frame = pd.read_csv(path)
        if "device" not in frame.columns:
            frame["device"] = meta.get("device", path.parent.name)
        frame["kind"] = meta.get("kind", "")
        if "device_kind" not in frame.columns:
            frame["device_kind"] = meta.get("device_kind", "gpu")
        frame["run_id"] = meta.get("run_id", path.stem)
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=[*CASE_COLUMNS, "device", "device_kind", "kind", "run_id"])
    return pd.concat(frames, ignore_index=True)
