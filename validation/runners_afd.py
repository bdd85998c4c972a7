"""Runners of the attention-FFN disaggregation reproductions (Step-3, MegaScale-Infer).

- ``afd_decode_cost``: Step-3's theoretical decoding cost (sim/decode_cost.py), USD per million
  tokens, for ``model`` at ``context`` with each part on the cheapest of ``devices``
  (``disaggregated``) or both on the cheapest single device.
- ``afd_tokens_per_device``: the highest tokens/s per device ``system`` reaches for ``model`` at
  ``context`` within ``tpot_s`` (sim/tpot_search.py), over the micro-batch counts in
  ``microbatches`` and batches in steps of ``batch_step`` up to ``batch_max``; 0 when no batch
  meets the target.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from decodex.hw_models.system import SystemSpec, load_system, scale_link
from decodex.mappers.base import Plan
from decodex.sim.costing import placement_cost
from decodex.sim.decode_cost import decode_cost
from decodex.sim.engine import fused_time
from decodex.sim.estimate import plan_step
from decodex.sim.simulate import simulate_plan
from decodex.sim.tpot_search import best_under_tpot
from decodex.validation.reproduce import register_runner


@register_runner("afd_decode_cost")
def afd_decode_cost(config: Mapping[str, Any]) -> float:
    """USD per million decoded tokens (module docstring)."""
    cost = decode_cost(str(config["model"]), int(config["context"]), tuple(config["devices"]),
                       precision=str(config.get("precision", "fp8")),
                       disaggregated=bool(config.get("disaggregated", True)))
    return cost.usd_per_million_tokens


@register_runner("afd_tokens_per_device")
def afd_tokens_per_device(config: Mapping[str, Any]) -> float:
    """Tokens/s per device within the TPOT target (module docstring)."""
    point = best_under_tpot(str(config["model"]), str(config["system"]), context=int(config["context"]),
                            tpot_s=float(config["tpot_s"]), precision=str(config.get("precision", "fp8")),
                            settings=[{"microbatches": int(m)} for m in config.get("microbatches", [2, 3, 4])],
                            step=int(config.get("batch_step", 32)), high=int(config.get("batch_max", 16384)))
    return point.tokens_per_s_per_device if point is not None else 0.0


def resized_system(name: str, *, attention_devices: int | None = None, nic_scale: float = 1.0,
                   mapper_options: Mapping[str, Any] | None = None) -> SystemSpec:
    """The catalog AFD system ``name`` with its attention group resized to ``attention_devices``
    (one instance), every device's NIC bandwidth scaled by ``nic_scale`` and, when given,
    ``mapper_options`` in place of the system's, in memory."""
    base = load_system(name)
    attention, ffn = base.groups
    count = attention.count if attention_devices is None else attention_devices
    options = base.mapper_options if mapper_options is None else dict(mapper_options)
    resized = dataclasses.replace(base, mapper_options=options, groups=(
        dataclasses.replace(attention, count=count, instance_devices=count), ffn))
    return scale_link(resized, "nic", nic_scale)


def stage_times(plan: Plan) -> dict[str, float]:
    """Seconds each track of the first micro-batch spends on one MoE layer (attention, ffn,
    net.a2f, net.f2a; an instance's task as the engine runs it, :func:`sim.engine.fused_time`):
    MegaScale-Infer's T_a, T_e and T_c."""
    block = next(b for b in plan.schedule.streams[0].blocks if b.name.startswith("moe_layer"))  # type: ignore[union-attr]
    times: dict[str, float] = {}
    for task in block.tasks:
        costs = {id(p): placement_cost(p) for p in task.placements}
        times[task.track] = times.get(task.track, 0.0) + fused_time(task, costs)
    return times


@register_runner("megascale_fill")
def megascale_fill(config: Mapping[str, Any]) -> float:
    """Throughput at MegaScale-Infer's micro-batch bound m* = ceil(2 (1 + T_c / T_f)) over the best
    throughput with up to m* + 3 micro-batches (1.0: the pipeline is full at the bound). T_f and
    T_c come from :func:`stage_times`; ``attention_devices`` and ``nic_scale`` resize the catalog
    ``system`` (:func:`resized_system`)."""
    system = resized_system(str(config["system"]), attention_devices=config.get("attention_devices"),
                            nic_scale=float(config.get("nic_scale", 1.0)), mapper_options=config.get("mapper_options"))
    per_mb = int(config["requests_per_microbatch"])

    def plan(m: int) -> Plan:
        return plan_step(str(config["model"]), system, per_mb * m, context=int(config["context"]),
                         precision=str(config.get("precision", "fp8")), microbatches=m)

    stage = stage_times(plan(1))
    t_f = max(stage["attention"], stage["ffn"])
    t_c = max(stage.get("net.a2f", 0.0), stage.get("net.f2a", 0.0))
    bound = math.ceil(2 * (1 + t_c / t_f))
    rates = {m: per_mb * m / simulate_plan(plan(m)).step_time_s for m in range(1, bound + 4)}
    return rates[bound] / max(rates.values())
