"""The GPU spec values fitted on Vidur's A100 timings, and how they carry to other NVIDIA GPUs.

:class:`GpuFit` holds the fitted (A100) or transferred values; :data:`ANCHORS` the pre-fit
large-size efficiencies each device's curves are scaled by (:func:`transfer`); :func:`apply_fit`
puts the values into a :class:`DeviceSpec` in memory. Method: docs/validation-external.md
("Transfer"). Times in s, sizes in FLOP or bytes, efficiencies in (0, 1].
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from decodex.hw_models.device import DeviceSpec
from decodex.hw_models.efficiency import EfficiencyCurve
from decodex.hw_models.roofline import RooflineUnit

SIG_DIGITS = 4  # fitted numbers are rounded to this many significant digits before use and writing
TILE_M_CANDIDATES = (64, 128, 256)  # the tile heights (rows) the fit chooses among


@dataclass(frozen=True)
class Anchor:
    """A device's pre-fit large-size efficiencies (their sources stay in the TOML comments).

    ``nvlink`` is None where the value was not a measurement of this link generation's own
    (the A100 family borrowed the H100's): the fitted value replaces it.
    """

    tensor: float
    hbm: float
    nvlink: float | None
    note: str


H100_NOTE = ("8192^3 bf16 matmul 798 TFLOP/s and device copy 3.0 TB/s: unpublished measurements by the Decode"
             "x developers on a lent H100 SXM, 2026-10 (one run, no record file; stas00/ml-engineering MAMF t"
             "able: 792.1 TFLOP/s); p2p 380/450 GB/s (NVIDIA/nccl issue #1264)")
H200_NOTE = ("8192^3 bf16 matmul 769-798 TFLOP/s and device copy 4.3 TB/s: unpublished measurements by the De"
             "codex developers on a lent H200, 2026-10/11 (no record file); H100 p2p")
ANCHORS: dict[str, Anchor] = {
    "a100-80g": Anchor(0.859, 0.870, None, "fitted device: A100 MAMF 267.9/312; BabelStream 1774/2039 GB/s"),
    "a100-40g": Anchor(0.859, 0.900, None, "A100 MAMF; HBM 1.4/1.555 TB/s measured (Antepara et al.)"),
    "a800": Anchor(0.859, 0.870, None, "same GA100 silicon and HBM2e as a100-80g"),
    "h100-sxm": Anchor(0.807, 0.896, 0.84, H100_NOTE),
    "h800": Anchor(0.807, 0.896, 0.84, "same silicon as h100-sxm"),
    "h200": Anchor(0.792, 0.896, 0.84, H200_NOTE),
    "h20": Anchor(0.807, 0.896, 0.84, "assumed equal to h100-sxm"),
    "v100s": Anchor(0.807, 0.896, None, "assumed equal to h100-sxm"),
}


@dataclass(frozen=True)
class GpuFit:
    """Fitted (A100) or transferred (other GPUs) spec values; times in s, efficiencies in (0, 1]."""

    tensor_efficiency: EfficiencyCurve
    tensor_overhead_s: float
    tile_m: int
    overlap_exponent: float
    hbm_efficiency: EfficiencyCurve
    simt_efficiency: EfficiencyCurve
    simt_overhead_s: float
    nvlink_efficiency: float | None
    nvlink_latency_s: float
    collective_overhead_s: float

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (curves as ``{"sizes": [...], "values": [...]}``; s, fractions)."""
        out: dict[str, Any] = {}
        for key, value in dataclasses.asdict(self).items():
            out[key] = {k: list(v) for k, v in value.items()} if isinstance(value, dict) else value
        return out


def round_sig(x: float) -> float:
    """``x`` rounded to :data:`SIG_DIGITS` significant digits (same unit)."""
    return float(f"{x:.{SIG_DIGITS}g}")


def rounded_curve(sizes: Iterable[float], values: Iterable[float]) -> EfficiencyCurve:
    """An efficiency curve over ``sizes`` (FLOP or bytes) with ``values`` rounded
    (:func:`round_sig`) and capped at 1."""
    return EfficiencyCurve(tuple(float(s) for s in sizes), tuple(min(1.0, round_sig(v)) for v in values))


def transfer(fit: GpuFit, device: str) -> GpuFit:
    """The fitted A100 values carried to ``device`` (docs/validation-external.md, "Transfer"):
    the tensor and HBM curves keep their shape and are scaled by the device's pre-fit large-size
    efficiency over the A100's (:data:`ANCHORS`, values capped at 1); NVLink efficiency: devices
    whose pre-fit value was a measurement of their own link generation keep it, the A100 family
    takes the fit; tile, overlap exponent, overheads (s), latency (s) and the simt curve carry as
    they are."""
    anchor, base = ANCHORS[device], ANCHORS["a100-80g"]
    tensor = fit.tensor_efficiency.scaled(anchor.tensor / base.tensor)
    hbm = fit.hbm_efficiency.scaled(anchor.hbm / base.hbm)
    return dataclasses.replace(
        fit, tensor_efficiency=rounded_curve(tensor.sizes, tensor.values),
        hbm_efficiency=rounded_curve(hbm.sizes, hbm.values),
        nvlink_efficiency=anchor.nvlink if anchor.nvlink is not None else fit.nvlink_efficiency)


def apply_fit(device: DeviceSpec, fit: GpuFit) -> DeviceSpec:
    """``device`` with ``fit``'s values in its tensor/simt units, HBM and NVLink (in memory;
    times in s, efficiencies as fractions)."""
    units = dict(device.units)
    tensor, simt = units["tensor"], units["simt"]
    assert isinstance(tensor, RooflineUnit) and isinstance(simt, RooflineUnit)
    units["tensor"] = dataclasses.replace(tensor, efficiency=fit.tensor_efficiency, op_overhead_s=fit.tensor_overhead_s,
                                          tile_m=fit.tile_m, overlap_exponent=fit.overlap_exponent)
    units["simt"] = dataclasses.replace(simt, efficiency=fit.simt_efficiency, op_overhead_s=fit.simt_overhead_s)
    memories = dict(device.memories)
    memories["hbm"] = dataclasses.replace(memories["hbm"], efficiency=fit.hbm_efficiency)
    links = dict(device.links)
    if "nvlink" in links and fit.nvlink_efficiency is not None:
        links["nvlink"] = dataclasses.replace(links["nvlink"], efficiency=fit.nvlink_efficiency,
                                              latency_s=fit.nvlink_latency_s,
                                              collective_overhead_s=fit.collective_overhead_s)
    return dataclasses.replace(device, units=units, memories=memories, links=links)
