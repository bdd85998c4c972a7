"""NeuPIMs studies: sub-batch interleaving, row buffers, and a design sweep (docs/neupims.md).

Every point is one decode step of a batch in the middle of continuous decoding, drawn as in the
reproduction (``validation.runners_neupims.sampled_contexts``: dataset preset, seeded, each
request at a uniform decode progress) unless a fixed ``context`` (tokens) is given. NeuPIMs and
its variants run through the discrete-event engine (``simulate``), FP16. Times in s, throughput
in tokens/s (one token per request per step), energy in J.

Variants are built in memory from the catalog system ``neupims`` (or ``npu-only``) with
``dataclasses.replace``: row buffers (the HBM's ``access``: ``concurrent`` = dual,
``exclusive`` = single), PIM multipliers per bank, HBM channels (the PIM's channels, and the
HBM's bandwidth and capacity scaled with them: each channel keeps its bandwidth and size), and
the systolic arrays' size (rows = cols).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from decodex.hw_models.bank_pim import BankPimUnit
from decodex.hw_models.system import DeviceGroup, SystemSpec, load_system
from decodex.hw_models.systolic import DATAFLOWS, SystolicUnit
from decodex.sim.simulate import simulate
from decodex.validation.runners_neupims import PRECISION, sampled_contexts
from decodex.workloads.parallelism import Parallelism

ROW_BUFFERS = {"dual": "concurrent", "single": "exclusive"}


def neupims_system(*, row_buffers: str = "dual", channel_policy: str = "greedy", multipliers: int | None = None,
                   channels: int | None = None, array_size: int | None = None, dataflow: str | None = None,
                   base: str = "neupims") -> SystemSpec:
    """The catalog system ``base`` with its device changed in memory (module docstring).

    ``row_buffers``: ``dual`` or ``single`` (ignored for a device without PIM);
    ``channel_policy``: ``greedy`` or ``round_robin`` (mapper option); ``multipliers``: FP16
    multipliers per bank; ``channels``: HBM channels; ``array_size``: systolic rows = cols;
    ``dataflow``: the systolic arrays' dataflow (``hw_models.systolic.DATAFLOWS``). ``None``
    keeps the catalog value.
    """
    if row_buffers not in ROW_BUFFERS:
        raise ValueError(f"row_buffers: {row_buffers!r} not one of {', '.join(ROW_BUFFERS)}")
    if dataflow is not None and dataflow not in DATAFLOWS:
        raise ValueError(f"dataflow: {dataflow!r} not one of {', '.join(DATAFLOWS)}")
    system = load_system(base)
    device = system.primary_device
    units = dict(device.units)
    memories = dict(device.memories)
    has_pim = any(isinstance(u, BankPimUnit) for u in units.values())
    scale = 1.0
    for name, unit in units.items():
        if isinstance(unit, BankPimUnit):
            changes: dict[str, int] = {}
            if multipliers is not None:
                changes["multipliers_per_bank"] = int(multipliers)
            if channels is not None:
                scale = channels / unit.channels
                changes["channels"] = int(channels)
            units[name] = dataclasses.replace(unit, **changes)
        elif isinstance(unit, SystolicUnit):
            shape = {"rows": int(array_size), "cols": int(array_size)} if array_size is not None else {}
            flow = dataflow or unit.dataflow
            # the first-pass stream overlap is a property of input-stationary passes only
            overlap = unit.stream_overlap if flow == "input-stationary" else "all"
            units[name] = dataclasses.replace(unit, **shape, dataflow=flow, stream_overlap=overlap)
    if channels is not None and not has_pim:
        scale = channels / 32  # the NPU-only device has the same HBM2: 32 channels (catalog)
    hbm = device.main_memory
    access = ROW_BUFFERS[row_buffers] if has_pim else hbm.access
    memories[hbm.name] = dataclasses.replace(hbm, access=access, capacity_bytes=hbm.capacity_bytes * scale,
                                             bandwidth_bytes_per_s=hbm.bandwidth_bytes_per_s * scale)
    device = dataclasses.replace(device, units=units, memories=memories)
    groups = (DeviceGroup(device, system.groups[0].count), *system.groups[1:])
    options = dict(system.mapper_options)
    if has_pim:
        options["channel_policy"] = channel_policy
    return dataclasses.replace(system, groups=groups, mapper_options=options)


def batch_contexts(model: str, batch: int, *, dataset: str = "sharegpt", seed: int = 0,
                   context: int | None = None) -> np.ndarray:
    """Cached tokens of each request: ``context`` for all if given, else sampled from ``dataset``."""
    if context is not None:
        return np.full(batch, int(context), dtype=np.int64)
    return sampled_contexts(model, dataset, batch, seed)


def _run(model: str, system: SystemSpec, contexts: np.ndarray, parallelism: Parallelism, **options: object):
    return simulate(model, system, int(contexts.size), context=contexts, precision=PRECISION,
                    parallelism=parallelism, **options)


def interleaving_gain(model: str, batches: Iterable[int], *, dataset: str = "sharegpt", seed: int = 0,
                      context: int | None = None, parallelism: Parallelism | None = None,
                      row_buffers: Sequence[str] = ("dual", "single")) -> pd.DataFrame:
    """Step time with 1 sub-batch / with 2 (> 1: interleaving helps), per batch and row buffers.

    Columns: ``batch``, ``row_buffers``, ``mean_context`` (tokens), ``time_1_s``, ``time_2_s`` (s),
    ``gain``. Greedy channels; same requests for every row.
    """
    par = parallelism or Parallelism()
    rows = []
    for batch in batches:
        contexts = batch_contexts(model, int(batch), dataset=dataset, seed=seed, context=context)
        for rb in row_buffers:
            system = neupims_system(row_buffers=rb)
            one = _run(model, system, contexts, par, sub_batches=1).step_time_s
            two = _run(model, system, contexts, par, sub_batches=2).step_time_s
            rows.append({"batch": int(batch), "row_buffers": rb, "mean_context": float(contexts.mean()),
                         "time_1_s": one, "time_2_s": two, "gain": one / two})
    return pd.DataFrame(rows)


def row_buffer_gain(model: str, batches: Iterable[int], *, sub_batches: Sequence[int] = (1, 2),
                    dataset: str = "sharegpt", seed: int = 0, context: int | None = None,
                    parallelism: Parallelism | None = None) -> pd.DataFrame:
    """Single-row-buffer step time / dual-row-buffer step time with the same sub-batching.

    Columns: ``batch``, ``sub_batches``, ``mean_context`` (tokens), ``single_s``, ``dual_s`` (s),
    ``gain`` (> 1: dual row buffers are faster). Greedy channels; same requests for every row.
    """
    par = parallelism or Parallelism()
    dual, single = neupims_system(row_buffers="dual"), neupims_system(row_buffers="single")
    rows = []
    for batch in batches:
        contexts = batch_contexts(model, int(batch), dataset=dataset, seed=seed, context=context)
        for parts in sub_batches:
            t_dual = _run(model, dual, contexts, par, sub_batches=int(parts)).step_time_s
            t_single = _run(model, single, contexts, par, sub_batches=int(parts)).step_time_s
            rows.append({"batch": int(batch), "sub_batches": int(parts), "mean_context": float(contexts.mean()),
                         "single_s": t_single, "dual_s": t_dual, "gain": t_single / t_dual})
    return pd.DataFrame(rows)


def neupims_sweep(model: str, *, multipliers: Sequence[int] = (4, 8, 16, 32), channels: Sequence[int] = (16, 32, 64),
                  array_sizes: Sequence[int] = (64, 128, 256), batch: int = 256, dataset: str = "sharegpt",
                  seed: int = 0, context: int | None = None, sub_batches: int | None = None,
                  parallelism: Parallelism | None = None) -> pd.DataFrame:
    """NeuPIMs vs NPU-only over PIM multipliers per bank x HBM channels x systolic array size.

    ``sub_batches``: NeuPIMs' sub-batching (``None``: the mapper's default, 2 at batch >= 256).

    The NPU-only baseline gets the same channels (HBM bandwidth) and array size. Columns:
    ``multipliers``, ``channels``, ``array_size``, ``neupims_tokens_per_s``,
    ``npu_only_tokens_per_s`` (tokens/s), ``speedup`` (NeuPIMs / NPU-only throughput),
    ``neupims_j_per_token``, ``npu_only_j_per_token`` (J/token, dynamic energy: the device's idle
    power is 0), ``neupims_fits`` (weights + KV fit the HBM).
    """
    par = parallelism or Parallelism()
    contexts = batch_contexts(model, batch, dataset=dataset, seed=seed, context=context)
    options = {} if sub_batches is None else {"sub_batches": int(sub_batches)}
    rows = []
    for ch in channels:
        for size in array_sizes:
            base = _run(model, neupims_system(base="npu-only", channels=ch, array_size=size), contexts, par)
            for mult in multipliers:
                ours = _run(model, neupims_system(multipliers=mult, channels=ch, array_size=size), contexts, par,
                            **options)
                rows.append({"multipliers": int(mult), "channels": int(ch), "array_size": int(size),
                             "neupims_tokens_per_s": ours.tokens_per_s, "npu_only_tokens_per_s": base.tokens_per_s,
                             "speedup": ours.tokens_per_s / base.tokens_per_s,
                             "neupims_j_per_token": ours.energy_per_token_j,
                             "npu_only_j_per_token": base.energy_per_token_j, "neupims_fits": bool(ours.fits)})
    return pd.DataFrame(rows)


def _gain_figure(frame: pd.DataFrame, by: str, name: str, title: str) -> go.Figure:
    """A gain-vs-batch figure, one line per value of column ``by`` (``name`` formats its label)."""
    fig = go.Figure()
    for key, part in frame.groupby(by, sort=False):
        fig.add_scatter(x=part["batch"], y=part["gain"], mode="lines+markers", name=name.format(key))
    fig.add_hline(y=1.0, line_dash="dot")
    fig.update_layout(title=title, xaxis_title="batch (requests)", yaxis_title="gain (x)", xaxis_type="log")
    return fig


def interleaving_figure(frame: pd.DataFrame) -> go.Figure:
    """Interleaving gain vs batch, one line per row-buffer kind (frame of :func:`interleaving_gain`)."""
    return _gain_figure(frame, "row_buffers", "{} row buffers",
                        "NeuPIMs sub-batch interleaving: time(1 sub-batch) / time(2)")


def row_buffer_figure(frame: pd.DataFrame) -> go.Figure:
    """Row-buffer gain vs batch, one line per sub-batch count (frame of :func:`row_buffer_gain`)."""
    return _gain_figure(frame.sort_values("sub_batches", kind="stable"), "sub_batches", "{} sub-batch(es)",
                        "NeuPIMs row buffers: time(single) / time(dual)")


def sweep_figure(frame: pd.DataFrame) -> go.Figure:
    """Speedup over NPU-only vs PIM multipliers, one line per (channels, array size)
    (frame of :func:`neupims_sweep`); hover shows J/token."""
    fig = go.Figure()
    for (ch, size), part in frame.groupby(["channels", "array_size"], sort=True):
        fig.add_scatter(x=part["multipliers"], y=part["speedup"], mode="lines+markers",
                        name=f"{ch} ch, {size}x{size} arrays",
                        customdata=part[["neupims_j_per_token"]].to_numpy(),
                        hovertemplate="multipliers %{x}<br>speedup %{y:.2f}x<br>%{customdata[0]:.3g} J/token")
    fig.update_layout(title="NeuPIMs / NPU-only throughput over PIM and NPU design",
                      xaxis_title="PIM multipliers per bank", yaxis_title="speedup (x)", xaxis_type="log")
    return fig
