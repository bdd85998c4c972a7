"""NeuPIMs against its own artifact: per-layer cycles and op breakdowns (``decodex validate neupims-artifact``).

``validation/data/neupims-artifact/runs.csv`` (README there) holds runs of the public NeuPIMs
artifact (casys-kaist/NeuPIMs, one branch per configuration) on GPT3-7B, tensor-parallel 4, one
decoder layer, ShareGPT decode batches of 64, 256 and 512 from the artifact's own trace generator:
per-layer cycles at 1 GHz and the cycles of each op as the artifact reports them, for four
configurations. Each is compared with the Decodex system that models it:

============================  ===========================================================
artifact configuration         Decodex
============================  ===========================================================
NeuPIMs, sub-batches on        ``neupims`` with ``sub_batches = 2`` (discrete-event engine)
NeuPIMs, sub-batches off       ``neupims`` with ``sub_batches = 1``
naive NPU+PIM                  ``npu-pim-naive``
NPU-only                       ``npu-only``
============================  ===========================================================

One decoder layer's cycles = step(2 layers) - step(1 layer) of the model cut to those layers,
one device, no collectives (the artifact simulates one device; ``n_tp`` only shrinks its
shapes), on the very batch the artifact ran: the trace of ``validation/data/neupims-artifact/
traces`` (each request at its own cached context; on the PIM configurations its KV cache in the
trace's channel, the mapper's ``channels`` option), FP16, 1 GHz. Op cycles come from the
two-layer step: each op's duration on the engine's timeline for the configurations the
engine runs (contention with the other sub-batch included, as the artifact's op spans are), each
op priced alone otherwise:
``QKVgen`` = ``qkv_proj``, ``proj`` = ``o_proj``, ``fc1``/``fc2`` = ``up_proj``/``down_proj``,
attention = the ``attention`` op with its softmax (the artifact's PIM logit+softmax plus attend,
or its NPU fused MHA); with sub-batch interleaving, one sub-batch's op (the artifact reports each
sub-batch's ops apart). Error = Decodex / artifact - 1.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from decodex.core.errors import ArgumentError
from decodex.sim.estimate import evaluate, plan_step
from decodex.sim.simulate import simulate_plan
from decodex.validation.reproduce import register_runner
from decodex.workloads.catalog import load_model
from decodex.workloads.ops import OpKind
from decodex.workloads.parallelism import Parallelism

DATA_DIR = Path(__file__).resolve().parent / "data" / "neupims-artifact"
RUNS_FILE = "runs.csv"
MODEL = "gpt3-7b"
TP = 4
CLOCK_HZ = 1e9  # the artifact's NPU and memory clock (configs/systolic_ws_128x128_dev.json: 1 GHz)
PRECISION = "fp16"
# artifact run prefix -> (configuration label, Decodex system, mapper options, discrete-event engine)
CONFIGS: dict[str, tuple[str, str, tuple[tuple[str, Any], ...], bool]] = {
    "main_sbon": ("NeuPIMs, sub-batches on", "neupims", (("sub_batches", 2),), True),
    "main_sboff": ("NeuPIMs, sub-batches off", "neupims", (("sub_batches", 1),), True),
    "npupim": ("naive NPU+PIM", "npu-pim-naive", (), False),
    "npuonly": ("NPU-only", "npu-only", (), False),
}
OPS = {"QKVgen": ("qkv_proj",), "proj": ("o_proj",), "fc1": ("up_proj",), "fc2": ("down_proj",),
       "attention": ("attention", "attn_softmax")}
OMIT = (OpKind.COLLECTIVE, OpKind.TRANSFER)
PIM_CONFIGS = ("main_sbon", "main_sboff", "npupim")  # their requests' KV caches sit in the trace's channels
TRACES_DIR = DATA_DIR / "traces"


def load_runs(data_dir: Path = DATA_DIR) -> pd.DataFrame:
    """The artifact runs compared here: one per configuration and batch, on the trace the artifact's
    generator made with its channel-load-balanced assignment (``clb``), with ``config`` (the prefix
    of :data:`CONFIGS`) and ``attention_cycles`` (PIM logit+softmax + attend, or NPU fused MHA)."""
    path = Path(data_dir) / RUNS_FILE
    if not path.is_file():
        raise ArgumentError(f"{path}: not found (the NeuPIMs artifact runs ship with Decodex)")
    frame = pd.read_csv(path).rename(columns={"branch@commit": "branch_commit"})
    frame = frame[frame["trace"].str.contains("clb") & frame["per_layer_cycles"].notna()].copy()
    frame["config"] = frame["run"].str.replace(r"_bs\d+.*$", "", regex=True)
    frame = frame[frame["config"].isin(list(CONFIGS))]
    pim = frame["attn_logit_softmax_PIM"].fillna(0) + frame["attn_attend_PIM"].fillna(0)
    frame["attention_cycles"] = np.where(frame["attn_NPU_FusedMHA"].notna(), frame["attn_NPU_FusedMHA"], pim)
    return frame.sort_values(["config", "batch"]).reset_index(drop=True)


def load_trace(name: str, traces_dir: Path = TRACES_DIR) -> tuple[np.ndarray, np.ndarray]:
    """(cached tokens, PIM channel) of each request of the artifact's batch trace ``name`` (a file
    of ``validation/data/neupims-artifact/traces``: columns ``seq_len``, ``ch_idx``), in file order.
    The artifact's attention covers ``seq_len`` keys, the new token's included, so a request has
    ``seq_len`` - 1 cached tokens (at least 1: a decode step attends its cache) before its one
    query token."""
    path = Path(traces_dir) / Path(name).name
    if not path.is_file():
        known = ", ".join(sorted(p.name for p in Path(traces_dir).glob("*.csv")))
        raise ArgumentError(f"trace: {name!r} not found in {traces_dir}; shipped: {known}")
    frame = pd.read_csv(path)
    cached = np.maximum(frame["seq_len"].to_numpy(dtype=np.int64) - 1, 1)
    return cached, frame["ch_idx"].to_numpy(dtype=np.int64)


def _step(system: str, options: tuple[tuple[str, Any], ...], engine: bool, layers: int,
          contexts: np.ndarray) -> tuple[float, dict[str, list[float]]]:
    """Step time (s) of the model cut to ``layers`` layers, and the durations (s) of each decoder
    op: on the engine's timeline (contention included, one entry per sub-batch and layer), or
    priced alone (the analytical records) without the engine."""
    full = load_model(MODEL)
    model = dataclasses.replace(full, num_layers=layers, layer_kinds=full.layer_kinds[:layers])
    plan = plan_step(model, system, contexts.size, context=contexts, precision=PRECISION,
                     parallelism=Parallelism(tp=TP), omit=OMIT, **dict(options))
    durations: dict[str, list[float]] = {}
    if engine:
        result = simulate_plan(plan)
        for event in result.timeline:
            if event.block not in ("embedding", "head"):
                durations.setdefault(event.label, []).append(event.end_s - event.start_s)
        return float(result.step_time_s), durations
    priced = evaluate(plan)
    for record in priced.records:
        if record.block not in ("embedding", "head"):
            durations.setdefault(record.name, []).append(record.time_s)
    return float(priced.step_time_s), durations


def layer_cycles(config: str, trace: str) -> tuple[float, dict[str, float]]:
    """Decodex's cycles of one decoder layer of ``config`` (a :data:`CONFIGS` key) on the artifact's
    batch ``trace`` (:func:`load_trace`: each request at its own cached context, its KV cache in
    the trace's PIM channel on the PIM systems), and the cycles of each op of :data:`OPS`."""
    cycles, ops = _layer_cycles(config, trace)
    return cycles, dict(ops)


@lru_cache(maxsize=64)
def _layer_cycles(config: str, trace: str) -> tuple[float, tuple[tuple[str, float], ...]]:
    _, system, options, engine = CONFIGS[config]
    contexts, channels = load_trace(trace)
    if config in PIM_CONFIGS:
        options = (*options, ("channels", tuple(int(c) for c in channels)))
    one, _ = _step(system, options, engine, 1, contexts)
    two, durations = _step(system, options, engine, 2, contexts)
    # each op's mean duration (the artifact reports one op of one sub-batch); attention = the PIM
    # or NPU attention plus its softmax
    ops = {key: sum(float(np.mean(durations[name])) for name in names if name in durations) * CLOCK_HZ
           for key, names in OPS.items()}
    return (two - one) * CLOCK_HZ, tuple(ops.items())


def compare_artifact(runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (configuration, batch): artifact and Decodex cycles per layer and per op, with
    errors (Decodex / artifact - 1)."""
    frame = load_runs() if runs is None else runs
    rows = []
    for run in frame.itertuples(index=False):
        cycles, ops = layer_cycles(str(run.config), str(run.trace))
        row: dict[str, Any] = {"config": CONFIGS[str(run.config)][0], "batch": int(run.batch),
                               "context": float(run.mean_seq_len),
                               "artifact_cycles": float(run.per_layer_cycles), "decodex_cycles": cycles,
                               "error": cycles / float(run.per_layer_cycles) - 1.0,
                               "source": f"casys-kaist/NeuPIMs {run.branch_commit}"}
        for key in OPS:
            measured = float(run.attention_cycles) if key == "attention" else float(getattr(run, key))
            row[f"{key}_artifact"] = measured
            row[f"{key}_decodex"] = ops[key]
            row[f"{key}_error"] = ops[key] / measured - 1.0 if measured > 0 else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def artifact_summary(compared: pd.DataFrame) -> Mapping[str, Any]:
    """Per configuration: the per-layer errors by batch and the largest op error; overall MAPE."""
    summary: dict[str, Any] = {"mape": float(np.mean(np.abs(compared["error"])))}
    for config, group in compared.groupby("config", sort=False):
        op_errors = group[[f"{key}_error" for key in OPS]].abs().to_numpy(dtype=float)
        summary[str(config)] = {"layer_error_by_batch": {int(b): float(e) for b, e in
                                                          zip(group["batch"], group["error"], strict=True)},
                                "largest_op_error": float(np.nanmax(op_errors))}
    return summary


def _config_key(config: Mapping[str, Any], field: str) -> str:
    key = str(config[field])
    if key not in CONFIGS:
        raise ArgumentError(f"{field}: {key!r} not one of {', '.join(CONFIGS)}")
    return key


@register_runner("neupims_artifact_layer")
def artifact_layer_cycles(config: Mapping[str, Any]) -> float:
    """Reproduction runner: Decodex's cycles of one decoder layer for ``config`` = {``config``: a
    :data:`CONFIGS` key, ``trace``: the artifact's batch trace} (the artifact-matched targets)."""
    return layer_cycles(_config_key(config, "config"), str(config["trace"]))[0]


@register_runner("neupims_artifact_ratio")
def artifact_speedup(config: Mapping[str, Any]) -> float:
    """Reproduction runner: the speedup of ``config["system"]`` over ``config["baseline"]`` (both
    :data:`CONFIGS` keys) on one decoder layer of the batch ``trace``, = baseline cycles / system
    cycles (the artifact's own ratios at its matched points)."""
    trace = str(config["trace"])
    system = layer_cycles(_config_key(config, "system"), trace)[0]
    return layer_cycles(_config_key(config, "baseline"), trace)[0] / system
