"""The GPU mapper's software variants: optimized (default) vs HF-PyTorch-2023 eager attention."""

from __future__ import annotations

import numpy as np
import pytest

from decodex.core.errors import ArgumentError
from decodex.sim.estimate import estimate, plan_step
from decodex.sim.simulate import simulate
from decodex.workloads.batch import Batch


def test_default_is_optimized_and_unchanged() -> None:
    default = estimate("gpt3-7b", "a100-40g", 16, context=300, precision="fp16")
    explicit = estimate("gpt3-7b", "a100-40g", 16, context=300, precision="fp16", software="optimized")
    assert default.step_time_s == explicit.step_time_s
    assert "attention" in set(default.ops["name"])


def test_eager_attention_ops_and_padding() -> None:
    batch = Batch.decode(4, np.array([10, 100, 200, 1000]))
    plan = plan_step("gpt3-7b", "a100-40g", batch, precision="fp16", software="hf-pytorch-2023")
    names = [p.op.name for p in plan.placements if p.template.name == "dense_layer"]
    assert "attention" not in names
    order = [names.index(n) for n in ("kv_concat", "attn_scores", "attn_softmax", "attn_context")]
    assert order == sorted(order)
    scores = next(p.op for p in plan.placements if p.op.name == "attn_scores")
    assert scores.n == 1001  # padded to the longest request
    assert scores.weight_dtype is None and scores.count == 4 * 32
    assert plan.options["software"] == "hf-pytorch-2023"


def test_paper_software_slower_and_simulate_matches() -> None:
    opt = estimate("gpt3-7b", "a100-40g", 64, context=228, precision="fp16")
    hf = estimate("gpt3-7b", "a100-40g", 64, context=228, precision="fp16", software="hf-pytorch-2023")
    assert hf.step_time_s > opt.step_time_s
    sim = simulate("gpt3-7b", "a100-40g", 64, context=228, precision="fp16", software="hf-pytorch-2023")
    assert sim.step_time_s == pytest.approx(hf.step_time_s, rel=1e-9)


def test_unknown_software_refused() -> None:
    with pytest.raises(ArgumentError):
        estimate("gpt3-7b", "a100-40g", 4, precision="fp16", software="tensorrt")
