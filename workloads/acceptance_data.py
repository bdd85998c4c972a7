"""Measured speculative decoding: published tokens per step and speedups, as cited data.

``workloads/catalog/speculative/*.toml`` holds measurements with their source (a ``[source]``
table: reference, repository, path, commit, device, batch, precision) and one ``[[measured]]``
row per method and target: ``tokens_per_step`` (accepted drafted tokens plus the target's own, 1
for plain decoding), the ``speedup`` measured over plain decoding on that device, and optionally
``speedup_by_task``. They are inputs (an acceptance for a method: :func:`chain_acceptance_for`)
and reproduction targets, never constants in model code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from decodex.core.errors import ArgumentError, SpecError
from decodex.core.input_files import read_toml
from decodex.workloads.acceptance import ChainAcceptance, rate_matching
from decodex.workloads.batch import is_number, is_whole
from decodex.workloads.token_tree import MAX_TREE_NODES

DATA_DIR = Path(__file__).resolve().parent / "catalog" / "speculative"
SOURCE_FIELDS = ("reference", "repository", "path", "commit", "device", "batch", "precision")
MAX_TOKENS_PER_STEP = MAX_TREE_NODES + 1.0  # a tree of MAX_TREE_NODES accepted whole, and the target's own token


@dataclass(frozen=True)
class MeasuredSpeculation:
    """One published measurement (see module docstring); ``source`` names where it comes from."""

    method: str
    target: str
    tokens_per_step: float
    speedup: float
    source: dict[str, object] = field(default_factory=dict)
    speedup_by_task: dict[str, float] = field(default_factory=dict)


def load_measured(path: str | Path | None = None) -> list[MeasuredSpeculation]:
    """The measurements of one data file (default: every file in :data:`DATA_DIR`, by name); a bad
    field is a SpecError naming the file and the field."""
    paths = sorted(DATA_DIR.glob("*.toml")) if path is None else [Path(path)]
    rows: list[MeasuredSpeculation] = []
    for file in paths:
        data = read_toml(file)
        where = str(file)
        source = data.get("source")
        if not isinstance(source, dict) or any(key not in source for key in SOURCE_FIELDS):
            raise SpecError(where, "source", f"a [source] table with {', '.join(SOURCE_FIELDS)} is required")
        measured = data.get("measured")
        if not isinstance(measured, list) or not measured:
            raise SpecError(where, "measured", "at least one [[measured]] row is required")
        for index, row in enumerate(measured):
            rows.append(_row(row, dict(source), where, index))
    return rows


def _row(row: object, source: dict[str, object], where: str, index: int) -> MeasuredSpeculation:
    """One ``[[measured]]`` row, checked (SpecError naming ``measured[index].field``)."""
    field_name = f"measured[{index}]"
    if not isinstance(row, dict):
        raise SpecError(where, field_name, "must be a table")
    for key in ("method", "target"):
        if not isinstance(row.get(key), str) or not row[key]:
            raise SpecError(where, f"{field_name}.{key}", "a non-empty string is required")
    tokens, speedup = row.get("tokens_per_step"), row.get("speedup")
    if not is_number(tokens) or not 1.0 <= float(tokens) <= MAX_TOKENS_PER_STEP:  # type: ignore[arg-type]
        raise SpecError(where, f"{field_name}.tokens_per_step", f"{tokens!r} must be in [1, {MAX_TOKENS_PER_STEP:g}]")
    if not is_number(speedup) or float(speedup) <= 0:  # type: ignore[arg-type]
        raise SpecError(where, f"{field_name}.speedup", f"{speedup!r} must be a number > 0")
    by_task = row.get("speedup_by_task", {})
    if not isinstance(by_task, dict) or not all(is_number(v) and float(v) > 0 for v in by_task.values()):
        raise SpecError(where, f"{field_name}.speedup_by_task", "a table of task = speedup (> 0) is required")
    return MeasuredSpeculation(row["method"], row["target"], float(tokens), float(speedup),  # type: ignore[arg-type]
                               source, {str(k): float(v) for k, v in by_task.items()})


def chain_acceptance_matching(tokens_per_step: float, draft_length: int) -> ChainAcceptance:
    """The one-rate chain acceptance under which a chain of ``draft_length`` gives
    ``tokens_per_step`` on average: alpha with (1 - alpha^(k+1)) / (1 - alpha) = tokens per step
    (bisection, to 1e-12). ArgumentError when no rate gets there (more than k + 1 tokens)."""
    if not is_whole(draft_length) or not 1 <= draft_length <= MAX_TREE_NODES:
        raise ArgumentError(f"draft_length: {draft_length!r} must be an integer in [1, {MAX_TREE_NODES}]")
    k = int(draft_length)
    if not is_number(tokens_per_step) or not 1.0 <= float(tokens_per_step) <= k + 1:
        raise ArgumentError(f"tokens_per_step: {tokens_per_step!r} must be in [1, {k + 1}] for a chain of {k}")
    return ChainAcceptance((rate_matching(float(tokens_per_step),
                                          lambda rate: 1.0 + ChainAcceptance((rate,)).expected_accepted(k)),))


def chain_acceptance_for(method: str, target: str, draft_length: int,
                         rows: list[MeasuredSpeculation] | None = None) -> ChainAcceptance:
    """The one-rate chain acceptance that reproduces the measured tokens per step of ``method`` on
    ``target`` with a chain of ``draft_length`` (:func:`chain_acceptance_matching`); ArgumentError
    naming the methods measured on ``target`` when there is none."""
    rows = load_measured() if rows is None else rows
    found = [r for r in rows if r.method.lower() == method.lower() and r.target.lower() == target.lower()]
    if not found:
        methods = sorted({r.method for r in rows if r.target.lower() == target.lower()})
        raise ArgumentError(f"no measurement of {method!r} on {target!r}; measured there: "
                            f"{', '.join(methods) or 'none'}")
    return chain_acceptance_matching(found[0].tokens_per_step, draft_length)
