"""The parallel layout of a CLI run: ``--tp auto`` (the default) chooses the smallest layout at
which the step fits (:mod:`sim.auto_layout`); a run that does not fit exits with
:data:`EXIT_DOES_NOT_FIT` unless ``--report-unfit`` asks for its numbers anyway."""

from __future__ import annotations

import argparse
from typing import Any

from decodex.sim.auto_layout import AUTO, choose_layout, serving_probe_context
from decodex.workloads.batch import Batch
from decodex.workloads.parallelism import Parallelism

EXIT_DOES_NOT_FIT = 4  # the step does not fit in the devices' memory (without --report-unfit)


def resolve_parallelism(args: argparse.Namespace, model: Any, system: Any, batch: Batch | int, *,
                        context: Any = None, **estimate_kwargs: Any) -> tuple[Parallelism, str]:
    """The Parallelism of ``--tp``, ``--pp`` and ``--ep`` and a line saying how it was chosen:
    ``--tp auto`` searches the layouts of :func:`sim.auto_layout.choose_layout` for ``batch`` at
    ``context`` (``--pp`` given: with that many stages); a number is taken as given."""
    pp = getattr(args, "pp", None)
    ep = getattr(args, "ep", None) or 1
    if args.tp != AUTO:
        layout = Parallelism(tp=int(args.tp), pp=pp or 1, ep=ep)
        return layout, f"{layout.label} (as given)"
    choice = choose_layout(model, system, batch, context=context, precision=getattr(args, "precision", "bf16"),
                           ep=ep, pp=pp, **estimate_kwargs)
    return choice.parallelism, choice.note


def serving_parallelism(args: argparse.Namespace, model: Any, systems: list[Any]) -> tuple[Parallelism, str]:
    """The layout of every instance of a serving run (``serve``, replicas, pools, capacity):
    ``--tp auto`` takes, over the distinct ``systems``, the largest of the smallest layouts that
    hold the weights and one request of ``sim.auto_layout.SERVE_PROBE_TOKENS`` cached tokens (the
    KV cache left over is what the run's block manager then shares out); a number is taken as given."""
    context = serving_probe_context(model)
    chosen: tuple[Parallelism, str] | None = None
    for system in dict.fromkeys(str(s) for s in systems):
        layout, note = resolve_parallelism(args, model, system, 1, context=context)
        if chosen is None or layout.devices > chosen[0].devices:
            chosen = (layout, note if len(systems) == 1 else f"{note} on {system}")
    assert chosen is not None
    return chosen
