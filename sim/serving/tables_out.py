"""Write a serving run's tables to a folder: one Parquet file per table and ``summary.json``.

Used by ``decodex serve --out DIR`` for a replica (``requests``, ``iterations``) or a cluster
(``requests`` with a ``replica`` column, ``replicas``). Each file is written to a temporary name
beside its target and renamed into place, so an interrupted run never leaves half a file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from decodex.core.errors import ArgumentError

if TYPE_CHECKING:
    import pandas as pd


def _replace(path: Path, write: Any) -> None:
    temporary = path.with_name(f".{path.name}.part")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_tables(out_dir: str | Path, tables: Mapping[str, pd.DataFrame], summary: Mapping[str, Any]) -> list[Path]:
    """Write ``tables`` as ``<name>.parquet`` and ``summary`` as ``summary.json`` into ``out_dir``
    (created if missing); returns the paths written. Times in the tables are seconds, lengths
    tokens, energies joules, as the results report them."""
    folder = Path(out_dir)
    if folder.exists() and not folder.is_dir():
        raise ArgumentError(f"--out: {folder} exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, frame in tables.items():
        path = folder / f"{name}.parquet"
        _replace(path, lambda target, frame=frame: frame.to_parquet(target, index=False))
        written.append(path)
    path = folder / "summary.json"
    _replace(path, lambda target: target.write_text(json.dumps(summary, indent=2, default=float) + "\n"))
    written.append(path)
    return written
