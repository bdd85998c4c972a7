"""NeuPIMs against its artifact's runs: the rows and traces read, the one-layer difference, the op
mapping, the CLI table, and the matched configurations within their tolerances."""

from __future__ import annotations

import json

import numpy as np
import pytest

from decodex.app.cli import main
from decodex.core.errors import ArgumentError
from decodex.sim.estimate import evaluate, plan_step
from decodex.validation.neupims_artifact import (
    CONFIGS,
    OMIT,
    OPS,
    compare_artifact,
    layer_cycles,
    load_runs,
    load_trace,
)
from decodex.workloads.parallelism import Parallelism

TRACE64 = "share-gpt2-bs64-ms7B-tp4-pp1-clb-0.csv"


def test_one_run_per_configuration_and_batch() -> None:
    runs = load_runs()
    assert len(runs) == 12
    assert set(runs["config"]) == set(CONFIGS)
    assert sorted(set(runs["batch"])) == [64, 256, 512]
    assert runs["branch_commit"].str.match(r"^[\w+-]+@[0-9a-f]{40}$").all()
    npu_only = runs[runs["config"] == "npuonly"]
    assert (npu_only["attention_cycles"] == npu_only["attn_NPU_FusedMHA"]).all()
    naive = runs[runs["config"] == "npupim"].iloc[0]
    assert naive["attention_cycles"] == naive["attn_logit_softmax_PIM"] + naive["attn_attend_PIM"]


def test_layer_cycles_are_the_ops_of_one_decoder_layer() -> None:
    # without overlap (npu-only, analytical) one layer's cycles are the sum of its ops
    cycles, ops = layer_cycles("npuonly", TRACE64)
    contexts, _ = load_trace(TRACE64)
    plan = plan_step("gpt3-7b", "npu-only", 64, context=contexts, precision="fp16", parallelism=Parallelism(tp=4),
                     omit=OMIT)
    layer = sum(r.time_s for r in evaluate(plan).records if r.repeat == 32) * 1e9
    assert cycles == pytest.approx(layer, rel=1e-9)
    assert set(ops) == set(OPS) and all(v > 0 for v in ops.values())
    assert sum(ops.values()) < cycles  # norms and activations are in the layer, not in the five ops


def test_cli_prints_every_configuration(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "neupims-artifact"]) == 0
    out = capsys.readouterr().out
    for label, *_ in CONFIGS.values():
        assert label in out
    assert main(["validate", "neupims-artifact", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["rows"]) == 12 and "mape" in data["summary"]


def test_artifact_matched_targets_run_through_the_runner() -> None:
    from decodex.core.errors import ArgumentError
    from decodex.validation.neupims_artifact import artifact_layer_cycles
    from decodex.validation.reproduce import load_targets, run_target

    targets = [t for t in load_targets() if t.runner == "neupims_artifact_layer"]
    assert len(targets) == 12 and {t.group for t in targets} == {"neupims"}
    runs = load_runs().set_index(["config", "batch"])
    for target in targets:
        assert target.value == int(runs.loc[(target.config["config"], target.config["batch"]), "per_layer_cycles"])
    # NPU-only matches its artifact by mechanism (head-serial attention, first-pass GEMMs)
    npu_only = [run_target(t) for t in targets if t.config["config"] == "npuonly"]
    assert all(r.passed for r in npu_only)
    with pytest.raises(ArgumentError, match="config"):
        artifact_layer_cycles({"config": "gpu", "batch": 64, "context": 300})


def test_speedup_targets_are_the_artifacts_own_ratios() -> None:
    from decodex.core.errors import ArgumentError
    from decodex.validation.neupims_artifact import artifact_speedup, layer_cycles
    from decodex.validation.reproduce import load_targets

    targets = [t for t in load_targets() if t.runner == "neupims_artifact_ratio"]
    assert len(targets) == 9
    runs = load_runs().set_index(["config", "batch"])
    for target in targets:
        cfg = target.config
        measured = (runs.loc[(cfg["baseline"], cfg["batch"]), "per_layer_cycles"]
                    / runs.loc[(cfg["system"], cfg["batch"]), "per_layer_cycles"])
        assert target.value == pytest.approx(measured, rel=1e-4)
    # the runner's speedup is the ratio of the two layers' cycles
    cfg = {"system": "main_sboff", "baseline": "npuonly", "trace": TRACE64}
    expected = layer_cycles("npuonly", TRACE64)[0] / layer_cycles("main_sboff", TRACE64)[0]
    assert artifact_speedup(cfg) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ArgumentError, match="baseline"):
        artifact_speedup({**cfg, "baseline": "gpu"})


def test_the_traces_are_the_batches_the_artifact_ran() -> None:
    runs = load_runs()
    for run in runs.itertuples(index=False):
        contexts, channels = load_trace(str(run.trace))
        assert contexts.size == run.batch and channels.min() >= 0 and channels.max() < 32
        # the trace's seq_len keys include the new token: cached = seq_len - 1 (at least 1)
        assert float(np.mean(contexts + 1)) == pytest.approx(run.mean_seq_len, abs=0.06)
    with pytest.raises(ArgumentError, match="trace"):
        load_trace("no-such-trace.csv")


def test_the_artifact_matched_configurations_agree_with_its_runs() -> None:
    # every per-layer count within the targets' 15 % and every op within 25 % (the NPU-only, PIM
    # and bus-sharing mechanisms, docs/neupims.md)
    compared = compare_artifact()
    assert (compared["error"].abs() <= 0.15).all()
    op_errors = compared[[f"{key}_error" for key in OPS]].abs().to_numpy(dtype=float)
    assert np.nanmax(op_errors) <= 0.25
