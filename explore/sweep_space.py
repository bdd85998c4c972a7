"""A sweep's declared space: fixed settings, axes, sampling and constraints, from TOML or a dict.

```toml
[sweep]
name = "h100-batch-context"
mode = "estimate"                # estimate | simulate | serve
sampling = "grid"                # grid | random | lhs (Latin hypercube, scipy.stats.qmc)
samples = 64                     # points drawn by random / lhs
seed = 0

[sweep.fixed]                    # every point's settings
model = "llama3-70b"
system = "h100-sxm"
tp = 8

[sweep.axes]                     # a list of values, or a range {low, high, log, integer}
batch = [1, 8, 32, 128]
context = {low = 128, high = 8192, log = true, integer = true}
"spec.hbm.bandwidth_bytes_per_s@scale" = [0.5, 1.0, 2.0]

[[sweep.constraints]]            # a point that breaks one is recorded as infeasible, with the reason
metric = "tpot_s"
op = "<="
bound = 0.05
```

Parameters: the workload and deployment keys of ``POINT_KEYS``, ``mapper.OPTION`` (a mapper
option) and ``spec.FIELD`` (a what-if spec edit, :mod:`explore.spec_overrides`). A grid takes
every combination of the axes' lists (ranges are not allowed there); random and lhs draw
``samples`` points, ranges uniformly (log-uniformly with ``log``), lists by index. The same
space always gives the same points.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import qmc

from decodex.core.errors import SpecError, did_you_mean
from decodex.explore.optimize import Constraint
from decodex.hw_models.spec_reader import TableReader, read_toml

MODES = ("estimate", "simulate", "serve")
SAMPLINGS = ("grid", "random", "lhs")
POINT_KEYS = {
    "model": "catalog model or config.json path",
    "system": "catalog system or TOML path",
    "precision": "precision preset or w=..,a=..,kv=..",
    "mapper": "mapper name (default: the system's)",
    "batch": "decode batch (requests)",
    "context": "cached tokens per request",
    "tp": "tensor-parallel degree", "pp": "pipeline stages", "ep": "expert-parallel degree",
    "routing": "MoE routing: uniform or zipf", "skew": "zipf exponent", "routing_seed": "routing seed",
    "dataset": "serve: workload preset (sharegpt, alpaca, fixed ...)", "rate": "serve: requests/s",
    "requests": "serve: requests drawn", "input_len": "serve: mean prompt tokens",
    "output_len": "serve: mean output tokens", "scheduler": "serve: static, continuous, inflight or chunked",
    "software": "serve: serving software (vllm, trtllm, ideal): host time, admission, KV sizing",
    "max_batch": "serve: most running requests", "chunk": "serve: chunked token budget",
    "slo_ttft_s": "serve: TTFT SLO (s)", "slo_tpot_s": "serve: TPOT SLO (s)",
    "seed": "serve: workload seed",
    "draft_length": "estimate: speculative decoding, tokens drafted per request and step (0: plain decode)",
    "acceptance": "estimate: speculative decoding, acceptance rate per drafted token (default 0.7)",
    "draft": "estimate: speculative draft: free (default), self:LAYERS, heads:HEADS, model:NAME[@SYSTEM]",
    "tree_width": "estimate: speculative tree, candidates per drafted position (1: a chain; w: the top-1 chain of "
                  "draft_length tokens with w - 1 ranked alternatives at each)",
}
# a point with any of these keys is a speculative step
SPECULATIVE_KEYS = ("draft_length", "acceptance", "draft", "tree_width")
PREFIXES = ("mapper.", "spec.")
OPS = ("<=", ">=")
# what a point's row holds besides its inputs, by mode (explore/points.py writes them; a test checks
# that every metric written is declared here); ``util.UNIT`` columns come on top in estimate and simulate
STEP_METRICS = ("step_time_s", "tpot_s", "tokens_per_s", "devices", "tokens_per_s_per_device", "energy_per_token_j",
                "memory_required_bytes", "memory_capacity_bytes", "fits", "usd_per_hour", "usd_per_mtok", "price_usd")
# a speculative point's (estimate mode): tokens per request and step, speedup over plain decode, verify FLOP/B
SPECULATIVE_METRICS = ("tokens_per_step", "speedup", "verify_op_per_byte", "draft_time_s")
METRICS = {
    "estimate": STEP_METRICS + SPECULATIVE_METRICS, "simulate": STEP_METRICS,
    "serve": ("tokens_per_s", "devices", "tokens_per_s_per_device", "goodput_requests_per_s", "slo_attainment",
              "ttft_p50_s", "ttft_p99_s", "tpot_s", "tpot_p99_s", "energy_per_token_j", "fits", "usd_per_hour",
              "usd_per_mtok", "price_usd"),
}
ROW_COLUMNS = ("point_id", "feasible", "reason")


def check_key(key: str, source: str, where: str) -> None:
    """Raise SpecError naming ``where`` unless ``key`` is a known point parameter."""
    if key in POINT_KEYS or (key.startswith(PREFIXES) and len(key.split(".", 1)[1]) > 0):
        return
    raise SpecError(source, where, f"unknown parameter {key!r}; known: {', '.join(POINT_KEYS)}, "
                                   "mapper.OPTION, spec.FIELD")


@dataclass(frozen=True)
class Axis:
    """One swept parameter: a list of ``values``, or a range [``low``, ``high``] (log-uniform with
    ``log``; rounded to integers with ``integer``)."""

    name: str
    values: tuple[Any, ...] | None = None
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    integer: bool = False

    @property
    def is_range(self) -> bool:
        """A continuous range rather than a list."""
        return self.values is None

    def from_unit(self, u: np.ndarray) -> list[Any]:
        """Values at quantiles ``u`` in [0, 1)."""
        if self.values is not None:
            index = np.minimum((u * len(self.values)).astype(int), len(self.values) - 1)
            return [self.values[i] for i in index]
        if self.log:
            x = np.exp(np.log(self.low) + u * (np.log(self.high) - np.log(self.low)))
        else:
            x = self.low + u * (self.high - self.low)
        if self.integer:
            return [int(v) for v in np.clip(np.rint(x), math.ceil(self.low), math.floor(self.high))]
        return [float(v) for v in x]


@dataclass(frozen=True)
class SweepSpace:
    """A declared sweep (module docstring)."""

    name: str
    mode: str = "estimate"
    sampling: str = "grid"
    samples: int = 16
    seed: int = 0
    fixed: Mapping[str, Any] = field(default_factory=dict)
    axes: tuple[Axis, ...] = ()
    constraints: tuple[Constraint, ...] = ()
    description: str = ""
    source: str = "<dict>"

    @property
    def parameters(self) -> list[str]:
        """The input columns of the sweep's rows: the fixed settings, then the axes."""
        return [*self.fixed, *(a.name for a in self.axes)]

    def count_points(self) -> int:
        """How many points :meth:`points` gives (a grid's product of list lengths, else
        ``samples``), without listing them."""
        if not self.axes:
            return 1
        if self.sampling == "grid":
            return math.prod(len(axis.values or ()) for axis in self.axes)
        return self.samples

    def points(self) -> list[dict[str, Any]]:
        """Every point of the space, in a fixed order: fixed settings plus one value per axis."""
        if not self.axes:
            return [dict(self.fixed)]
        if self.sampling == "grid":
            combos = itertools.product(*(axis.values or () for axis in self.axes))
            return [{**self.fixed, **{a.name: v for a, v in zip(self.axes, combo, strict=True)}} for combo in combos]
        rng = np.random.default_rng(self.seed)
        if self.sampling == "random":
            unit = rng.random((self.samples, len(self.axes)))
        else:
            unit = qmc.LatinHypercube(d=len(self.axes), rng=rng).random(self.samples)
        columns = [axis.from_unit(unit[:, j]) for j, axis in enumerate(self.axes)]
        return [{**self.fixed, **{a.name: col[i] for a, col in zip(self.axes, columns, strict=True)}}
                for i in range(self.samples)]

    def to_dict(self) -> dict[str, Any]:
        """The space as plain data (what ``space_from_dict`` reads)."""
        axes: dict[str, Any] = {}
        for a in self.axes:
            axes[a.name] = list(a.values) if a.values is not None else {
                "low": a.low, "high": a.high, "log": a.log, "integer": a.integer}
        return {"sweep": {"name": self.name, "description": self.description, "mode": self.mode,
                          "sampling": self.sampling, "samples": self.samples, "seed": self.seed,
                          "fixed": dict(self.fixed), "axes": axes,
                          "constraints": [{"metric": c.metric, "op": c.op, "bound": c.bound}
                                          for c in self.constraints]}}


def point_id(point: Mapping[str, Any]) -> str:
    """A stable identifier of a point's inputs (16 hex digits of a SHA-256 of its sorted JSON)."""
    text = json.dumps(dict(point), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _axis(name: str, raw: Any, table: TableReader) -> Axis:
    where = table.field(name)
    if isinstance(raw, list):
        if not raw:
            raise SpecError(table.source, where, "an axis needs at least one value")
        return Axis(name, tuple(raw))
    if isinstance(raw, Mapping):
        sub = TableReader(raw, table.source, where)
        low, high = sub.number("low", lo=-math.inf), sub.number("high", lo=-math.inf)
        log, integer = sub.boolean("log", default=False), sub.boolean("integer", default=False)
        if high < low:
            raise sub.error("high", f"{high} is below low = {low}")
        if log and low <= 0:
            raise sub.error("low", f"{low} must be > 0 for a log range")
        return Axis(name, None, low, high, log, integer)
    raise SpecError(table.source, where, f"must be a list of values or a table {{low, high}}, got {raw!r}")


def space_from_dict(data: Mapping[str, Any], source: str = "<dict>") -> SweepSpace:
    """A SweepSpace from parsed TOML (``{"sweep": {...}}``) or a dict of the same shape."""
    root = TableReader(data, source)
    sweep = root.sub("sweep")
    mode = sweep.string("mode", choices=MODES, default="estimate")
    sampling = sweep.string("sampling", choices=SAMPLINGS, default="grid")
    fixed_table = sweep.optional_sub("fixed")
    fixed = dict(fixed_table.data) if fixed_table is not None else {}
    for key in fixed:
        check_key(key, source, sweep.field(f"fixed.{key}"))
    axes_table = sweep.optional_sub("axes")
    axes = []
    for key in axes_table or ():
        check_key(key, source, sweep.field(f"axes.{key}"))
        assert axes_table is not None
        axis = _axis(key, axes_table.data[key], axes_table)
        if sampling == "grid" and axis.is_range:
            raise axes_table.error(key, "a grid needs a list of values (ranges need sampling = random or lhs)")
        axes.append(axis)
    both = set(fixed) & {a.name for a in axes}
    if both:
        raise sweep.error("axes", f"{sorted(both)[0]!r} is both fixed and an axis")
    constraints = []
    raw = sweep.data.get("constraints", [])
    if not isinstance(raw, list):
        raise sweep.error("constraints", "must be an array of tables [[sweep.constraints]]")
    for index, entry in enumerate(raw):
        table = TableReader(entry, source, sweep.field(f"constraints[{index}]"))
        metric = table.string("metric")
        _check_metric(metric, mode, [*fixed, *(a.name for a in axes)], table)
        constraints.append(Constraint(metric, table.string("op", choices=OPS),  # type: ignore[arg-type]
                                      table.number("bound", lo=-math.inf)))
        table.check_unknown()
    if "model" not in fixed and "model" not in {a.name for a in axes}:
        raise sweep.error("fixed", "needs a model (fixed or as an axis)")
    if "system" not in fixed and "system" not in {a.name for a in axes}:
        raise sweep.error("fixed", "needs a system (fixed or as an axis)")
    space = SweepSpace(
        name=sweep.string("name", default=Path(source).stem if source != "<dict>" else "sweep"),
        mode=mode, sampling=sampling,
        samples=sweep.integer("samples", lo=1, hi=10_000_000, default=16),
        seed=sweep.integer("seed", lo=0, hi=2**63 - 1, default=0),
        fixed=fixed, axes=tuple(axes), constraints=tuple(constraints),
        description=sweep.string("description", default=""), source=source)
    sweep.mark("constraints")
    for table in (fixed_table, axes_table):  # their keys were checked as parameters above
        if table is not None:
            table.mark(*table.data)
    root.check_unknown()  # a misspelled key (`sampleing`) is an error with "did you mean"
    return space


def _check_metric(metric: str, mode: str, inputs: Sequence[str], table: TableReader) -> None:
    """SpecError (with the closest names) unless ``metric`` is a metric of ``mode``, a
    ``util.UNIT`` column (estimate, simulate), a row column or one of the space's ``inputs``."""
    known = [*METRICS[mode], *ROW_COLUMNS, *inputs]
    if metric in known or (mode != "serve" and metric.startswith("util.") and len(metric) > len("util.")):
        return
    close = did_you_mean(metric, known, n=2)
    hint = f"{close} " if close else ""
    raise table.error("metric", f"{metric!r} is not a column of a sweep in {mode} mode; {hint}metrics: "
                                f"{', '.join(METRICS[mode])}" + ("" if mode == "serve" else ", util.UNIT") +
                                "; or an input of the space")


def check_constraints(space: SweepSpace, mode: str) -> None:
    """SpecError unless every constraint of ``space`` names a column a sweep of it in ``mode``
    writes (for a run whose mode overrides the space's)."""
    inputs = [*space.fixed, *(a.name for a in space.axes)]
    for index, constraint in enumerate(space.constraints):
        table = TableReader({"metric": constraint.metric}, space.source, f"sweep.constraints[{index}]")
        _check_metric(constraint.metric, mode, inputs, table)


def load_space(space: str | Path | Mapping[str, Any] | SweepSpace) -> SweepSpace:
    """A SweepSpace from a TOML file, a dict (``{"sweep": {...}}`` or the ``[sweep]`` table itself)
    or a SweepSpace."""
    if isinstance(space, SweepSpace):
        return space
    if isinstance(space, Mapping):
        return space_from_dict(space if "sweep" in space else {"sweep": space})
    return space_from_dict(read_toml(space), str(space))


def constraint_reason(constraints: Sequence[Constraint], metrics: Mapping[str, Any]) -> str:
    """Why ``metrics`` break a constraint ('' when none is broken; a missing metric breaks it)."""
    for c in constraints:
        value = metrics.get(c.metric)
        if value is None or not isinstance(value, int | float) or math.isnan(value):
            return f"constraint {c.metric} {c.op} {c.bound:g}: no value"
        if (c.op == "<=" and value > c.bound) or (c.op == ">=" and value < c.bound):
            return f"constraint {c.metric} {c.op} {c.bound:g} broken: {value:.6g}"
    return ""
