"""Runner of the NeuPIMs reproduction (ASPLOS 2024): throughput of NeuPIMs over a baseline.

The decode workload of one (model, dataset, batch) point is the *average decode step*: every
request at the mean context of the generation, input + output / 2 tokens (ShareGPT-like 80/296 ->
228, Alpaca-like 12/56 -> 40), FP16, one token out per request. Throughput = batch / step time,
so a ratio is baseline step time / NeuPIMs step time. The reported value is the arithmetic mean
of the ratios over models x datasets x batches, each model at its ``parallelism`` (per-device
shards; pipeline stages run one after another, so the step time is the sum over stages for every
system alike). NeuPIMs runs through the discrete-event engine (``simulate``: its sub-batch
interleaving is an overlap); baselines with one stream use ``estimate`` (equal to ``simulate``
there, see tests), except when ``baseline_simulate`` is set.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import numpy as np

from sim.estimate import estimate
from sim.simulate import simulate
from validation.reproduce import register_runner
from workloads.parallelism import Parallelism

PRECISION = "fp16"


@lru_cache(maxsize=4096)
def step_time(model: str, system: str, batch: int, context: int, tp: int, pp: int, engine: bool,
              options: tuple[tuple[str, Any], ...]) -> float:
    """Step time (s) of a decode batch of ``batch`` requests at ``context`` cached tokens."""
    run = simulate if engine else estimate
    result = run(model, system, batch, context=context, precision=PRECISION,
                 parallelism=Parallelism(tp=tp, pp=pp), **dict(options))
    return float(result.step_time_s)


def ratios(config: Mapping[str, Any]) -> list[float]:
    """Baseline step time / NeuPIMs step time at every (model, lengths, batch) point of ``config``."""
    parallel = dict(config.get("parallelism", {}))
    out = []
    system = str(config.get("system", "neupims"))
    baseline = str(config["baseline"])
    options = tuple(sorted(dict(config.get("baseline_options", {})).items()))
    for model in config["models"]:
        tp, pp = (int(x) for x in parallel.get(model, (1, 1)))
        for input_len, output_len in config["lengths"]:
            context = int(input_len) + int(output_len) // 2
            for batch in config["batches"]:
                ours = step_time(model, system, int(batch), context, tp, pp, True, ())
                theirs = step_time(model, baseline, int(batch), context, tp, pp,
                                   bool(config.get("baseline_simulate", False)), options)
                out.append(theirs / ours)
    return out


@register_runner("neupims_ratio")
def neupims_ratio(config: Mapping[str, Any]) -> float:
    """Mean throughput ratio NeuPIMs / ``baseline`` (module docstring). Config: ``baseline``
    (system), ``baseline_options`` (mapper options), ``models``, ``lengths`` ([input, output]
    pairs), ``batches``, ``parallelism`` (model -> [tp, pp]), optional ``system``."""
    return float(np.mean(ratios(config)))
