"""The discrete-event engine: run a mapped step on its units, memories and links with simpy.

Each stream of the plan's schedule is a simpy process. A task waits for its dependencies,
acquires its resources (a ``PriorityResource`` per unit, device or link; lower stream priority
wins), then runs its ops: an op's memory traffic contends on its memory (``exclusive``: one
transfer at a time; ``concurrent``: max-min fair share of the memory's budget, each transfer
capped by its own path), and its compute overlaps the transfer, so an uncontended op takes
exactly its analytical time ``max(compute, memory) + overhead``.

Folding repeated blocks. A block repeated n times (the decoder layers, the rounds of a
pipeline) is simulated k and k + 1 times; in steady state one more repetition adds a constant
Δ, so the full step is T(k) + (n - k)·Δ (busy times and energy alike). This is exact once the
schedule is periodic after k repetitions (a single stream is periodic at once; overlapping
streams within a few repetitions); ``fold=False`` runs every repetition, and a test holds the
two equal on small models.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from decodex.hw_models.cost import OpCost
from decodex.mappers.base import Placement, Plan
from decodex.mappers.schedule import Schedule, Task
from decodex.sim.costing import placement_cost
from decodex.sim.fluid import FluidChannel

if TYPE_CHECKING:
    import simpy  # imported when a run starts: `decodex estimate` never loads it

FOLD_REPEATS = 3


@dataclass(frozen=True)
class TimelineEvent:
    """One task on the timeline: its track (unit, device or link), label and interval (s)."""

    track: str
    label: str
    stream: str
    block: str
    repeat: int
    start_s: float
    end_s: float


@dataclass
class RunOutcome:
    """What one engine run measured."""

    makespan_s: float
    busy_s: dict[str, float]
    energy_j: float
    timeline: list[TimelineEvent] = field(default_factory=list)
    block_end_s: dict[tuple[str, int], float] = field(default_factory=dict)


class _Run:
    """One simpy run of a schedule with chosen repetition counts."""

    def __init__(self, plan: Plan, schedule: Schedule, costs: Mapping[int, OpCost], repeats: Mapping[str, int],
                 record: bool) -> None:
        import simpy

        self.env = simpy.Environment()
        self.schedule = schedule
        self.costs = costs
        self.repeats = repeats
        self.record = record
        self.resources: dict[str, simpy.PriorityResource] = {}
        self.memories: dict[str, simpy.Resource | FluidChannel] = {}
        devices = [g.device for g in plan.system.groups for _ in range(g.count)] or [plan.system.primary_device]
        for name, index, memory_name in schedule.memories:
            memory = devices[min(index, len(devices) - 1)].memories[memory_name]
            if memory.access == "exclusive":
                self.memories[name] = simpy.Resource(self.env, capacity=1)
            else:
                self.memories[name] = FluidChannel(self.env, memory.shared_bandwidth_bytes_per_s)
        self.done: dict[tuple[int, str, int, int], simpy.Event] = {}
        self.busy: dict[str, float] = defaultdict(float)
        self.energy = 0.0
        self.timeline: list[TimelineEvent] = []
        self.block_end: dict[tuple[str, int], float] = {}

    def resource(self, name: str) -> simpy.PriorityResource:
        if name not in self.resources:
            import simpy

            self.resources[name] = simpy.PriorityResource(self.env, capacity=1)
        return self.resources[name]

    def done_event(self, key: tuple[int, str, int, int]) -> simpy.Event:
        if key not in self.done:
            self.done[key] = self.env.event()
        return self.done[key]

    def run_op(self, placement: Placement, memory: str | None) -> Generator[Any, Any, None]:
        cost = self.costs[id(placement)]
        unit = placement.device.units[placement.unit] if placement.unit is not None else None
        moved = getattr(unit, "moved_bytes", None)  # units that keep some tensors on chip say what they move
        nbytes = moved(placement.op) if moved is not None else placement.op.bytes
        channel = self.memories.get(memory) if memory else None
        if channel is None or cost.memory_s <= 0 or nbytes <= 0:
            yield self.env.timeout(cost.time_s)
            return
        start = self.env.now
        if isinstance(channel, FluidChannel):
            yield channel.transfer(nbytes, nbytes / cost.memory_s)
        else:
            with channel.request() as request:
                yield request
                yield self.env.timeout(cost.memory_s)
        moved = self.env.now - start
        body = cost.time_s - cost.overhead_s
        yield self.env.timeout(max(0.0, body - moved) + cost.overhead_s)

    def run_task(self, stream_index: int, block: str, repeat: int, task: Task, priority: int,
                 task_index: int = 0) -> Generator[Any, Any, None]:
        for other_stream, other_task in task.after:
            yield self.done_event((other_stream, block, repeat, other_task))
        if self.schedule.round_robin and (stream_index > 0 or repeat > 0):
            # static turns: the previous stream's same task (stream 0: the last stream's, one repetition earlier)
            last = len(self.schedule.streams) - 1
            turn = (stream_index - 1, block, repeat, task_index) if stream_index else (last, block, repeat - 1,
                                                                                       task_index)
            yield self.done_event(turn)
        requests = [self.resource(name).request(priority=priority) for name in sorted(task.resources)]
        for request in requests:
            yield request
        start = self.env.now
        if task.fused:
            yield self.env.timeout(fused_time(task, self.costs))
        else:
            for placement in task.placements:
                yield from self.run_op(placement, task.memory)
        for name, request in zip(sorted(task.resources), requests, strict=True):
            self.resources[name].release(request)
        end = self.env.now
        self.busy[task.track] += end - start
        self.energy += sum(self.costs[id(p)].energy_j * p.op.devices for p in task.placements)
        if self.record:
            stream = self.schedule.streams[stream_index].name
            self.timeline.append(TimelineEvent(task.track, task.label, stream, block, repeat, start, end))

    def run_stream(self, index: int) -> Generator[Any, Any, None]:
        stream = self.schedule.streams[index]
        for block in stream.blocks:
            for repeat in range(self.repeats.get(block.name, block.repeat)):
                for task_index, task in enumerate(block.tasks):
                    yield from self.run_task(index, block.name, repeat, task, stream.priority, task_index)
                    self.done_event((index, block.name, repeat, task_index)).succeed()
                key = (block.name, repeat)
                self.block_end[key] = max(self.block_end.get(key, 0.0), self.env.now)

    def go(self) -> RunOutcome:
        for index in range(len(self.schedule.streams)):
            self.env.process(self.run_stream(index))
        self.env.run()
        return RunOutcome(self.env.now, dict(self.busy), self.energy, self.timeline, self.block_end)


def fused_time(task: Task, costs: Mapping[int, OpCost]) -> float:
    """Duration (s) of a fused task: its ops back to back or, with ``overlap_links``, the longer of
    its compute ops and its link ops (collectives that use no compute overlap the computation)."""
    if not task.overlap_links:
        return sum(costs[id(p)].time_s for p in task.placements)
    compute = sum(costs[id(p)].time_s for p in task.placements if p.link is None)
    links = sum(costs[id(p)].time_s for p in task.placements if p.link is not None)
    return max(compute, links)


def _block_repeats(schedule: Schedule) -> dict[str, int]:
    repeats: dict[str, int] = {}
    for stream in schedule.streams:
        for block in stream.blocks:
            if repeats.setdefault(block.name, block.repeat) != block.repeat:
                raise ValueError(f"block {block.name!r} repeats differently across streams")
    return repeats


def plan_costs(plan: Plan) -> dict[int, OpCost]:
    """The analytical cost of every placement the schedule uses, keyed by ``id(placement)``."""
    assert plan.schedule is not None
    costs: dict[int, OpCost] = {}
    for stream in plan.schedule.streams:
        for block in stream.blocks:
            for task in block.tasks:
                for placement in task.placements:
                    if id(placement) not in costs:
                        costs[id(placement)] = placement_cost(placement)
    return costs


@dataclass(frozen=True)
class EngineResult:
    """Extrapolated totals of a schedule: step time (s), busy time per track (s), dynamic energy
    (J), the timeline of the simulated repetitions and how many were simulated per block."""

    step_time_s: float
    busy_s: dict[str, float]
    energy_j: float
    timeline: tuple[TimelineEvent, ...]
    simulated_repeats: dict[str, int]
    makespan_s: float


def run_schedule(plan: Plan, fold: bool = True, fold_repeats: int = FOLD_REPEATS) -> EngineResult:
    """Simulate ``plan.schedule``; with ``fold``, extrapolate long blocks from their steady state."""
    schedule = plan.schedule
    if schedule is None:
        raise ValueError(f"mapper {plan.mapper!r} produced no schedule for the engine")
    costs = plan_costs(plan)
    full = _block_repeats(schedule)
    k = max(fold_repeats, 2 * len(schedule.streams))  # a pipeline of n streams settles within ~2n repetitions
    folded = {name for name, n in full.items() if fold and n > k + 1}
    if schedule.period_block is not None and full.get(schedule.period_block, 0) >= 2:
        folded.add(schedule.period_block)  # its steady-state period is the reported step time
    base_repeats = {name: (min(k, n) if name in folded else n) for name, n in full.items()}
    if schedule.period_block in folded and not fold:
        base_repeats[schedule.period_block] = full[schedule.period_block] - 1
    base = _Run(plan, schedule, costs, base_repeats, record=True).go()
    makespan, energy = base.makespan_s, base.energy_j
    busy = dict(base.busy_s)
    period: tuple[float, float, dict[str, float]] | None = None
    for name in sorted(folded):
        more = {**base_repeats, name: base_repeats[name] + 1}
        extra = _Run(plan, schedule, costs, more, record=False).go()
        missing = full[name] - base_repeats[name]
        delta_busy = {track: extra.busy_s.get(track, 0.0) - base.busy_s.get(track, 0.0)
                      for track in set(base.busy_s) | set(extra.busy_s)}
        delta_t = extra.makespan_s - base.makespan_s
        delta_e = extra.energy_j - base.energy_j
        makespan += missing * delta_t
        energy += missing * delta_e
        for track, value in delta_busy.items():
            busy[track] = busy.get(track, 0.0) + missing * value
        if name == schedule.period_block:
            period = (delta_t, delta_e, delta_busy)
    step_time = makespan
    if period is not None:  # steady state: one repetition of the period block per step
        step_time, energy, busy = period
    return EngineResult(step_time, busy, energy, tuple(base.timeline), base_repeats, makespan)
