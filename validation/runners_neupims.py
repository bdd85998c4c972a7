"""Runner of the NeuPIMs reproduction (ASPLOS 2024): throughput of NeuPIMs over a baseline.

A (model, dataset, batch) point is one decode step of a batch in the middle of continuous
decoding. With ``lengths = "sampled"`` (the targets' setting) the batch is a snapshot of a
continuously batched server in steady state, as the NeuPIMs artifact builds its traces
(``trace-generator/get_distributions.py``: slots refilled from the dataset, snapshots taken after
a warm-up). Requests come from the dataset preset (``sim.serving.workload.Workload.preset``:
lognormal prompt/output lengths, ShareGPT mean 80/296 tokens, Alpaca 12/56) with
``numpy.random.default_rng(seed)``, capped at the model's context window. In steady state a slot
holds a request for as many steps as it has output tokens, so a snapshot sees each request with
probability proportional to its output length (renewal theory: length-biased sampling), at a
decode progress uniform in ``[0, output_len)``; its cached context is input + progress tokens.
``occupancy = "uniform"`` instead draws the batch's requests with equal probability (no length
bias: a batch that all started together). Requests differ in length, so the channel policies
(greedy vs round-robin) and the sub-batch split see unequal loads, as in the paper's workloads.
With ``lengths`` a list of [input, output] pairs every request sits at the mean context input +
output / 2 (the earlier, uniform workload).

FP16, one token out per request. Throughput = batch / step time, so a point's ratio is baseline
step time / NeuPIMs step time on the same requests. The reported value is the arithmetic mean of
the ratios over models x datasets x batches x seeds, each model at its ``parallelism`` (per-device
shards; pipeline stages run one after another, so the step time is the sum over stages for every
system alike). NeuPIMs runs through the discrete-event engine (``simulate``: its sub-batch
interleaving is an overlap); baselines with one stream use ``estimate`` (equal to ``simulate``
there, see tests), except when ``baseline_simulate`` is set. ``communication = false`` leaves the
collectives and pipeline sends out of every system's step (the artifact simulates one device:
``n_tp`` only shrinks its shapes), see docs/neupims.md.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from decodex.core.errors import ArgumentError
from decodex.sim.estimate import evaluate, plan_step
from decodex.sim.serving.workload import Workload
from decodex.sim.simulate import simulate_plan
from decodex.validation.reproduce import register_runner
from decodex.workloads.catalog import load_model
from decodex.workloads.ops import OpKind
from decodex.workloads.parallelism import Parallelism

PRECISION = "fp16"
DEFAULT_SEEDS = 3


COMMUNICATION_KINDS = (OpKind.COLLECTIVE, OpKind.TRANSFER)


@lru_cache(maxsize=4096)
def step_time(model: str, system: str, batch: int, context: int | tuple[int, ...], tp: int, pp: int, engine: bool,
              options: tuple[tuple[str, Any], ...], communication: bool = True) -> float:
    """Step time (s) of a decode batch of ``batch`` requests; ``context``: cached tokens of every
    request (an int) or of each request (a tuple of ``batch`` ints). ``communication=False``
    leaves the collectives and pipeline sends out of the step (one device's shard, free links)."""
    ctx: int | np.ndarray = context if isinstance(context, int) else np.asarray(context, dtype=np.int64)
    omit = () if communication else COMMUNICATION_KINDS
    plan = plan_step(model, system, batch, context=ctx, precision=PRECISION, parallelism=Parallelism(tp=tp, pp=pp),
                     omit=omit, **dict(options))
    result = simulate_plan(plan) if engine else evaluate(plan)
    return float(result.step_time_s)


OCCUPANCIES = ("steady-state", "uniform")
POOL_PER_REQUEST = 16  # candidate requests drawn per batch slot for the length-biased snapshot
MIN_POOL = 4096


def sampled_contexts(model: str, dataset: str, batch: int, seed: int, occupancy: str = "steady-state") -> np.ndarray:
    """Cached tokens (int64, one per request) of a ``batch``-request decode batch drawn from the
    ``dataset`` preset with ``seed``: input + a decode progress uniform in [0, output_len).

    ``occupancy``: ``steady-state`` picks the batch's requests from a pool of
    ``max(MIN_POOL, POOL_PER_REQUEST * batch)`` drawn requests with probability proportional to
    their output tokens (with replacement, as the artifact's ``random.choices`` refill);
    ``uniform`` takes the first ``batch`` drawn requests."""
    if occupancy not in OCCUPANCIES:
        raise ArgumentError(f"occupancy: {occupancy!r} not one of {', '.join(OCCUPANCIES)}")
    window = load_model(model).max_position_embeddings
    rng = np.random.default_rng((seed, batch))
    if occupancy == "uniform":
        requests = Workload.preset(dataset, 1.0).generate(batch, seed=seed, max_total_tokens=window)
        inputs, outputs = requests.input_tokens, requests.output_tokens
    else:
        pool = Workload.preset(dataset, 1.0).generate(max(MIN_POOL, POOL_PER_REQUEST * batch), seed=seed,
                                                       max_total_tokens=window)
        weight = pool.output_tokens.astype(np.float64)
        pick = rng.choice(weight.size, size=batch, replace=True, p=weight / weight.sum())
        inputs, outputs = pool.input_tokens[pick], pool.output_tokens[pick]
    progress = np.floor(rng.random(batch) * outputs).astype(np.int64)
    return inputs + progress


@dataclass(frozen=True)
class Point:
    """One (model, dataset, batch, seed) point of a config: its requests' cached tokens."""

    model: str
    dataset: str
    batch: int
    seed: int | None
    context: int | tuple[int, ...]
    tp: int
    pp: int


def points(config: Mapping[str, Any]) -> Iterator[Point]:
    """The config's points: ``lengths = "sampled"`` with ``datasets`` (preset names) and
    ``seeds`` (a count, seeds 0..n-1) and optional ``occupancy`` (see :func:`sampled_contexts`),
    or ``lengths`` = [[input, output], ...] (mean context)."""
    parallel = dict(config.get("parallelism", {}))
    lengths = config["lengths"]
    for model in config["models"]:
        tp, pp = (int(x) for x in parallel.get(model, (1, 1)))
        if lengths == "sampled":
            for dataset in config["datasets"]:
                for batch in config["batches"]:
                    for seed in range(int(config.get("seeds", DEFAULT_SEEDS))):
                        ctx = tuple(int(c) for c in sampled_contexts(model, str(dataset), int(batch), seed,
                                                                     str(config.get("occupancy", "steady-state"))))
                        yield Point(model, str(dataset), int(batch), seed, ctx, tp, pp)
        elif isinstance(lengths, list | tuple):
            for input_len, output_len in lengths:
                for batch in config["batches"]:
                    yield Point(model, f"{input_len}/{output_len}", int(batch), None,
                                int(input_len) + int(output_len) // 2, tp, pp)
        else:
            raise ArgumentError(f"lengths: {lengths!r} must be 'sampled' or a list of [input, output] pairs")


def point_ratio(config: Mapping[str, Any], point: Point) -> float:
    """Baseline step time / NeuPIMs step time at ``point``."""
    system = str(config.get("system", "neupims"))
    options = tuple(sorted(dict(config.get("baseline_options", {})).items()))
    communication = bool(config.get("communication", True))
    ours = step_time(point.model, system, point.batch, point.context, point.tp, point.pp, True, (), communication)
    theirs = step_time(point.model, str(config["baseline"]), point.batch, point.context, point.tp, point.pp,
                       bool(config.get("baseline_simulate", False)), options, communication)
    return theirs / ours


def ratio_table(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per point: model, dataset, batch, seed, mean context (tokens) and ratio."""
    rows = []
    for point in points(config):
        context = np.mean(point.context)
        rows.append({"model": point.model, "dataset": point.dataset, "batch": point.batch, "seed": point.seed,
                     "mean_context": float(context), "ratio": point_ratio(config, point)})
    return rows


def ratios(config: Mapping[str, Any]) -> list[float]:
    """Baseline step time / NeuPIMs step time at every point of ``config`` (see :func:`points`)."""
    return [point_ratio(config, point) for point in points(config)]


@register_runner("neupims_ratio")
def neupims_ratio(config: Mapping[str, Any]) -> float:
    """Mean throughput ratio NeuPIMs / ``baseline`` (module docstring). Config: ``baseline``
    (system), ``baseline_options`` (mapper options), ``models``, ``lengths`` (``"sampled"`` with
    ``datasets`` and ``seeds``, or [input, output] pairs), ``batches``, ``parallelism``
    (model -> [tp, pp]), optional ``system``."""
    return float(np.mean(ratios(config)))
