"""The schedule a mapper hands to the discrete-event engine.

A schedule is a set of *streams* (a micro-batch, a sub-batch); each stream runs its *blocks* in
order, each block ``repeat`` times, and each repetition runs the block's *tasks* in order. A task
holds its ``resources`` (units, whole devices, links) for its duration and runs its placed ops one
after another; an op's memory traffic contends on the task's ``memory``. ``after`` lists tasks of
other streams (stream index, task index) in the same block and repetition that must finish first.

Blocks with the same ``name`` in different streams are the same phase of the step (e.g. the
decoder layers) and must have the same ``repeat``: the engine folds long blocks by simulating a
few repetitions and extrapolating the steady state (see ``sim/engine.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from decodex.mappers.base import Placement


@dataclass(frozen=True, eq=False)
class Task:
    """Ops run in sequence while holding ``resources``.

    ``fused``: the ops run back to back as one interval (nothing else can touch the held
    resources meanwhile, e.g. a GPU stream holding its whole device), so the engine spends one
    event on the task. ``overlap_links`` (fused tasks): the ops on links (collectives run by copy
    engines, switches or NICs, no compute) overlap the compute ops, so the task lasts the longer
    of the two sums. ``track``: the timeline row (e.g. ``"d0.tensor"``); ``label`` its name.
    """

    placements: tuple[Placement, ...]
    resources: tuple[str, ...]
    track: str
    label: str
    memory: str | None = None
    fused: bool = False
    after: tuple[tuple[int, int], ...] = ()
    overlap_links: bool = False


@dataclass(frozen=True, eq=False)
class Block:
    """Tasks repeated ``repeat`` times (e.g. one decoder layer, repeated per layer)."""

    name: str
    tasks: tuple[Task, ...]
    repeat: int = 1


@dataclass(frozen=True, eq=False)
class Stream:
    """A sequence of blocks; lower ``priority`` wins a contended resource."""

    name: str
    blocks: tuple[Block, ...]
    priority: int = 0


@dataclass(frozen=True, eq=False)
class Schedule:
    """Streams of one step. ``period_block``: when set, the reported step time is the steady-state
    time of one repetition of that block (e.g. one decode round of a pipeline), not the makespan.
    ``memories`` maps each memory resource name to (device index, memory name). ``round_robin``:
    the streams take turns in a fixed order, as a program that issues its micro-batches in turn
    does: a stream's task of a block repetition starts only after the previous stream's same task
    (stream 0: the last stream's, one repetition earlier) has finished; the streams must then have
    the same blocks with the same tasks. Without it, contended resources serve first come, first
    served (by priority)."""

    streams: tuple[Stream, ...]
    memories: tuple[tuple[str, int, str], ...] = ()
    period_block: str | None = None
    round_robin: bool = False
