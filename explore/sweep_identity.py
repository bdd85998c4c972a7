"""What makes a sweep directory's rows reusable (its identity), and the constraints applied on reading.

The identity (:func:`sweep_identity`) is the mode, the space's points and the Decodex version;
:func:`identity_difference` says in words how two identities differ. Constraints are not part of
it: :func:`apply_constraints` applies them to the stored raw rows each time they are read.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from decodex._version import __version__
from decodex.explore.optimize import Constraint
from decodex.explore.sweep_space import SweepSpace

_SHOWN = 60  # most characters of a value quoted in a mismatch message


def jsonable(value: Any) -> Any:
    """A JSON-writable form of ``value``: a numpy scalar's Python value, else its text."""
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def plain(data: Any) -> Any:
    """``data`` as it reads back from JSON (tuples become lists, numpy scalars Python numbers)."""
    return json.loads(json.dumps(data, sort_keys=True, default=jsonable))


def sweep_identity(space: SweepSpace, mode: str) -> dict[str, Any]:
    """What must match for a directory's rows to be reused: the mode, the space's points (fixed
    settings, axes including ``spec.*`` what-ifs, sampling, and for random or lhs sampling the
    sample count and seed) and the Decodex version. Name, description and constraints are left out."""
    content = space.to_dict()["sweep"]
    points: dict[str, Any] = {"sampling": space.sampling}
    if space.sampling != "grid":  # a grid's points do not depend on samples or seed
        points.update(samples=space.samples, seed=space.seed)
    points.update(fixed=content["fixed"], axes=content["axes"])
    return plain({"mode": mode, "decodex_version": __version__, "space": points})


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
    return "holds another sweep" if plain(held) != plain(asked) else ""
