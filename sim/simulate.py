"""``simulate``: the discrete-event counterpart of ``estimate``."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from decodex.core.errors import ArgumentError
from decodex.hw_models.system import SystemSpec
from decodex.mappers.base import Plan
from decodex.sim.engine import FOLD_REPEATS, TimelineEvent, run_schedule
from decodex.sim.estimate import evaluate, plan_step
from decodex.sim.results import StepResult
from decodex.workloads.batch import Batch, Routing
from decodex.workloads.model_config import ModelConfig
from decodex.workloads.parallelism import Parallelism
from decodex.workloads.precision import Precision

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class SimResult(StepResult):
    """A StepResult whose step time, energy and throughput come from the discrete-event run,
    plus the timeline (of the simulated repetitions, see ``simulated_repeats``), busy time and
    utilisation per track (unit, device or link)."""

    timeline: tuple[TimelineEvent, ...] = ()
    busy_s: Mapping[str, float] = field(default_factory=dict)
    utilization: Mapping[str, float] = field(default_factory=dict)
    simulated_repeats: Mapping[str, int] = field(default_factory=dict)
    analytical_step_time_s: float = 0.0

    def timeline_frame(self) -> pd.DataFrame:
        """One row per simulated task: track, label, stream, block, repeat, start_s, end_s."""
        import pandas as pd

        return pd.DataFrame([dataclasses.asdict(e) for e in self.timeline],
                            columns=[f.name for f in dataclasses.fields(TimelineEvent)])

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["utilization"] = dict(self.utilization)
        out["busy_s"] = dict(self.busy_s)
        out["analytical_step_time_s"] = self.analytical_step_time_s
        return out

    def chrome_trace(self) -> dict[str, Any]:
        """The timeline as Chrome trace events (opens in Perfetto): one track per unit/link."""
        tracks = sorted({e.track for e in self.timeline})
        tid = {track: index + 1 for index, track in enumerate(tracks)}
        events: list[dict[str, Any]] = [
            {"name": "process_name", "ph": "M", "pid": 1, "args": {"name": f"{self.model} on {self.system}"}}]
        events += [{"name": "thread_name", "ph": "M", "pid": 1, "tid": tid[t], "args": {"name": t}} for t in tracks]
        for e in self.timeline:
            events.append({"name": e.label, "cat": e.block, "ph": "X", "pid": 1, "tid": tid[e.track],
                           "ts": e.start_s * 1e6, "dur": (e.end_s - e.start_s) * 1e6,
                           "args": {"stream": e.stream, "block": e.block, "repeat": e.repeat}})
        return {"traceEvents": events, "displayTimeUnit": "ms",
                "otherData": {"simulated_repeats": dict(self.simulated_repeats)}}

    def write_trace(self, path: str | Path) -> Path:
        """Write :meth:`chrome_trace` as JSON to ``path``; returns the path."""
        path = Path(path)
        path.write_text(json.dumps(self.chrome_trace()))
        return path


def simulate_plan(plan: Plan, fold: bool = True, fold_repeats: int = FOLD_REPEATS) -> SimResult:
    """Run a plan's schedule through the engine and combine it with the analytical result
    (ops, memory): step time, energy and throughput come from the engine."""
    analytical = evaluate(plan)
    run = run_schedule(plan, fold=fold, fold_repeats=fold_repeats)
    device = plan.system.primary_device
    energy = device.power.step_energy(run.energy_j, run.step_time_s, plan.devices_used)
    out = analytical.output_tokens
    util = {track: busy / run.step_time_s for track, busy in run.busy_s.items()} if run.step_time_s > 0 else {}
    base = {f.name: getattr(analytical, f.name) for f in dataclasses.fields(StepResult)}
    base.update(step_time_s=run.step_time_s,
                tokens_per_s=out / run.step_time_s if run.step_time_s > 0 else 0.0,
                energy_j=energy, energy_per_token_j=energy / out if out else float("nan"))
    return SimResult(**base, timeline=run.timeline, busy_s=run.busy_s, utilization=util,
                     simulated_repeats=run.simulated_repeats, analytical_step_time_s=analytical.step_time_s)


def simulate(model: str | Path | ModelConfig, system: str | Path | SystemSpec, batch: Batch | int, *,
             context: int | np.ndarray | None = None, precision: str | Precision = "bf16",
             mapper: str | None = None, parallelism: Parallelism | None = None, fold: bool = True,
             routing: Routing | None = None, **mapper_options: object) -> SimResult:
    """Discrete-event simulation of one step (same arguments as ``estimate``; ``fold=False``
    simulates every repetition of every block). Times in s, energy in J."""
    if not isinstance(fold, bool):
        raise ArgumentError(f"fold: must be True or False, got {fold!r:.80}")
    plan = plan_step(model, system, batch, context=context, precision=precision, mapper=mapper,
                     parallelism=parallelism, routing=routing, **mapper_options)
    return simulate_plan(plan, fold=fold)
