"""Automatic parallel layouts: the smallest layout at which the step fits, tensor parallelism
first, then tensor x pipeline; roles systems keep their own layout; nothing fitting is reported,
not hidden; and the CLI uses it by default, says so, and refuses a step that does not fit."""

from __future__ import annotations

import dataclasses
import json

import pytest

from decodex.app.cli import main
from decodex.app.cli_layout import EXIT_DOES_NOT_FIT
from decodex.hw_models.system import load_system
from decodex.sim.auto_layout import candidates, choose_layout, device_limit
from decodex.sim.estimate import estimate
from decodex.workloads.parallelism import Parallelism


def test_candidates_take_tensor_parallelism_first_then_fewest_devices() -> None:
    labels = [p.label for p in candidates(load_system("8x-h100-sxm"))]
    assert labels[:4] == ["tp1", "tp2", "tp4", "tp8"]
    assert labels[4:] == ["tp1·pp2", "tp2·pp2", "tp1·pp4", "tp4·pp2", "tp2·pp4", "tp1·pp8"]
    assert device_limit(load_system("h100-sxm")) == 8  # a scalable entry: its node
    assert [p.label for p in candidates(load_system("h100-sxm"), pp=2)] == ["tp1·pp2", "tp2·pp2", "tp4·pp2"]
    assert [p.ep for p in candidates(load_system("8x-h100-sxm"), ep=4)[:4]] == [1, 1, 4, 4]


@pytest.mark.parametrize(("model", "system", "label"), [
    ("llama3-8b", "h100-sxm", "tp1"),
    ("llama3-70b", "h100-sxm", "tp2"),   # 141 GB of bf16 weights: two 80 GB devices
    ("llama3-70b", "a100-40g", "tp4"),
])
def test_the_smallest_layout_that_fits(model: str, system: str, label: str) -> None:
    choice = choose_layout(model, system, 8, context=2048)
    assert choice.fits and choice.parallelism.label == label
    assert choice.tried[-1] == label and "auto" in choice.note
    for smaller in choice.tried[:-1]:  # every smaller layout tried really does not fit
        tp = int(smaller.removeprefix("tp"))
        assert not estimate(model, system, 8, context=2048, parallelism=Parallelism(tp=tp)).fits


def test_more_memory_never_takes_more_devices() -> None:
    base = load_system("a100-40g")
    device = base.primary_device
    name = next(k for k, m in device.memories.items() if m is device.main_memory)
    memory = dataclasses.replace(device.main_memory, capacity_bytes=device.main_memory.capacity_bytes * 2)
    bigger = dataclasses.replace(device, memories={**device.memories, name: memory})
    roomy = dataclasses.replace(base, groups=tuple(dataclasses.replace(g, device=bigger) for g in base.groups))
    small = choose_layout("llama3-70b", base, 8, context=2048).parallelism
    large = choose_layout("llama3-70b", roomy, 8, context=2048).parallelism
    assert large.devices <= small.devices


def test_roles_and_nothing_fitting() -> None:
    roles = choose_layout("step3", "step3-2a2f-h800", 8, context=2048)
    assert roles.parallelism == Parallelism() and "roles" in roles.note
    card = choose_layout("llama2-7b", "alveo-u280", 1, context=1024)  # bf16 weights on an 8.6 GB card, alone
    assert not card.fits and card.parallelism.label == "tp1" and "no layout of at most 1 devices fits" in card.note


def test_the_cli_chooses_says_and_refuses(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["estimate", "--model", "llama3-70b", "--system", "h100-sxm", "--batch", "8", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["fits"] and data["devices"] == 2 and data["layout"].startswith("tp2:")
    assert main(["estimate", "--model", "llama3-70b", "--system", "h100-sxm", "--tp", "4"]) == 0
    assert "layout: tp4 (as given)" in capsys.readouterr().out
    assert main(["estimate", "--model", "llama2-7b", "--system", "alveo-u280"]) == EXIT_DOES_NOT_FIT
    assert "does not fit" in capsys.readouterr().err
    assert main(["estimate", "--model", "llama2-7b", "--system", "alveo-u280", "--report-unfit"]) == 0
    assert main(["simulate", "--model", "llama3-70b", "--system", "h100-sxm", "--tp", "1"]) == EXIT_DOES_NOT_FIT
    capsys.readouterr()
    assert main(["serve", "--model", "llama3-70b", "--system", "h100-sxm", "--rate", "1", "--requests", "20",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["parallelism"] == "tp2"
