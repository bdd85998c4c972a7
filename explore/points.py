"""Evaluate sweep points: one row of inputs and metrics per point, infeasible points with their reason.

A point is a mapping of the parameters of :mod:`explore.sweep_space` (model, system, batch,
``mapper.*``, ``spec.*``...). ``evaluate_point`` runs it in one ``mode``:

- ``estimate`` / ``simulate``: one decode step (``sim.estimate`` / ``sim.simulate``): ``step_time_s``
  (= ``tpot_s``, s), ``tokens_per_s``, ``tokens_per_s_per_device``, ``energy_per_token_j`` (J),
  ``usd_per_mtok`` (USD per million output tokens from the devices' ``usd_per_hour``; NaN when
  a device has no price),
  ``price_usd`` (the devices' purchase price; NaN when a device has none), memory (B) and fit,
  and ``util.UNIT``: each unit's (estimate) or timeline track's (simulate) busy
  share of the step;
- ``serve``: request-level serving (``sim.serve``): throughput and goodput, TTFT/TPOT
  percentiles (s), energy per token, $/Mtok.

``evaluate_points`` does the same for many points and, in ``estimate`` mode, prices points that
differ only in batch and context at once with the vectorized path
(:func:`sim.vector_estimate.estimate_grid`) where the model and system allow it (same numbers,
tested). A point that cannot run (does not fit, bad value, unsupported) is a row with
``feasible = False`` and its ``reason``; so is one that breaks a constraint. Evaluating a point
never raises an ``Exception``: any error (a Decodex error, but also ZeroDivisionError,
OverflowError, RecursionError, MemoryError, an error of the event engine...) becomes the row's
reason ``"TypeName: message"`` (:func:`failure_reason`), so one bad point never aborts a sweep.
An interrupt (KeyboardInterrupt, SystemExit) still propagates.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from decodex.explore.optimize import Constraint
from decodex.explore.spec_overrides import system_with
from decodex.explore.sweep_space import SPECULATIVE_KEYS, constraint_reason, point_id
from decodex.hw_models.system import SystemSpec
from decodex.sim.pricing import usd_per_million_tokens
from decodex.workloads.batch import Routing
from decodex.workloads.parallelism import Parallelism

REASON_CHARS = 1000  # longest reason kept from an error's message (one line)
GRID_KEYS = ("batch", "context")  # what the vectorized path varies within one group
SERVE_KEYS = ("dataset", "rate", "requests", "input_len", "output_len", "scheduler", "max_batch", "chunk",
              "slo_ttft_s", "slo_tpot_s", "seed", "software")


def _system(point: Mapping[str, Any]) -> SystemSpec:
    overrides = {k[len("spec."):]: v for k, v in point.items() if k.startswith("spec.")}
    return system_with(str(point["system"]), overrides)


def _common(point: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments shared by estimate, simulate and serve."""
    kwargs: dict[str, Any] = {"precision": point.get("precision", "bf16")}
    if any(k in point for k in ("tp", "pp", "ep")):
        kwargs["parallelism"] = Parallelism(tp=int(point.get("tp", 1)), pp=int(point.get("pp", 1)),
                                            ep=int(point.get("ep", 1)))
    if "routing" in point or "skew" in point:
        kwargs["routing"] = Routing(str(point.get("routing", "uniform")), skew=float(point.get("skew", 1.0)),
                                    seed=int(point.get("routing_seed", 0)))
    return kwargs


def _mapper_options(point: Mapping[str, Any]) -> dict[str, Any]:
    options = {k[len("mapper."):]: v for k, v in point.items() if k.startswith("mapper.")}
    if "mapper" in point:
        options["mapper"] = point["mapper"]
    return options


def _prices(system: SystemSpec, devices: int) -> tuple[float, float]:
    """USD per hour and purchase USD of ``devices`` devices (a scalable system repeats its device)."""
    if system.scalable:
        device = system.primary_device
        price = device.purchase_usd * devices if device.purchase_usd > 0 else math.nan
        return device.usd_per_hour * devices, price
    hourly = sum(g.device.usd_per_hour * g.count for g in system.groups)
    price = sum(g.device.purchase_usd * g.count for g in system.groups)
    known = all(g.device.purchase_usd > 0 for g in system.groups)
    return hourly, price if known else math.nan


def _money(system: SystemSpec, devices: int, tokens_per_s: float) -> dict[str, float]:
    hourly, price = _prices(system, devices)
    return {"usd_per_hour": hourly if hourly > 0 else math.nan,
            "usd_per_mtok": usd_per_million_tokens(hourly, tokens_per_s), "price_usd": price}


def _step_metrics(system: SystemSpec, devices: int, step_time_s: float, tokens_per_s: float,
                  energy_per_token_j: float, required_bytes: float, capacity_bytes: float, fits: bool,
                  reason: str, busy_share: Mapping[str, float]) -> dict[str, Any]:
    """The metrics of one decode step (module docstring), from either the scalar or the vectorized path."""
    row: dict[str, Any] = {
        "step_time_s": step_time_s, "tpot_s": step_time_s, "tokens_per_s": tokens_per_s, "devices": devices,
        "tokens_per_s_per_device": tokens_per_s / devices, "energy_per_token_j": energy_per_token_j,
        "memory_required_bytes": required_bytes, "memory_capacity_bytes": capacity_bytes, "fits": fits,
        **_money(system, devices, tokens_per_s), **{f"util.{k}": v for k, v in busy_share.items()},
    }
    if not fits:
        row["reason"] = reason
    return row


def _speculative_row(point: Mapping[str, Any], mode: str) -> dict[str, Any]:
    """The metrics of a speculative step (``draft_length``, ``acceptance``, ``draft``, ``tree_width``:
    a :meth:`~workloads.token_tree.TokenTree.spine` with ranked acceptance;
    :func:`sim.speculative.estimate_speculative`): its time per token as ``tpot_s``, the step's
    time as ``step_time_s``, tokens/s, and ``tokens_per_step``, ``speedup``, ``verify_op_per_byte``,
    ``draft_time_s``; no unit shares (a step of several steps)."""
    from decodex.core.errors import ArgumentError
    from decodex.sim.speculative import Draft, estimate_speculative
    from decodex.workloads.acceptance import ChainAcceptance
    from decodex.workloads.batch import is_whole
    from decodex.workloads.token_tree import TokenTree

    if mode != "estimate":
        raise ArgumentError(f"draft_length/acceptance/draft: speculative decoding is priced in estimate mode, "
                            f"not {mode}")
    if _mapper_options(point) or "routing" in point or "skew" in point:
        raise ArgumentError("draft_length/acceptance/draft: a speculative point takes no mapper options or routing")
    system = _system(point)
    common = _common(point)
    length, width = point.get("draft_length", 0), point.get("tree_width", 1)
    for name, value in (("draft_length", length), ("tree_width", width)):
        if not is_whole(value):
            raise ArgumentError(f"{name}: {value!r} must be a whole number")
    chain = ChainAcceptance((float(point.get("acceptance", 0.7)),))
    acceptance: Any = chain
    if int(width) != 1:
        acceptance = chain.for_ranked_tree(TokenTree.spine(int(length), int(width)))
        length = acceptance.tree.size
    step = estimate_speculative(point["model"], system, int(point.get("batch", 1)),
                                context=int(point.get("context", 1024)), draft=Draft.parse(point.get("draft", "free")),
                                draft_length=int(length), acceptance=acceptance,
                                precision=common["precision"], parallelism=common.get("parallelism"))
    verify = step.verify
    row = _step_metrics(system, verify.devices, step.step_time_s, step.tokens_per_s,
                        step.energy_per_token_j, verify.memory_required_bytes, verify.memory_capacity_bytes,
                        step.fits, step.reason, {})
    row["tpot_s"] = step.time_per_token_s
    row.update(tokens_per_step=step.tokens_per_step, speedup=step.speedup, verify_op_per_byte=step.verify_intensity,
               draft_time_s=step.draft_time_s)
    return row


def _step_row(point: Mapping[str, Any], mode: str) -> dict[str, Any]:
    from decodex.sim.estimate import estimate
    from decodex.sim.simulate import simulate

    if any(key in point for key in SPECULATIVE_KEYS):
        return _speculative_row(point, mode)
    system = _system(point)
    run = simulate if mode == "simulate" else estimate
    result = run(point["model"], system, int(point.get("batch", 1)), context=int(point.get("context", 1024)),
                 **_common(point), **_mapper_options(point))
    if mode == "simulate":
        share = dict(getattr(result, "utilization", {}))
    else:
        busy: dict[str, float] = defaultdict(float)
        for r in result.records:
            busy[r.unit] += r.time_s * r.repeat
        share = {unit: t / result.step_time_s for unit, t in busy.items()} if result.step_time_s > 0 else {}
    return _step_metrics(system, result.devices, result.step_time_s, result.tokens_per_s, result.energy_per_token_j,
                         result.memory_required_bytes, result.memory_capacity_bytes, result.fits, result.reason,
                         share)


def _serve_row(point: Mapping[str, Any]) -> dict[str, Any]:
    from decodex.sim.serving import Workload, serve

    system = _system(point)
    workload = Workload.preset(str(point.get("dataset", "sharegpt")), float(point.get("rate", 1.0)),
                               input_len=point.get("input_len"), output_len=point.get("output_len"))
    settings = {k: point[k] for k in ("scheduler", "max_batch", "chunk", "slo_ttft_s", "slo_tpot_s", "seed",
                                      "software") if k in point}
    common = _common(point)
    result = serve(point["model"], system, workload, requests=int(point.get("requests", 200)), **common, **settings)
    s = result.summary()
    throughput = s["throughput_tokens_per_s"]
    return {
        "tokens_per_s": throughput, "devices": s["devices"], "tokens_per_s_per_device": throughput / s["devices"],
        "goodput_requests_per_s": s["goodput_requests_per_s"], "slo_attainment": s["slo_attainment"],
        "ttft_p50_s": s["ttft_s"]["p50"], "ttft_p99_s": s["ttft_s"]["p99"],
        "tpot_s": s["tpot_s"]["p50"], "tpot_p99_s": s["tpot_s"]["p99"],
        "energy_per_token_j": s["energy_per_token_j"], "fits": True,
        **_money(system, s["devices"], throughput),
    }


def _finish(point: Mapping[str, Any], metrics: dict[str, Any], constraints: Sequence[Constraint]) -> dict[str, Any]:
    reason = metrics.pop("reason", "")
    if not reason:
        reason = constraint_reason(constraints, metrics)
    return {"point_id": point_id(point), **point, **metrics, "feasible": not reason, "reason": reason}


def failure_reason(err: BaseException) -> str:
    """The reason recorded for a point that raised ``err``: ``"TypeName: message"`` on one line
    (at most REASON_CHARS characters of the message; a KeyError names the missing parameter)."""
    name = type(err).__name__
    text = f"missing parameter {err}" if isinstance(err, KeyError) else str(err)
    text = " ".join(text.split())
    if len(text) > REASON_CHARS:
        text = text[:REASON_CHARS - 3] + "..."
    return f"{name}: {text}" if text else name


def evaluate_point(point: Mapping[str, Any], mode: str = "estimate",
                   constraints: Sequence[Constraint] = ()) -> dict[str, Any]:
    """One row: the point's inputs, ``point_id``, its metrics, ``feasible`` and ``reason`` (module
    docstring). Never raises an ``Exception`` for a point: one that cannot run is a row with
    ``feasible = False`` and the reason ``"TypeName: message"``."""
    try:
        metrics = _serve_row(point) if mode == "serve" else _step_row(point, mode)
        return _finish(point, metrics, constraints)
    except Exception as err:  # any error of one point is that point's row, never the sweep's end
        return {"point_id": point_id(point), **point, "feasible": False, "reason": failure_reason(err)}


def _grid_rows(points: Sequence[Mapping[str, Any]], constraints: Sequence[Constraint]) -> list[dict[str, Any]] | None:
    """Rows of points that share everything but batch and context, from the vectorized path
    (None when it does not apply or fails in any way: the points are then evaluated one by one)."""
    from decodex.sim.vector_estimate import estimate_grid

    first = points[0]
    if any(k.startswith("mapper.") or k in ("mapper", "routing", "skew", *SPECULATIVE_KEYS) for k in first):
        return None
    try:
        system = _system(first)
        common = _common(first)
        frame = estimate_grid(first["model"], system, np.array([int(p.get("batch", 1)) for p in points]),
                              np.array([int(p.get("context", 1024)) for p in points]),
                              precision=common["precision"], parallelism=common.get("parallelism"))
        rows = []
        for point, rec in zip(points, frame.to_dict("records"), strict=True):
            share = {k[len("util."):]: v for k, v in rec.items() if k.startswith("util.")}
            metrics = _step_metrics(system, int(rec["devices"]), rec["step_time_s"], rec["tokens_per_s"],
                                    rec["energy_per_token_j"], rec["memory_required_bytes"],
                                    rec["memory_capacity_bytes"], bool(rec["fits"]), rec["reason"], share)
            rows.append(_finish(point, metrics, constraints))
    except Exception:  # NotVectorizable, a bad value, or any other error: fall back point by point
        return None
    return rows


def group_key(point: Mapping[str, Any]) -> str:
    """What points priced together by the vectorized path share: everything but batch and context."""
    return point_id({k: v for k, v in point.items() if k not in GRID_KEYS})


def evaluate_points(points: Sequence[Mapping[str, Any]], mode: str = "estimate",
                    constraints: Sequence[Constraint] = (), vectorize: bool = True) -> list[dict[str, Any]]:
    """Rows of ``points`` in their order (module docstring)."""
    rows: list[dict[str, Any] | None] = [None] * len(points)
    if mode == "estimate" and vectorize:
        groups: dict[str, list[int]] = defaultdict(list)
        for i, p in enumerate(points):
            groups[group_key(p)].append(i)
        for members in groups.values():
            if len(members) < 2:
                continue
            grid = _grid_rows([points[i] for i in members], constraints)
            if grid is not None:
                for i, row in zip(members, grid, strict=True):
                    rows[i] = row
    return [row if row is not None else evaluate_point(points[i], mode, constraints) for i, row in enumerate(rows)]
