"""Runners of the reproduction targets: configuration -> simulated value."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from decodex.sim.estimate import estimate
from decodex.validation.reproduce import register_runner
from decodex.workloads.parallelism import Parallelism


@register_runner("layer_ops_time")
def layer_ops_time(config: Mapping[str, Any]) -> float:
    """Seconds one decoder layer spends in the named ops (``ops``, each counted ``weights[op]``
    times, default 1) of a decode step: ``model``, ``system``, ``batch``, ``context``, ``tp``."""
    result = estimate(config["model"], config["system"], int(config["batch"]), context=int(config.get("context", 1)),
                      precision=str(config.get("precision", "bf16")),
                      parallelism=Parallelism(tp=int(config.get("tp", 1))))
    weights = dict(config.get("weights", {}))
    frame = result.ops
    layer = frame[frame["template"] == config.get("template", "dense_layer")].set_index("name")
    missing = [op for op in config["ops"] if op not in layer.index]
    if missing:
        raise KeyError(f"ops {missing} not in the layer (it has {list(layer.index)})")
    return float(sum(layer.loc[op, "time_s"] * float(weights.get(op, 1.0)) for op in config["ops"]))
