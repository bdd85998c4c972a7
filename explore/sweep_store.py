"""A sweep's output directory: Parquet part files written as points finish, and a summary.

``DIR/space.json`` holds the declared space, ``DIR/parts/part-NNNNNN-XXXXXXXX.parquet`` the rows
(each part written to a temporary name and renamed, so a part is whole or absent), and
``DIR/summary.json`` what was run and how far it got. Rerunning a sweep into the same directory
skips the points whose ``point_id`` is already in a part: an interrupted sweep loses at most the
points in flight and never duplicates one.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

PARTS = "parts"


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


class SweepStore:
    """The files of one sweep directory (module docstring)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.parts = self.directory / PARTS
        self.parts.mkdir(parents=True, exist_ok=True)

    def part_files(self) -> list[Path]:
        """The finished part files, in the order they were written."""
        return sorted(self.parts.glob("part-*.parquet"))

    def finished_ids(self) -> set[str]:
        """``point_id`` of every point already written."""
        done: set[str] = set()
        for path in self.part_files():
            done.update(pq.read_table(path, columns=["point_id"]).column("point_id").to_pylist())
        return done

    def write_part(self, rows: Sequence[Mapping[str, Any]]) -> Path | None:
        """Write ``rows`` as one part file (atomically); None when there are none."""
        if not rows:
            return None
        number = len(self.part_files())
        final = self.parts / f"part-{number:06d}-{uuid.uuid4().hex[:8]}.parquet"
        temporary = final.with_suffix(".tmp")
        frame = pd.DataFrame(list(rows))
        for column in frame.columns:  # mixed-type inputs (e.g. a spec value) as text
            if frame[column].dtype == object and frame[column].map(type).nunique() > 1:
                frame[column] = frame[column].astype(str)
        frame.to_parquet(temporary, index=False)
        os.replace(temporary, final)
        return final

    def read(self, ids: Iterable[str] | None = None) -> pd.DataFrame:
        """All rows written (only those whose ``point_id`` is in ``ids`` when given)."""
        frames = [pd.read_parquet(p) for p in self.part_files()]
        frames = [f for f in frames if not f.empty]
        if not frames:
            return pd.DataFrame()
        frame = pd.concat(frames, ignore_index=True)
        if ids is not None:
            order = {pid: i for i, pid in enumerate(ids)}
            frame = frame[frame["point_id"].isin(order)]
            frame = frame.assign(_order=frame["point_id"].map(order)).sort_values("_order").drop(columns="_order")
        return frame.drop_duplicates("point_id").reset_index(drop=True)

    def read_json(self, name: str) -> dict[str, Any]:
        """The JSON file ``DIR/name`` ({} when absent)."""
        path = self.directory / name
        return json.loads(path.read_text()) if path.is_file() else {}

    def write_json(self, name: str, data: Mapping[str, Any]) -> Path:
        """Write ``data`` as ``DIR/name`` (atomically)."""
        path = self.directory / name
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(data, indent=2, default=_jsonable) + "\n")
        os.replace(temporary, path)
        return path
