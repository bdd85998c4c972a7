"""The reproduction registry: headline results kept as data, re-derived by the simulator.

Each target is a TOML file in ``validation/targets/`` (value, unit, source, tolerance, the
configuration that produces it, and the ``runner`` that turns the configuration into a simulated
value). Runners are registered functions; a system issue adds its own runners and targets.

A target with ``kind = "reported"`` is a published figure that the simulator is not expected to
reproduce (e.g. a paper's average whose setting the authors' own artifact does not give): it is
run and shown beside the others with its ``reason``, its verdict is ``reported``, and it never fails
a run. ``kind = "target"`` (the default) passes or fails by its tolerance.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from decodex.core.errors import ArgumentError
from decodex.hw_models.spec_reader import TableReader, read_toml

TARGETS_DIR = Path(__file__).resolve().parent / "targets"

Runner = Callable[[Mapping[str, Any]], float]
RUNNERS: dict[str, Runner] = {}
TARGET_KINDS = ("target", "reported")


def register_runner(name: str) -> Callable[[Runner], Runner]:
    """Decorator: register a function ``config -> simulated value`` under ``name``."""
    def wrap(fn: Runner) -> Runner:
        RUNNERS[name] = fn
        return fn
    return wrap


@dataclass(frozen=True)
class Target:
    """A headline result to reproduce: ``value`` in ``unit`` within ``tolerance``: relative
    (a fraction of ``value``) by default, in ``unit`` itself with ``tolerance_kind = "absolute"``
    (e.g. an energy change of -28 % within ±10 points)."""

    name: str
    description: str
    value: float
    unit: str
    tolerance: float
    source: str
    runner: str
    config: Mapping[str, Any]
    group: str
    absolute: bool = False
    kind: str = "target"
    reason: str = ""

    @property
    def reported(self) -> bool:
        """True for a figure shown beside the targets but never failing (``kind = "reported"``)."""
        return self.kind == "reported"

    @classmethod
    def load(cls, path: Path) -> Target:
        """Read and validate a target file; errors name the file and field."""
        table = TableReader(read_toml(path), str(path)).sub("target")
        runner = table.string("runner")
        if runner not in RUNNERS:
            raise table.error("runner", f"{runner!r} not one of {', '.join(sorted(RUNNERS))}")
        config = table.data.get("config", {})
        if not isinstance(config, dict):
            raise table.error("config", "must be a table")
        kind = table.string("kind", choices=TARGET_KINDS, default="target")
        reason = table.string("reason", default="")
        if kind == "reported" and not reason:
            raise table.error("reason", "a reported figure needs the reason it is not a target")
        return cls(name=table.string("name"), description=table.string("description", default=""),
                   value=table.number("value", lo=-1e30, hi=1e30), unit=table.string("unit"),
                   tolerance=table.number("tolerance", lo=0.0, hi=10.0, lo_open=True),
                   source=table.string("source"), runner=runner, config=config,
                   group=table.string("group", default=path.stem.split("-")[0]),
                   absolute=table.string("tolerance_kind", choices=("relative", "absolute"),
                                         default="relative") == "absolute",
                   kind=kind, reason=reason)


@dataclass(frozen=True)
class TargetResult:
    """A target next to what the simulator gives; ``error`` = simulated / target - 1, or
    simulated - target (in ``unit``) when ``absolute``. ``passed`` says whether the error is within
    the tolerance; a ``reported`` figure (``reason`` says why) is shown, never judged."""

    name: str
    target: float
    simulated: float
    unit: str
    error: float
    tolerance: float
    passed: bool
    source: str
    absolute: bool = False
    reported: bool = False
    reason: str = ""

    @property
    def verdict(self) -> str:
        """``pass``, ``FAIL``, or ``reported`` (a figure shown, not judged)."""
        if self.reported:
            return "reported"
        return "pass" if self.passed else "FAIL"

    @property
    def ok(self) -> bool:
        """True unless this is a target that failed (reported figures never fail a run)."""
        return self.reported or self.passed

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``decodex reproduce --json``."""
        return {"name": self.name, "target": self.target, "simulated": self.simulated, "unit": self.unit,
                "error": self.error, "tolerance": self.tolerance, "absolute": self.absolute, "passed": self.passed,
                "verdict": self.verdict, "reason": self.reason, "source": self.source}


def load_targets(root: Path = TARGETS_DIR) -> list[Target]:
    """Every target under ``root``, sorted by name."""
    _register_builtin_runners()
    return sorted((Target.load(p) for p in root.glob("*.toml")), key=lambda t: t.name)


def run_target(target: Target) -> TargetResult:
    """Simulate one target and compare."""
    simulated = float(RUNNERS[target.runner](target.config))
    if target.absolute:
        error = simulated - target.value
    else:
        error = simulated / target.value - 1.0 if target.value else float("inf")
    return TargetResult(target.name, target.value, simulated, target.unit, error, target.tolerance,
                        abs(error) <= target.tolerance, target.source, target.absolute, target.reported,
                        target.reason)


def reproduce(selection: str = "all", root: Path = TARGETS_DIR, *,
              on_target: Callable[[int, int], None] | None = None) -> list[TargetResult]:
    """Run the targets whose name or group equals ``selection`` (``all``: every target);
    ``on_target(done, total)`` is called after each (a progress line)."""
    targets = load_targets(root)
    chosen = [t for t in targets if selection in ("all", t.name, t.group)]
    if not chosen:
        names = ", ".join(sorted({t.name for t in targets} | {t.group for t in targets}))
        raise ArgumentError(f"reproduce: no target or group {selection!r}; known: {names}")
    results = []
    for target in chosen:
        results.append(run_target(target))
        if on_target is not None:
            on_target(len(results), len(chosen))
    return results


def _register_builtin_runners() -> None:
    import decodex.validation.neupims_artifact  # registers the artifact-matched NeuPIMs runner
    import decodex.validation.runners  # registers the runners
    import decodex.validation.runners_afd  # registers the attention-FFN disaggregation runners
    import decodex.validation.runners_duplex  # registers the Duplex runners
    import decodex.validation.runners_flightllm  # registers the FlightLLM runners
    import decodex.validation.runners_neupims  # registers the NeuPIMs runner
    import decodex.validation.runners_specdec  # noqa: F401  (registers the speculative-decoding runner)
