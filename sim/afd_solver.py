"""Attention-FFN disaggregation planner: for a model, a context length, a TPOT target and a
hardware mix, which instance counts, micro-batch count and batch give the most tokens per second
per GPU (or per dollar)?

Each candidate layout (:class:`AfdLayout`: attention and FFN device kinds, instances of each,
devices per instance, micro-batches, FFN layout) becomes a system (:func:`afd_system`, built
through the validating system reader); :func:`sim.tpot_search.largest_batch` bisects the largest
batch whose simulated step (the ``afd`` mapper through the discrete-event engine) meets the TPOT
target. The colocated baseline (:func:`colocated_system`: data-parallel attention and expert
parallelism over the same GPUs, DeepSeek-style) is planned the same way, so both come from the
same simulated pipeline. Nothing is fitted here: the throughput of every row is a simulation.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pandas as pd

from decodex.core.errors import ArgumentError, DecodexError
from decodex.hw_models.system import SystemSpec, scale_link, system_from_dict
from decodex.sim.pricing import replica_usd_per_hour, usd_per_million_tokens
from decodex.sim.simulate import simulate
from decodex.sim.tpot_search import largest_batch

OBJECTIVES = ("tokens_per_s_per_device", "tokens_per_usd")


@dataclass(frozen=True)
class AfdLayout:
    """A deployment: ``attention_instances`` x ``instance_devices`` ``attention_device`` GPUs
    holding the KV cache, ``ffn_instances`` x ``instance_devices`` ``ffn_device`` GPUs holding
    the experts (``ffn_instances = 0``: colocated, attention and FFN on the same GPUs);
    ``microbatches`` micro-batches ping-pong between them; ``nic_scale`` multiplies every NIC's
    bandwidth (a what-if; 1 = the catalog's)."""

    attention_device: str
    ffn_device: str
    attention_instances: int
    ffn_instances: int
    instance_devices: int = 8
    microbatches: int = 3
    ffn_layout: str = "tp-ep"
    overlap_collectives: bool = True
    nic_scale: float = 1.0

    @property
    def colocated(self) -> bool:
        """True for the non-disaggregated baseline."""
        return self.ffn_instances == 0

    @property
    def devices(self) -> int:
        """GPUs of the whole deployment."""
        return (self.attention_instances + self.ffn_instances) * self.instance_devices

    @property
    def ratio(self) -> str:
        """``"xAyF"`` (Step-3's naming), or ``"colocated"``."""
        return "colocated" if self.colocated else f"{self.attention_instances}A{self.ffn_instances}F"

    @property
    def name(self) -> str:
        """A system name for the layout."""
        if self.colocated:
            return f"colocated-{self.attention_instances * self.instance_devices}x{self.attention_device}"
        return (f"afd-{self.ratio}-{self.attention_device}-{self.ffn_device}"
                f"-m{self.microbatches}" + (f"-nic{self.nic_scale:g}" if self.nic_scale != 1.0 else ""))


def afd_system(layout: AfdLayout) -> SystemSpec:
    """The system of ``layout`` (devices from the catalog; NVLink inside an instance's node, NICs
    between nodes), run by the ``afd`` mapper. A colocated layout runs expert parallelism over all
    its GPUs; a disaggregated one runs each micro-batch's FFN on all FFN GPUs (``ffn_layout``)."""
    per = layout.instance_devices
    if layout.attention_instances < 1 or layout.ffn_instances < 0 or per < 1:
        raise ArgumentError(f"layout {layout}: needs >= 1 attention instance, >= 0 FFN instances, >= 1 device each")
    options: dict[str, object] = {"microbatches": layout.microbatches,
                                  "overlap_collectives": layout.overlap_collectives}
    if layout.colocated:
        groups = [{"device": layout.attention_device, "count": layout.attention_instances * per, "role": "colocated",
                   "instance_devices": per}]
        options["ffn_devices"] = layout.attention_instances * per
    else:
        groups = [{"device": layout.attention_device, "count": layout.attention_instances * per, "role": "attention",
                   "instance_devices": per},
                  {"device": layout.ffn_device, "count": layout.ffn_instances * per, "role": "ffn",
                   "instance_devices": per}]
        options["ffn_devices"] = layout.ffn_instances * per
        options["ffn_layout"] = layout.ffn_layout
    data = {"system": {"name": layout.name, "description": f"planned layout {layout.ratio}", "default_mapper": "afd",
                       "mapper_options": options, "devices": groups,
                       "interconnect": {"intra_node_link": "nvlink", "inter_node_link": "nic",
                                        "devices_per_node": per}}}
    return scale_link(system_from_dict(data, source=f"<afd planner: {layout.name}>"), "nic", layout.nic_scale)


def colocated_system(device: str, instances: int, *, instance_devices: int = 8, microbatches: int = 2,
                     nic_scale: float = 1.0) -> SystemSpec:
    """The non-disaggregated baseline on ``instances`` x ``instance_devices`` ``device`` GPUs."""
    return afd_system(AfdLayout(device, device, instances, 0, instance_devices, microbatches, nic_scale=nic_scale))


def usd_per_hour(layout: AfdLayout) -> float:
    """Rental price of the deployment's GPUs, USD/hour (catalog ``device.price.usd_per_hour``;
    NaN when a device has none)."""
    return replica_usd_per_hour(afd_system(layout), layout.devices)


def plan_layout(model: str, layout: AfdLayout, *, context: int, tpot_s: float, precision: str = "fp8",
                high: int = 65536) -> dict[str, object]:
    """One row: the layout, the largest batch meeting ``tpot_s`` (s) at ``context`` tokens, its
    TPOT (s), tokens/s, tokens/s per GPU, USD/hour, tokens per USD and USD per million tokens; or
    ``feasible = False`` with the reason."""
    row: dict[str, object] = {"ratio": layout.ratio, "attention_device": layout.attention_device,
                              "ffn_device": layout.attention_device if layout.colocated else layout.ffn_device,
                              "attention_instances": layout.attention_instances,
                              "ffn_instances": layout.ffn_instances, "devices": layout.devices,
                              "microbatches": layout.microbatches, "nic_scale": layout.nic_scale,
                              "context": context, "tpot_target_s": tpot_s}
    step = layout.microbatches * layout.attention_instances * layout.instance_devices  # a request per micro-batch
    try:
        system = afd_system(layout)
        smallest = simulate(model, system, step, context=context, precision=precision)
        if not smallest.fits:
            return {**row, "feasible": False, "reason": smallest.reason}
        if smallest.step_time_s > tpot_s:
            return {**row, "feasible": False, "reason": f"the smallest batch ({step}) takes "
                    f"{smallest.step_time_s * 1e3:.1f} ms > TPOT {tpot_s * 1e3:g} ms"}
        point = largest_batch(model, system, context=context, tpot_s=tpot_s, precision=precision, step=step,
                              high=high)
    except DecodexError as err:
        return {**row, "feasible": False, "reason": str(err)}
    if point is None:  # cannot happen after the probe above, kept for safety
        return {**row, "feasible": False, "reason": f"no batch meets TPOT {tpot_s * 1e3:g} ms"}
    price = replica_usd_per_hour(system, layout.devices)
    tokens_per_s = point.tokens_per_s_per_device * point.devices
    per_mtok = usd_per_million_tokens(price, tokens_per_s)
    return {**row, "feasible": True, "reason": "", "batch": point.batch, "tpot_s": point.tpot_s,
            "tokens_per_s": tokens_per_s, "tokens_per_s_per_device": point.tokens_per_s_per_device,
            "usd_per_hour": price, "tokens_per_usd": 1e6 / per_mtok, "usd_per_mtok": per_mtok}


def candidate_layouts(devices: Sequence[str] = ("h800",), attention_instances: Iterable[int] = (1, 2, 3, 4),
                      ffn_instances: Iterable[int] = (1, 2), microbatches: Iterable[int] = (2, 3),
                      instance_devices: int = 8, colocated_instances: Iterable[int] = (1, 2, 4),
                      nic_scale: float = 1.0) -> list[AfdLayout]:
    """Every disaggregated layout over the attention/FFN device pairs of ``devices`` and the
    instance and micro-batch counts, plus the colocated baselines (``colocated_instances``
    instances of each device, 2 micro-batches as DeepSeek's decode)."""
    ffn_counts = tuple(ffn_instances)
    if any(f < 1 for f in ffn_counts):
        raise ArgumentError(f"ffn_instances: {ffn_counts} must be >= 1 (colocated layouts come from "
                            "colocated_instances)")
    layouts = [AfdLayout(a_dev, f_dev, a, f, instance_devices, m, nic_scale=nic_scale)
               for a_dev, f_dev, a, f, m in itertools.product(devices, devices, attention_instances, ffn_counts,
                                                             microbatches)]
    layouts += [AfdLayout(dev, dev, n, 0, instance_devices, 2, nic_scale=nic_scale)
                for dev in devices for n in colocated_instances]
    return layouts


def solve_afd(model: str, *, context: int, tpot_s: float, layouts: Sequence[AfdLayout] | None = None,
              precision: str = "fp8", objective: str = "tokens_per_s_per_device") -> pd.DataFrame:
    """Plan every layout (default :func:`candidate_layouts`) and return one row each, the best
    for ``objective`` (``tokens_per_s_per_device`` or ``tokens_per_usd``) first, infeasible
    layouts last with their reason."""
    if objective not in OBJECTIVES:
        raise ArgumentError(f"objective: {objective!r} not one of {', '.join(OBJECTIVES)}")
    rows = [plan_layout(model, layout, context=context, tpot_s=tpot_s, precision=precision)
            for layout in (layouts if layouts is not None else candidate_layouts())]
    frame = pd.DataFrame(rows)
    if objective not in frame.columns:
        frame[objective] = float("nan")
    return frame.sort_values(["feasible", objective], ascending=[False, False], na_position="last",
                             kind="stable").reset_index(drop=True)
