"""The parallel layout of a CLI run: ``--tp auto`` (the default) chooses the smallest layout at
which the step fits (:mod:`sim.auto_layout`); a run that does not fit exits with
:data:`EXIT_DOES_NOT_FIT` unless ``--report-unfit`` asks for its numbers anyway."""

from __future__ import annotations

import argparse
from typing import Any

from decodex.sim.auto_layout import AUTO, choose_layout, serving_layout
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
    ``--tp auto`` takes, over the distinct ``systems``, the largest of their serving layouts
    (:func:`sim.auto_layout.serving_layout`: the weights and one request of
    ``SERVE_PROBE_TOKENS`` cached tokens); a number is taken as given."""
    distinct = {getattr(one, "name", str(one)): one for one in systems}
    if args.tp != AUTO:
        return resolve_parallelism(args, model, next(iter(distinct.values())), 1)
    chosen: tuple[Parallelism, str] | None = None
    for name, system in distinct.items():
        choice = serving_layout(model, system, precision=getattr(args, "precision", "bf16"),
                                ep=getattr(args, "ep", None) or 1, pp=getattr(args, "pp", None))
        if chosen is None or choice.parallelism.devices > chosen[0].devices:
            chosen = (choice.parallelism, choice.note if len(distinct) == 1 else f"{choice.note} on {name}")
    assert chosen is not None
    return chosen


def what_if_value(text: str) -> tuple[str, object]:
    """argparse type of ``--set FIELD=VALUE``: the field path of a what-if spec edit (as a sweep's
    ``spec.FIELD``, the ``spec.`` prefix optional; ``@scale`` multiplies) and its value read as a
    TOML value (a number, true/false, a quoted or bare string)."""
    import tomllib

    field, sep, raw = text.partition("=")
    field = field.strip().removeprefix("spec.")
    if not sep or not field or not raw.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: give FIELD=VALUE, e.g. hbm.bandwidth@scale=2 or "
                                         "tensor.peak_flops.fp8=2e15")
    try:
        value: object = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return field, value


def system_with_edits(args: argparse.Namespace, system: Any) -> Any:
    """``system`` with the ``--set`` edits of ``args`` applied (:func:`explore.spec_overrides.system_with`:
    read back and checked as a spec file); ``system`` itself without any."""
    edits = getattr(args, "set", None)
    if not edits:
        return system
    from decodex.explore.spec_overrides import system_with

    return system_with(system, dict(edits))
