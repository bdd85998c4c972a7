"""``decodex validate external``: Decodex's GPU specs against Vidur's measured operator timings.

The data (microsoft/vidur ``data/profiling``, MIT, shipped as ``decodex/validation/data/
vidur-profiling``) are kernel times measured on A100 and H100 GPUs: the per-layer operators of a
decoder layer at ``num_tokens`` tokens and ``tp`` tensor-parallel shards, and NCCL all-reduce /
send-recv. The job is split by module:

- validation/external_data.py: finding the data folder and loading the files (ms -> s);
- validation/external_ops.py: each measured operator as the Decodex op it stands for;
- validation/external_compare.py: predicted against measured per case, and the summary;
- validation/external_fit.py, gpu_fit.py, device_fit_writer.py: fitting the GPU efficiency data
  on the A100 files (the H100 files stay held out), transferring it to the other NVIDIA specs,
  writing it into the device TOML files;
- this module: :func:`run_external` and the committed records (:func:`write_external_records`).

Method and results: docs/validation-external.md. Units: s, bytes, FLOP.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from decodex.validation import records
from decodex.validation.external_compare import compare, summary
from decodex.validation.external_data import (
    DATA_ENV,
    VIDUR_SOURCE,
    data_available,
    find_data_dir,
    load_compute,
    load_network,
)
from decodex.validation.external_fit import fit_gpu_efficiency
from decodex.validation.external_ops import ops_for_row

__all__ = [
    "DATA_ENV", "RECORD_COLUMNS", "RECORD_ROWS_PER_KIND", "compare", "data_available", "find_data_dir",
    "fit_gpu_efficiency", "load_compute", "load_network", "ops_for_row", "run_external", "summary",
    "write_external_records",
]

RECORD_COLUMNS = ("gpu", "device", "role", "kind", "op_kind", "op", "kernel", "model", "shape",
                  "num_tokens", "tp", "num_workers", "dtype", "flops", "bytes", "measured_s", "predicted_s", "error")
RECORD_ROWS_PER_KIND = 2000  # rows kept per (device, op kind) in the committed record


def run_external(data_dir: str | Path | None = None, sample: int | None = None) -> tuple[pd.DataFrame, dict]:
    """The comparison (:func:`compare`, times in s) with the catalog specs and its :func:`summary`
    (MAPE and max |error| as fractions); ``sample``: at most this many rows per (gpu, kind)."""
    frame = compare(data_dir, sample)
    return frame, summary(frame)


def write_external_records(frame: pd.DataFrame, root: Path = records.RECORDS_DIR,
                           rows_per_kind: int = RECORD_ROWS_PER_KIND, seed: int = 0) -> list[Path]:
    """Write a :func:`compare` frame (times in s) as one record per device (``<root>/<device>/
    external-vidur-<date>.csv`` + ``.json``), keeping a seeded sample of at most ``rows_per_kind``
    rows per op kind so that the committed records stay small; the error bands read them."""
    date = datetime.now(UTC).strftime("%Y%m%d")
    paths = []
    for device, group in frame.groupby("device"):
        parts = [g.sample(n=min(len(g), rows_per_kind), random_state=seed) for _, g in group.groupby("kind")]
        cases = pd.concat(parts).assign(op_kind=lambda f: f["kind"], kernel=lambda f: f["op"])
        machine = {"device_kind": "gpu", "gpu": str(group["gpu"].iloc[0]), "role": str(group["role"].iloc[0]),
                   "source": f"{VIDUR_SOURCE}: PyTorch/NCCL timings",
                   "rows_in_comparison": len(group), "rows_kept": len(cases),
                   "date": datetime.now(UTC).isoformat(timespec="seconds")}
        paths.append(records.write_record(str(device), machine, cases, kind="external", root=root,
                                          run_id=f"external-vidur-{date}"))
    return paths
