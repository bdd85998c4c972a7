"""The analytical path for many decode points at once: ``estimate`` vectorized over (batch, context).

For a fixed model, system, precision and parallelism, every quantity of a dense decode step is a
polynomial ``a + b·B + c·C + d·B·C`` in the batch ``B`` and the context ``C``; the form is
extracted from the step builder and verified (:mod:`sim.grid_extract`, held as
:class:`sim.grid_terms.GridForm`) and then priced with numpy over all points
(:mod:`sim.grid_pricing`), following :func:`sim.estimate.evaluate` op by op. This module checks
the points, assembles the result rows and states memory fit with :func:`sim.memory.fit_reason`.

Scope (else :class:`NotVectorizable`, and callers fall back to ``estimate`` point by point):
dense models (no MoE layer), systems run by the ``gpu`` mapper whose devices have only
``roofline`` units, plans without concurrent placements, and a step structure that does not
change with (B, C) (verified). Pipeline parallelism is in scope: ``evaluate`` sums the plan's
placements whatever the engine's schedule.

Public names: :func:`estimate_grid`, ``COLUMNS`` and :class:`NotVectorizable` (defined in
:mod:`sim.grid_extract`, re-exported here as the exception callers of ``estimate_grid`` catch).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from decodex.core.errors import ArgumentError
from decodex.hw_models.system import SystemSpec, load_system
from decodex.sim.grid_extract import NotVectorizable, cache_key, check_scope, grid_form
from decodex.sim.grid_pricing import price
from decodex.sim.grid_terms import GridForm
from decodex.sim.memory import MemoryUse, fit_reason
from decodex.workloads.batch import MIN_DECODE_CONTEXT
from decodex.workloads.catalog import load_model
from decodex.workloads.model_config import ModelConfig
from decodex.workloads.parallelism import Parallelism
from decodex.workloads.precision import Precision

__all__ = ["COLUMNS", "NotVectorizable", "estimate_grid"]

COLUMNS = ("batch", "context", "step_time_s", "tokens_per_s", "energy_j", "energy_per_token_j", "weight_bytes",
           "kv_bytes", "memory_required_bytes", "memory_capacity_bytes", "fits", "reason", "flops", "bytes")


def _as_sizes(values: object, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ArgumentError(f"{name}: must be a 1-D array, got shape {array.shape}")
    integral = np.issubdtype(array.dtype, np.integer) or (
        np.issubdtype(array.dtype, np.floating) and bool(np.all(array == np.round(array))))
    if array.size and not integral:
        raise ArgumentError(f"{name}: must hold integers, got {array.dtype} values")
    return array.astype(np.int64)


def _check_points(form: GridForm, batch: np.ndarray, context: np.ndarray) -> None:
    """ArgumentError for the first point the scalar path would refuse."""
    bad = np.flatnonzero(batch < 1)
    if bad.size:
        raise ArgumentError(f"batch: batch size must be a positive integer, got {int(batch[bad[0]])} "
                            f"(point {int(bad[0])})")
    bad = np.flatnonzero(context < MIN_DECODE_CONTEXT)
    if bad.size:
        raise ArgumentError(f"context: must be >= {MIN_DECODE_CONTEXT} (a decode follows a prompt of at least "
                            f"one token), got {int(context[bad[0]])} (point {int(bad[0])})")
    bad = np.flatnonzero(context > form.max_context)
    if bad.size:
        model = form.model
        raise ArgumentError(f"context: a request reaches position {int(context[bad[0]]) + 1}, beyond {model.name}'s "
                            f"max_position_embeddings={model.max_position_embeddings} (point {int(bad[0])})")
    bad = np.flatnonzero(batch < form.min_batch)
    if bad.size:
        raise ArgumentError(f"microbatches: {form.min_batch} outside [1, batch size {int(batch[bad[0]])}] "
                            f"(point {int(bad[0])})")


def estimate_grid(model: str | Path | ModelConfig, system: str | Path | SystemSpec, batches: Sequence[int] | np.ndarray,
                  contexts: Sequence[int] | np.ndarray, *, precision: str | Precision = "bf16",
                  parallelism: Parallelism | None = None) -> pd.DataFrame:
    """Analytical estimates of many decode steps at once, equal to :func:`sim.estimate.estimate`.

    Point ``i`` is ``Batch.decode(batches[i], contexts[i])``: ``batches[i]`` requests, each with
    ``contexts[i]`` cached tokens (1-D integer arrays of one length). ``model``, ``system``,
    ``precision`` and ``parallelism`` as for ``estimate`` (the system's default mapper and its
    options). Returns one row per point: ``batch``, ``context``, ``step_time_s`` (s),
    ``tokens_per_s`` (output tokens/s), ``energy_j`` (J, the whole replica), ``energy_per_token_j``
    (J), ``weight_bytes``, ``kv_bytes``, ``memory_required_bytes`` and ``memory_capacity_bytes``
    (B per device, the most loaded pipeline stage), ``fits`` (bool), ``reason`` (``estimate``'s
    text, empty when it fits), ``flops`` (FLOP) and ``bytes`` (B) per device per step, ``devices``
    (the replica's) and ``util.UNIT``: each unit's (or link's) busy share of the step.

    Raises :class:`NotVectorizable` outside the supported scope (module docstring) and
    ArgumentError for a point ``estimate`` would refuse (batch < 1, context < 1 or beyond the
    model's window, fewer requests than pipeline micro-batches).
    """
    batch = _as_sizes(batches, "batches")
    context = _as_sizes(contexts, "contexts")
    if batch.shape != context.shape:
        raise ArgumentError(f"batches and contexts: lengths differ ({batch.size} vs {context.size})")
    model_cfg = load_model(model)
    system_spec = load_system(system)
    check_scope(model_cfg, system_spec)  # cheap, and before any building
    form = grid_form(cache_key(model_cfg), cache_key(system_spec), Precision.parse(precision),
                     parallelism or Parallelism())
    _check_points(form, batch, context)
    priced = price(form, batch, context)
    required = priced["memory_required_bytes"]
    capacity = form.capacity_bytes
    fits = required <= capacity
    reason = np.full(batch.size, "", dtype=object)
    for index in np.flatnonzero(~fits):
        use = MemoryUse(float(priced["weight_bytes"][index]), float(priced["kv_bytes"][index]),
                        float(priced["workspace_bytes"][index]))
        reason[index] = fit_reason(use, capacity, form.device_name)
    columns = {"batch": batch, "context": context, **priced, "memory_capacity_bytes": np.full(batch.size, capacity),
               "fits": fits, "reason": reason, "devices": np.full(batch.size, form.devices_used)}
    extra = sorted(k for k in columns if k.startswith("util."))
    return pd.DataFrame({name: columns[name] for name in (*COLUMNS, "devices", *extra)})
