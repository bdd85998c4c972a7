"""A sweep's output directory: its identity, Parquet part files written as points finish, and a summary.

Files (every one written to a temporary name and renamed, so each is whole or absent):

- ``DIR/sweep.json``: the manifest, written before the first part. It holds the directory's
  identity (:func:`sweep_identity`: the space's content, i.e. fixed settings, axes, sampling with
  its sample count and seed; the mode; the Decodex version) and the current constraints;
- ``DIR/space.json``: the declared space (what ``load_space`` reads);
- ``DIR/parts/part-NNNNNN-XXXXXXXX.parquet``: the rows;
- ``DIR/summary.json``: what was run and how far it got.

Rerunning a sweep into the same directory skips the points whose ``point_id`` is already in a part,
but only when the directory's identity equals the run's (:meth:`SweepStore.prepare`): an
interrupted sweep loses at most the points in flight and never duplicates one, and rows of
another mode, space or Decodex version are never reused. A mismatch raises
:class:`SweepDirError` saying what differs, unless the run asks to start fresh, which removes
only the files listed above.

Constraints are not part of the identity: the parts hold each point's raw outcome (``feasible`` /
``reason`` say only whether the point could run), and :meth:`SweepStore.read` applies the
manifest's constraints to the rows (:func:`apply_constraints`). A rerun with other constraints
therefore reuses every row and reports the feasible count under the new constraints without
recomputing anything.

A directory written by a Decodex before the manifest (parts but no ``sweep.json``) stored rows
with the constraints of its time already applied and no record of its mode, so it cannot be
resumed safely: a run into it is refused with a message suggesting ``--fresh``. Reading it
(:meth:`SweepStore.read`) still works and returns its rows as written.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from decodex._version import __version__
from decodex.core.errors import DecodexError
from decodex.explore.optimize import Constraint
from decodex.explore.sweep_space import SweepSpace

PARTS = "parts"
MANIFEST = "sweep.json"
MANIFEST_FORMAT = 1
OWN_FILES = (MANIFEST, "space.json", "summary.json")  # besides the parts: what ``clear`` may remove
_SHOWN = 60  # most characters of a value quoted in a mismatch message


class SweepDirError(DecodexError, ValueError):
    """A sweep directory holds another sweep (mode, space or version), rows of an older Decodex, or
    an unreadable manifest (also a ValueError, as other unreadable sweep files are)."""


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def _plain(data: Any) -> Any:
    """``data`` as it reads back from JSON (tuples become lists, numpy scalars Python numbers)."""
    return json.loads(json.dumps(data, sort_keys=True, default=_jsonable))


def sweep_identity(space: SweepSpace, mode: str) -> dict[str, Any]:
    """What must match for a directory's rows to be reused: the mode, the space's points (fixed
    settings, axes including ``spec.*`` what-ifs, sampling, and for random or lhs sampling the
    sample count and seed) and the Decodex version. Name, description and constraints are left out."""
    content = space.to_dict()["sweep"]
    points: dict[str, Any] = {"sampling": space.sampling}
    if space.sampling != "grid":  # a grid's points do not depend on samples or seed
        points.update(samples=space.samples, seed=space.seed)
    points.update(fixed=content["fixed"], axes=content["axes"])
    return _plain({"mode": mode, "decodex_version": __version__, "space": points})


def constraints_to_data(constraints: Sequence[Constraint]) -> list[dict[str, Any]]:
    """Constraints as plain data (the manifest's ``constraints``)."""
    return [{"metric": c.metric, "op": c.op, "bound": c.bound} for c in constraints]


def constraints_from_data(data: Iterable[Mapping[str, Any]]) -> tuple[Constraint, ...]:
    """Constraints from the manifest's ``constraints``."""
    return tuple(Constraint(str(c["metric"]), c["op"], float(c["bound"])) for c in data)


def apply_constraints(frame: pd.DataFrame, constraints: Sequence[Constraint]) -> pd.DataFrame:
    """``frame`` with ``feasible`` / ``reason`` after ``constraints``: a row that ran (empty
    ``reason``) and breaks one (the first, in order) gets that constraint's reason, worded as
    :func:`explore.sweep_space.constraint_reason` words it; a missing or non-numeric value breaks
    it. A constraint may name any column, a metric or an input. Rows that could not run keep
    their reason."""
    if not constraints or frame.empty or "reason" not in frame:
        return frame
    reason = frame["reason"].fillna("").astype(str)
    pending = (reason == "").to_numpy(dtype=bool, copy=True)
    reasons = reason.to_numpy(dtype=object).copy()
    for c in constraints:
        if not pending.any():
            break
        raw = frame[c.metric] if c.metric in frame else pd.Series(np.nan, index=frame.index)
        if raw.dtype == bool:
            raw = raw.astype(float)
        values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
        missing = pending & np.isnan(values)
        with np.errstate(invalid="ignore"):
            broken = pending & ~missing & (values > c.bound if c.op == "<=" else values < c.bound)
        reasons[missing] = f"constraint {c.metric} {c.op} {c.bound:g}: no value"
        for i in np.flatnonzero(broken):
            reasons[i] = f"constraint {c.metric} {c.op} {c.bound:g} broken: {values[i]:.6g}"
        pending &= ~(missing | broken)
    return frame.assign(feasible=reasons == "", reason=reasons.astype(str))


_ABSENT = object()


def _show(value: Any) -> str:
    text = "absent" if value is _ABSENT else json.dumps(value, sort_keys=True)
    return text if len(text) <= _SHOWN else text[:_SHOWN - 3] + "..."


def identity_difference(held: Mapping[str, Any], asked: Mapping[str, Any]) -> str:
    """The first difference between two identities, in words ('' when they are equal)."""
    if held.get("mode") != asked.get("mode"):
        return f"holds a sweep of mode {held.get('mode')}; this run asks {asked.get('mode')}"
    if held.get("decodex_version") != asked.get("decodex_version"):
        return (f"was written by Decodex {held.get('decodex_version')}; this is Decodex "
                f"{asked.get('decodex_version')}")
    old, new = (x.get("space") if isinstance(x.get("space"), Mapping) else {} for x in (held, asked))
    for key in ("sampling", "samples", "seed"):
        if old.get(key, _ABSENT) != new.get(key, _ABSENT):
            return (f"holds a sweep with {key} {_show(old.get(key, _ABSENT))}; this run asks "
                    f"{_show(new.get(key, _ABSENT))}")
    for table in ("fixed", "axes"):
        a, b = (x.get(table) if isinstance(x.get(table), Mapping) else {} for x in (old, new))
        for key in [*a, *(k for k in b if k not in a)]:
            if a.get(key, _ABSENT) != b.get(key, _ABSENT):
                return (f"holds a sweep with {table}.{key} = {_show(a.get(key, _ABSENT))}; this run asks "
                        f"{_show(b.get(key, _ABSENT))}")
    return "holds another sweep" if _plain(held) != _plain(asked) else ""


class SweepStore:
    """The files of one sweep directory (module docstring)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.parts = self.directory / PARTS
        self.parts.mkdir(parents=True, exist_ok=True)

    def part_files(self) -> list[Path]:
        """The finished part files, in the order they were written."""
        return sorted(self.parts.glob("part-*.parquet"))

    def manifest(self) -> dict[str, Any]:
        """The manifest ``DIR/sweep.json`` ({} when absent: a new directory or an older Decodex's;
        ValueError when it is not JSON)."""
        return self.read_json(MANIFEST)

    def constraints(self) -> tuple[Constraint, ...]:
        """The constraints the manifest says to apply to the rows (none without a manifest);
        SweepDirError when the manifest cannot be read."""
        try:
            manifest = self.manifest()
            return constraints_from_data(manifest.get("constraints", []) if isinstance(manifest, dict) else [])
        except (KeyError, TypeError, ValueError) as err:
            raise SweepDirError(f"{self.directory / MANIFEST} is unreadable ({err}): rerun the sweep with "
                                "--fresh (fresh=True)") from None

    def prepare(self, identity: Mapping[str, Any], constraints: Sequence[Constraint], *,
                fresh: bool = False, name: str = "") -> None:
        """Make the directory hold the sweep ``identity`` (:func:`sweep_identity`) with ``constraints``.

        With ``fresh`` the sweep's own files are removed first (:meth:`clear`). Otherwise finished
        parts are kept when the manifest's identity equals ``identity``; a different identity, or
        parts without a manifest (an older Decodex), raise :class:`SweepDirError` naming the
        difference. A directory without finished parts is simply (re)started. The manifest is
        then written (atomically) with ``constraints``, which :meth:`read` applies.
        """
        if fresh:
            self.clear()
        if self.part_files():
            fix = "use another --out or --fresh (fresh=True) to start over"
            try:
                held: Any = self.manifest()
            except (OSError, ValueError):
                held = None
            if held == {}:
                raise SweepDirError(f"{self.directory} holds parts written by an older Decodex (no {MANIFEST}), "
                                    f"so their mode and constraints are unknown: {fix}")
            if (not isinstance(held, dict) or held.get("format") != MANIFEST_FORMAT
                    or not isinstance(held.get("identity"), dict)):
                raise SweepDirError(f"{self.directory}: {MANIFEST} is not a manifest this Decodex reads "
                                    f"(format {MANIFEST_FORMAT}): {fix}")
            difference = identity_difference(held["identity"], identity)
            if difference:
                raise SweepDirError(f"{self.directory} {difference}: {fix}")
        self.write_json(MANIFEST, {"format": MANIFEST_FORMAT, "name": name,
                                   "identity": _plain(dict(identity)),
                                   "constraints": constraints_to_data(constraints)})

    def clear(self) -> list[Path]:
        """Remove the files this sweep writes (parts, their temporaries, the manifest, space and
        summary, and their temporaries); anything else in the directory is left. Returns the
        removed paths."""
        removed: list[Path] = []
        own = [*self.parts.glob("part-*.parquet"), *self.parts.glob("part-*.tmp")]
        for name in OWN_FILES:
            own += [self.directory / name, (self.directory / name).with_suffix(".tmp")]
        for path in own:
            if path.is_file() and not path.is_symlink():
                path.unlink()
                removed.append(path)
        return removed

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

    def read(self, ids: Iterable[str] | None = None,
             constraints: Sequence[Constraint] | None = None) -> pd.DataFrame:
        """All rows written (only those whose ``point_id`` is in ``ids``, in that order, when given),
        with ``constraints`` applied (default: the manifest's; rows of a directory without a
        manifest are returned as written)."""
        frames = [pd.read_parquet(p) for p in self.part_files()]
        frames = [f for f in frames if not f.empty]
        if not frames:
            return pd.DataFrame()
        frame = pd.concat(frames, ignore_index=True)
        if ids is not None:
            order = {pid: i for i, pid in enumerate(ids)}
            frame = frame[frame["point_id"].isin(order)]
            frame = frame.assign(_order=frame["point_id"].map(order)).sort_values("_order").drop(columns="_order")
        frame = frame.drop_duplicates("point_id").reset_index(drop=True)
        return apply_constraints(frame, self.constraints() if constraints is None else constraints)

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
