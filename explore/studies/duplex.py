"""Duplex studies: the Op/B window in which each near-memory processor beats the xPU (docs/duplex.md).

An operator's arithmetic intensity (Op/B, FLOP per byte) decides where it runs faster. The probe
is an FP16 weight GEMM of ``m`` tokens (``m`` × ``hidden``) @ (``hidden`` × ``hidden``), whose
Op/B is ≈ m (2 FLOP per weight per token over 2 B per weight), priced on the device's xPU
tensor unit and on its near-memory unit by the unit models (no formula of this module). Below the
crossover Op/B the PIM is faster; above it the xPU is.

The catalog devices are ``duplex`` (Logic-PIM), ``duplex-bankgroup-pim`` (the Logic-PIM's
compute and bandwidth on the DRAM die) and ``duplex-bank-pim`` (a ``bank_pim`` unit: the probe is
priced as bank-PIM GEMVs, :mod:`hw_models.bank_pim_gemv`, one pass over the weights per token).
Logic-PIM variants are built in memory from ``duplex`` with ``dataclasses.replace``: the
Logic-PIM's bandwidth multiple (its TSVs; the memory's shared budget scales with it) and its MACs
per GEMM module. Times in s.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from decodex.core.dtypes import DType
from decodex.core.errors import ArgumentError
from decodex.hw_models.device import DeviceSpec
from decodex.hw_models.logic_pim import LogicPimUnit
from decodex.hw_models.system import load_system
from decodex.mappers.duplex import find_units
from decodex.workloads.ops import MatmulOp

PIM_DEVICES = ("duplex", "duplex-bank-pim", "duplex-bankgroup-pim")
PROBE_HIDDEN = 8192
PROBE_TOKENS = tuple(int(x) for x in np.unique(np.round(np.logspace(0, 12, 49, base=2))))  # 1 .. 4096


def duplex_device(base: str = "duplex", *, bandwidth_multiple: float | None = None,
                  macs_per_module: int | None = None) -> DeviceSpec:
    """The catalog device ``base`` with its Logic-PIM unit changed in memory (``None`` keeps
    the catalog value); the memory's shared budget scales with the bandwidth multiple.
    ArgumentError when ``base``'s near-memory unit is not a logic_pim unit (``duplex-bank-pim``)."""
    device = load_system(base).primary_device
    units = dict(device.units)
    memories = dict(device.memories)
    name = find_units(device).pim
    pim = units[name]
    if not isinstance(pim, LogicPimUnit):
        raise ArgumentError(f"duplex_device: {base!r} has a {type(pim).__name__}, not a Logic-PIM; its "
                            "bandwidth multiple and MACs per module do not apply")
    changes: dict[str, float | int] = {}
    if bandwidth_multiple is not None:
        changes["bandwidth_multiple"] = float(bandwidth_multiple)
        memory = memories[pim.memory]
        scale = float(bandwidth_multiple) / pim.bandwidth_multiple
        memories[pim.memory] = dataclasses.replace(
            memory, shared_budget_bytes_per_s=memory.shared_bandwidth_bytes_per_s * scale)
    if macs_per_module is not None:
        changes["macs_per_module"] = int(macs_per_module)
    units[name] = dataclasses.replace(pim, **changes)
    return dataclasses.replace(device, units=units, memories=memories)


def probe_op(tokens: int, hidden: int = PROBE_HIDDEN) -> MatmulOp:
    """An FP16 weight GEMM of ``tokens`` rows: Op/B ≈ ``tokens``."""
    return MatmulOp(name="probe", dtype=DType.FP16, m=int(tokens), n=hidden, k=hidden, weight_dtype=DType.FP16)


def opb_curves(devices: Iterable[DeviceSpec | str] = PIM_DEVICES,
               tokens: Sequence[int] = PROBE_TOKENS) -> pd.DataFrame:
    """One row per (device, probe): ``level`` (where the PIM's compute sits: ``logic_die``,
    ``bank_group``, ``bank``), ``opb`` (FLOP/B), ``xpu_s``, ``pim_s`` and ``pim_speedup`` (xPU
    time / PIM time; > 1 where the PIM wins). Both times are the unit models' ``op_cost``."""
    rows = []
    for item in devices:
        device = load_system(item).primary_device if isinstance(item, str) else item
        units = find_units(device)
        pim = device.units[units.pim]
        level = pim.level if isinstance(pim, LogicPimUnit) else "bank"  # a bank_pim unit: compute in every bank
        for m in tokens:
            op = probe_op(m)
            xpu_s = device.units[units.host].op_cost(op, device.memories).time_s
            pim_s = pim.op_cost(op, device.memories).time_s
            rows.append({"device": device.name, "level": level, "tokens": m, "opb": op.arithmetic_intensity,
                         "xpu_s": xpu_s, "pim_s": pim_s, "pim_speedup": xpu_s / pim_s})
    return pd.DataFrame(rows)


def crossover_opb(curve: pd.DataFrame) -> float:
    """Largest probed Op/B at which the PIM is still faster (0 if it never is); ``curve``: one
    device's rows of :func:`opb_curves`."""
    wins = curve[curve["pim_speedup"] > 1.0]
    return float(wins["opb"].max()) if not wins.empty else 0.0


def opb_window(bandwidth_multiples: Sequence[float] = (1, 2, 4, 8, 16),
               macs_per_module: Sequence[int] = (128, 256, 512, 1024, 2048)) -> pd.DataFrame:
    """Logic-PIM design sweep: one row per (bandwidth multiple, MACs per module) with the PIM's
    peak (FLOP/s), its ridge (FLOP/B), the crossover Op/B below which it beats the xPU, and its
    best speedup over the xPU (at the lowest Op/B probed)."""
    rows = []
    for multiple in bandwidth_multiples:
        for macs in macs_per_module:
            device = duplex_device(bandwidth_multiple=multiple, macs_per_module=macs)
            pim = device.units[find_units(device).pim]
            assert isinstance(pim, LogicPimUnit)
            curve = opb_curves([device])
            rows.append({"bandwidth_multiple": float(multiple), "macs_per_module": int(macs),
                         "pim_peak_flops": pim.peak_flops_any,
                         "pim_ridge_opb": pim.ridge_flop_per_byte(device.memories[pim.memory]),
                         "crossover_opb": crossover_opb(curve),
                         "best_speedup": float(curve["pim_speedup"].max())})
    return pd.DataFrame(rows)


def opb_figure(curves: pd.DataFrame) -> go.Figure:
    """PIM speedup over the xPU against the probe's Op/B, one line per device (log-log)."""
    fig = go.Figure()
    for device, group in curves.groupby("device", sort=False):
        fig.add_trace(go.Scatter(x=group["opb"], y=group["pim_speedup"], mode="lines+markers", name=str(device),
                                 hovertemplate="Op/B %{x:.3g}<br>speedup %{y:.3g}x<extra></extra>"))
    fig.add_hline(y=1.0, line_dash="dash", annotation_text="xPU = PIM")
    fig.update_xaxes(type="log", title="arithmetic intensity of the op (FLOP/B)")
    fig.update_yaxes(type="log", title="PIM speedup over the xPU")
    fig.update_layout(title="Where each PIM kind beats the xPU (FP16 weight GEMM probe)", template="plotly_white")
    return fig


def window_figure(window: pd.DataFrame) -> go.Figure:
    """Heat map of the crossover Op/B over the Logic-PIM's bandwidth multiple and MACs per module."""
    table = window.pivot(index="bandwidth_multiple", columns="macs_per_module", values="crossover_opb")
    fig = go.Figure(go.Heatmap(z=table.to_numpy(), x=[str(c) for c in table.columns],
                               y=[f"{r:g}x" for r in table.index], colorbar={"title": "crossover Op/B"},
                               hovertemplate="MACs %{x}<br>TSV bandwidth %{y}<br>PIM wins below Op/B %{z:.3g}"
                                             "<extra></extra>"))
    fig.update_xaxes(title="MACs per GEMM module (x 32 modules x 5 stacks)", type="category")
    fig.update_yaxes(title="Logic-PIM bandwidth (x external HBM)", type="category")
    fig.update_layout(title="Op/B below which the Logic-PIM beats the xPU", template="plotly_white")
    return fig
