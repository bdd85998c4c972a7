"""Comparing systems on one decode step: each with its default mapper and a stated layout
(``tp`` auto: the smallest tensor-parallel degree at which the step fits), through the engine when
its schedule has several streams, else through the analytical estimate. Shared by the dashboard's
Systems compared page and ``decodex compare``. Times in s, energy in J, memory in B, money in USD.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import pandas as pd

from decodex.core.errors import DecodexError
from decodex.hw_models.system import SystemSpec, load_system
from decodex.mappers.base import Plan
from decodex.sim.auto_layout import device_limit, has_roles
from decodex.sim.estimate import evaluate, plan_step
from decodex.sim.pricing import replica_usd_per_hour, usd_per_million_tokens
from decodex.sim.results import StepResult
from decodex.sim.simulate import simulate_plan
from decodex.workloads.parallelism import Parallelism

AUTO_TP = "auto"
TP_CHOICES = (1, 2, 4, 8, 16)  # tensor-parallel degrees a comparison tries (powers of two up to a 16-GPU system)

@dataclass(frozen=True)
class SystemRow:
    """One system running the workload, or the reason it cannot.

    ``status``: ``ok``, ``does not fit`` (it runs, but the weights and KV cache exceed a
    device's memory; the metrics are shown anyway) or ``cannot run`` (the metrics are NaN).
    ``path``: ``simulate`` (discrete-event engine) or ``estimate`` (analytical).
    ``parallelism``: how the replica is laid out, as chosen by :func:`run_system`.
    Times in s, energy in J, memory in B, money in USD (NaN where a device has no price)."""

    system: str
    status: str
    reason: str = ""
    mapper: str = ""
    path: str = ""
    parallelism: str = ""
    precision: str = ""
    devices: int = 0
    step_time_s: float = math.nan
    tokens_per_s: float = math.nan
    tokens_per_s_per_device: float = math.nan
    energy_per_token_j: float = math.nan
    usd_per_hour: float = math.nan
    usd_per_mtok: float = math.nan
    memory_required_bytes: float = math.nan
    memory_capacity_bytes: float = math.nan
    band_low_s: float = math.nan
    band_high_s: float = math.nan


def tp_candidates(system: SystemSpec) -> list[int]:
    """Tensor-parallel degrees worth trying on ``system``, smallest first: powers of two up to
    :func:`sim.auto_layout.device_limit` (its devices, or a node of a scalable entry; 1 when it
    declares no device-to-device link), and 1 for a system with roles."""
    if has_roles(system):
        return [1]
    return [tp for tp in TP_CHOICES if tp <= max(1, device_limit(system))]


def needs_engine(plan: Plan) -> bool:
    """True when the plan's schedule has more than one stream (NeuPIMs' sub-batches, Duplex's
    co-processing, the attention-FFN ping-pong): their overlap needs the discrete-event engine.
    With one stream ``simulate`` equals ``estimate``, which is then used."""
    return plan.schedule is not None and len(plan.schedule.streams) > 1


def _layout(system: SystemSpec, plan: Plan) -> str:
    if has_roles(system):
        groups = " + ".join(f"{g.count} {g.role}" for g in system.groups)
        return f"system roles ({groups})"
    label = plan.graph.parallelism.label
    total = plan.devices_used if system.scalable else system.device_count
    return f"{label} ({plan.devices_used} of {total} devices)" if total != plan.devices_used else label


def row_from_result(system: SystemSpec, result: StepResult, path: str, layout: str) -> SystemRow:
    """A :class:`SystemRow` from a step result (``path``: how it was computed, ``layout``: the
    parallelism shown); tokens/s per device = tokens/s / devices of the replica."""
    hourly = replica_usd_per_hour(system, result.devices)
    return SystemRow(
        system=system.name, status="ok" if result.fits else "does not fit", reason=result.reason,
        mapper=result.mapper, path=path, parallelism=layout, precision=result.precision, devices=result.devices,
        step_time_s=result.step_time_s, tokens_per_s=result.tokens_per_s,
        tokens_per_s_per_device=result.tokens_per_s / result.devices if result.devices else math.nan,
        energy_per_token_j=result.energy_per_token_j, usd_per_hour=hourly,
        usd_per_mtok=usd_per_million_tokens(hourly, result.tokens_per_s),
        memory_required_bytes=result.memory_required_bytes, memory_capacity_bytes=result.memory_capacity_bytes,
        band_low_s=result.band_low_s, band_high_s=result.band_high_s)


def run_system(model: str, system: str, batch: int, context: int, precision: str,
               tp: int | str = AUTO_TP) -> SystemRow:
    """``model`` on ``system`` at ``batch`` requests of ``context`` cached tokens, with the
    system's default mapper. ``tp``: a tensor-parallel degree, or ``"auto"``: the smallest of
    :func:`tp_candidates` at which the step fits in memory (the largest that runs when none
    fits). A system with roles (attention-FFN) takes its layout from them. The step goes through
    the engine when :func:`needs_engine`, else through the analytical estimate. A system that
    cannot run the point (unsupported precision, a split that does not divide the model, a
    context beyond the model's window) is a ``cannot run`` row with the reason."""
    try:
        spec = load_system(system)
        degrees = tp_candidates(spec) if tp == AUTO_TP else [int(tp)]
        if has_roles(spec):
            degrees = [1]
        chosen: tuple[Plan, StepResult] | None = None
        first_error: DecodexError | None = None
        for degree in degrees:
            try:
                plan = plan_step(model, spec, batch, context=context, precision=precision,
                                 parallelism=Parallelism(tp=degree))
                result = evaluate(plan)
            except DecodexError as err:
                first_error = first_error or err
                continue
            chosen = (plan, result)
            if result.fits:
                break
        if chosen is None:
            assert first_error is not None
            raise first_error
        plan, result = chosen
        path = "estimate"
        if needs_engine(plan):
            result, path = simulate_plan(plan), "simulate"
        return row_from_result(spec, result, path, _layout(spec, plan))
    except DecodexError as err:
        return SystemRow(system=system, status="cannot run", reason=str(err), precision=precision)


def comparison_frame(rows: Iterable[SystemRow]) -> pd.DataFrame:
    """One row per system, the fields of :class:`SystemRow` as columns (SI units)."""
    return pd.DataFrame([asdict(r) for r in rows], columns=list(SystemRow.__dataclass_fields__))
