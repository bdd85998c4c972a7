"""Choosing a parallel layout automatically: the smallest one at which the model fits.

:func:`choose_layout` tries layouts in order of the devices they take and keeps the first whose
step fits in memory (:attr:`StepResult.fits`: weights, KV cache and workspace within each
device's capacity):

1. tensor parallelism alone, ``tp`` = 1, 2, 4, ... up to the system's device limit
   (:func:`device_limit`);
2. then tensor x pipeline parallelism (``pp`` = 2, 4, ...), fewest devices first, within the same
   limit: a layout the model's shapes forbid at one ``tp`` (heads that do not divide) can still fit
   with fewer tensor ranks over more stages.

Expert parallelism does not change what each device holds (every device keeps 1/tp of the
experts either way), so it is not searched; a user's ``ep`` is kept when it divides the chosen
``tp``. Systems whose device groups carry roles (attention-FFN disaggregation) lay the replica out
from their roles: the default layout is used as is. When nothing fits, the largest layout that
runs is returned with ``fits`` False (the caller reports it or refuses it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from decodex.core.errors import DecodexError
from decodex.hw_models.system import SystemSpec, load_system
from decodex.sim.estimate import estimate
from decodex.sim.results import StepResult
from decodex.workloads.batch import Batch
from decodex.workloads.catalog import load_model
from decodex.workloads.model_config import ModelConfig
from decodex.workloads.parallelism import Parallelism

AUTO = "auto"
SERVE_PROBE_TOKENS = 2048  # context of the one request a serving layout must hold at least (capped by the window)
MAX_AUTO_DEVICES = 1024  # devices an automatic layout may take (a scalable entry: its node)


@dataclass(frozen=True)
class LayoutChoice:
    """The layout chosen: ``parallelism``, whether the step ``fits`` with it, the layouts
    ``tried`` (labels, in order) and a one-line ``note`` saying why this one."""

    parallelism: Parallelism
    fits: bool
    tried: tuple[str, ...]
    note: str


def device_limit(system: SystemSpec) -> int:
    """Most devices one replica may take on ``system``: its device count (a fixed system), or its
    devices per node (a scalable one-device catalog entry with an intra-node link; 1 without)."""
    if system.scalable:
        return system.interconnect.devices_per_node if system.interconnect.intra_node_link else 1
    return system.device_count


def has_roles(system: SystemSpec) -> bool:
    """Whether the system's device groups carry roles (its mapper lays the replica out itself)."""
    return any(group.role for group in system.groups)


def candidates(system: SystemSpec, ep: int = 1, pp: int | None = None) -> list[Parallelism]:
    """Layouts to try on ``system``, in order (module doc); ``ep`` kept where it divides tp;
    ``pp``: only layouts with that many pipeline stages (None: any)."""
    if has_roles(system):
        return [Parallelism()]
    limit = min(device_limit(system), MAX_AUTO_DEVICES)
    powers = [1 << k for k in range(limit.bit_length()) if 1 << k <= limit]
    layouts = [(tp, 1) for tp in powers]
    layouts += sorted(((tp, pp) for tp in powers for pp in powers if pp > 1 and tp * pp <= limit),
                      key=lambda layout: (layout[0] * layout[1], -layout[0]))
    if pp is not None:
        layouts = [(tp, pp) for tp in powers if tp * pp <= limit] or [(1, pp)]
    return [Parallelism(tp=tp, pp=stages, ep=ep if tp % ep == 0 else 1) for tp, stages in layouts]


def choose_layout(model: str | Path | ModelConfig, system: str | Path | SystemSpec, batch: Batch | int, *,
                  context: int | None = None, precision: str = "bf16", ep: int = 1, pp: int | None = None,
                  **estimate_kwargs: object) -> LayoutChoice:
    """The smallest layout (module doc) at which ``batch`` (a Batch, or a decode batch of
    ``context`` cached tokens per request) fits on ``system``; the largest that runs, with
    ``fits`` False, when none fits. ``ep``: the expert-parallel degree wanted (kept where it
    divides tp); ``pp``: a fixed number of pipeline stages (None: searched). ``estimate_kwargs``
    go to every :func:`estimate` (mapper, routing, mapper options). Raises the first layout's
    error when no layout runs at all."""
    model_cfg = load_model(model)
    spec = load_system(system)
    tried: list[str] = []
    last: tuple[Parallelism, StepResult] | None = None
    first_error: DecodexError | None = None
    for layout in candidates(spec, ep, pp):
        try:
            result = estimate(model_cfg, spec, batch, context=context, precision=precision, parallelism=layout,
                              **estimate_kwargs)  # type: ignore[arg-type]
        except DecodexError as err:
            first_error = first_error or err
            continue
        tried.append(layout.label)
        last = (layout, result)
        if result.fits:
            if has_roles(spec):
                return LayoutChoice(layout, True, tuple(tried), "the system's device roles lay the replica out")
            how = "the smallest layout at which the step fits" if len(tried) > 1 else "the step fits on one rank"
            return LayoutChoice(layout, True, tuple(tried), f"{layout.label}: {how} (auto)")
    if last is None:
        assert first_error is not None
        raise first_error
    layout, _ = last
    return LayoutChoice(layout, False, tuple(tried),
                        f"{layout.label}: no layout of at most {device_limit(spec)} devices fits; "
                        "the largest that runs")


def serving_probe_context(model: str | Path | ModelConfig) -> int:
    """Cached tokens of the one request a serving layout must hold: :data:`SERVE_PROBE_TOKENS`,
    capped below the model's context window."""
    window = load_model(model).context_window
    return SERVE_PROBE_TOKENS if window is None else max(1, min(SERVE_PROBE_TOKENS, window - 1))


def serving_layout(model: str | Path | ModelConfig, system: str | Path | SystemSpec, *, precision: str = "bf16",
                   ep: int = 1, pp: int | None = None) -> LayoutChoice:
    """The layout of a serving replica: the smallest that holds the weights and one request of
    :func:`serving_probe_context` tokens (the KV cache left over is what the run's block manager
    shares out)."""
    return choose_layout(model, system, 1, context=serving_probe_context(model), precision=precision, ep=ep, pp=pp)
