"""Runners of the Duplex reproduction (MICRO 2024): serving throughput and energy against an H100 system.

A point is (model, (input, output) mean lengths, batch). Both systems serve the same requests
(:func:`sim.serving.api.serve`): ``requests_per_slot × batch`` requests, all waiting at t = 0
(a saturated server), Gaussian prompt and output lengths with the pair's means and coefficient
of variation ``length_cv`` (Duplex draws lengths from a Gaussian), seeded; continuous batching
with mixed iterations (``scheduler``, ``chunk``: prefills join the running decodes), at most
``batch`` requests at once, FP16, the model's ``parallelism`` on both systems (same device
count, hence the same memory); serving ``software`` ``ideal`` by default (no host time: the
paper's simulator prices the hardware only).

Steady state: throughput = output tokens of the iterations that start before the last request
is admitted, over that window (the batch is kept full while requests wait; the drain at the
end, where fewer than ``batch`` requests remain, is left out); energy per token = those
iterations' energy over their output tokens. A point whose requests do not fit the model's
context window (mean + 1 standard deviation of both lengths beyond it, e.g. OPT-66B's 2048
positions at 1024 + 1024 tokens) is skipped and reported with its reason by :func:`point_table`;
below that, the serving layer caps the few longer requests at the window.

``duplex_ratio`` returns the ``statistic`` (``mean`` or ``max``) over the points of Duplex's
throughput over the baseline's; ``duplex_energy_change`` the mean change of energy per output
token, in percent (negative: Duplex spends less).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from decodex.core.errors import ArgumentError
from decodex.sim.serving.api import serve
from decodex.sim.serving.workload import Lengths, Workload
from decodex.validation.reproduce import register_runner
from decodex.workloads.catalog import load_model
from decodex.workloads.parallelism import Parallelism

PRECISION = "fp16"
SATURATED_RATE = 1e9  # requests/s: every request arrives at once
DEFAULT_LENGTH_CV = 0.25  # assumed spread of the Gaussian lengths (std / mean) when a config gives none


@dataclass(frozen=True)
class Point:
    """One (model, lengths, batch) point of a config."""

    model: str
    input_len: int
    output_len: int
    batch: int
    parallelism: tuple[int, int, int]  # tp, pp, ep


@dataclass(frozen=True)
class Served:
    """Steady-state figures of one system at one point."""

    tokens_per_s: float
    joules_per_token: float
    iterations: int


@lru_cache(maxsize=512)
def served(model: str, system: str, point: Point, settings: tuple[tuple[str, Any], ...]) -> Served:
    """Serve ``point`` on ``system`` (module docstring); ``settings``: the config's serving keys."""
    opts = dict(settings)
    tp, pp, ep = point.parallelism
    cv = float(opts.get("length_cv", DEFAULT_LENGTH_CV))
    workload = Workload(arrival="fixed", rate=SATURATED_RATE, input_lengths=Lengths.normal(point.input_len, cv),
                        output_lengths=Lengths.normal(point.output_len, cv),
                        name=f"{point.input_len}/{point.output_len}")
    result = serve(model, system, workload, requests=int(opts.get("requests_per_slot", 4)) * point.batch,
                   scheduler=str(opts.get("scheduler", "chunked")), chunk=int(opts.get("chunk", 8192)),
                   max_batch=point.batch, precision=PRECISION, parallelism=Parallelism(tp=tp, pp=pp, ep=ep),
                   seed=int(opts.get("seed", 0)), bucket_width=float(opts.get("bucket_width", 0.02)),
                   software=str(opts.get("software", "ideal")))
    end = float(np.max(result.scheduled_s))
    window = result.iteration_start_s < end
    if not window.any():
        window = np.ones_like(result.iteration_start_s, dtype=bool)
    start = float(result.iteration_start_s[window][0])
    stop = float((result.iteration_start_s + result.iteration_duration_s)[window][-1])
    tokens = float(result.iteration_output_tokens[window].sum())
    energy = float(result.iteration_energy_j[window].sum())
    return Served(tokens / (stop - start), energy / tokens, int(window.sum()))


def points(config: Mapping[str, Any]) -> Iterator[tuple[Point, str]]:
    """Every (point, reason) of ``config``: ``models``, ``lengths`` ([[input, output], ...] means),
    ``batches``, ``parallelism`` (model -> [tp, pp, ep]); ``reason`` is empty for a feasible point,
    else why it is skipped (the requests exceed the model's context window)."""
    parallel = dict(config.get("parallelism", {}))
    cv = float(config.get("length_cv", DEFAULT_LENGTH_CV))
    for model in config["models"]:
        tp, pp, ep = (int(x) for x in parallel.get(model, (1, 1, 1)))
        window = load_model(model).context_window
        for input_len, output_len in config["lengths"]:
            # a request one standard deviation above both means must fit the window (the serving
            # layer caps the few longer ones at the window)
            longest = (int(input_len) + int(output_len)) * (1 + cv)
            reason = "" if window is None or longest <= window else (
                f"{input_len}+{output_len} tokens (+1 sd: {longest:.0f}) exceed {model}'s {window}-position window")
            for batch in config["batches"]:
                yield Point(model, int(input_len), int(output_len), int(batch), (tp, pp, ep)), reason


def _settings(config: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    keys = ("length_cv", "requests_per_slot", "scheduler", "chunk", "seed", "bucket_width", "software")
    return tuple((k, config[k]) for k in keys if k in config)


def point_table(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per point: model, input, output, batch, both systems' tokens/s and J/token, the
    throughput ratio and energy change (%), or the reason the point was skipped."""
    system, baseline = str(config.get("system", "duplex")), str(config["baseline"])
    rows = []
    for point, reason in points(config):
        row: dict[str, Any] = {"model": point.model, "input": point.input_len, "output": point.output_len,
                               "batch": point.batch, "skipped": reason}
        if not reason:
            ours = served(point.model, system, point, _settings(config))
            theirs = served(point.model, baseline, point, _settings(config))
            row.update(tokens_per_s=ours.tokens_per_s, baseline_tokens_per_s=theirs.tokens_per_s,
                       ratio=ours.tokens_per_s / theirs.tokens_per_s, j_per_token=ours.joules_per_token,
                       baseline_j_per_token=theirs.joules_per_token,
                       energy_change_pct=100.0 * (ours.joules_per_token / theirs.joules_per_token - 1.0))
        rows.append(row)
    return rows


def _feasible(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = [r for r in point_table(config) if not r["skipped"]]
    if not rows:
        raise ArgumentError("duplex runner: every point of the config is skipped (context windows)")
    return rows


@register_runner("duplex_ratio")
def duplex_ratio(config: Mapping[str, Any]) -> float:
    """``statistic`` (``mean``/``max``) of Duplex's steady-state throughput over the baseline's."""
    ratios = np.array([r["ratio"] for r in _feasible(config)])
    statistic = str(config.get("statistic", "mean"))
    if statistic not in ("mean", "max"):
        raise ArgumentError(f"statistic: {statistic!r} not one of mean, max")
    return float(ratios.mean() if statistic == "mean" else ratios.max())


@register_runner("duplex_energy_change")
def duplex_energy_change(config: Mapping[str, Any]) -> float:
    """Mean change of energy per output token, Duplex vs the baseline, percent."""
    return float(np.mean([r["energy_change_pct"] for r in _feasible(config)]))
