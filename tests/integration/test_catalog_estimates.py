"""Every catalog model estimates on GPU systems; infeasible points say why."""

from __future__ import annotations

import math

import pytest

from decodex.core.dtypes import DType
from decodex.core.errors import DecodexError
from decodex.hw_models.system import list_systems, load_system
from decodex.mappers.base import MAPPERS
from decodex.sim.estimate import estimate
from decodex.workloads.catalog import list_models, load_model
from decodex.workloads.parallelism import Parallelism


@pytest.mark.parametrize("name", list_models())
def test_every_model_estimates_on_eight_h100(name: str) -> None:
    model = load_model(name)
    tp = 8
    while model.attention.num_heads % tp:
        tp //= 2
    ep = tp if model.moe and model.moe.num_experts % tp == 0 else 1
    result = estimate(model, "h100-sxm", 16, context=min(512, model.max_position_embeddings - 1),
                      parallelism=Parallelism(tp=tp, ep=ep))
    assert math.isfinite(result.step_time_s) and result.step_time_s > 0
    assert result.fits == (result.reason == "")
    assert result.energy_per_token_j > 0


@pytest.mark.parametrize("system", list_systems())
def test_every_system_runs_a_small_model(system: str) -> None:
    spec = load_system(system)
    if spec.default_mapper not in MAPPERS:
        pytest.skip(f"mapper {spec.default_mapper!r} of {system} is not built yet")
    has_bf16 = any(u.supports(DType.BF16) for u in spec.primary_device.units.values())
    precision = "bf16" if has_bf16 else "fp16"
    try:
        result = estimate("llama2-7b", system, 4, context=256, precision=precision,
                          parallelism=Parallelism(tp=1))
    except DecodexError as err:  # a system may lack a datapath; it must then say so
        pytest.fail(f"{system}: {err}")
    assert result.fits and result.tokens_per_s > 0


def test_faster_gpu_is_faster_on_the_same_decode() -> None:
    times = {s: estimate("llama3-8b", s, 32, context=2048).step_time_s for s in ("a100-80g", "h100-sxm", "h200")}
    assert times["h200"] < times["h100-sxm"] < times["a100-80g"]
