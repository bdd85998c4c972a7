"""``validate external``: Vidur's measured kernel times against the GPU specs (validation/external.py)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import decodex.validation.external as ve
from decodex.hw_models import collective_cost, op_time
from decodex.hw_models.device import load_device
from decodex.hw_models.efficiency import EfficiencyCurve
from decodex.hw_models.memory import LinkSpec
from decodex.hw_models.roofline import RooflineUnit, padded_rows
from decodex.hw_models.system import DEVICES_DIR, load_system
from decodex.workloads.ops import ElementwiseOp, EmbeddingOp, MatmulOp

needs_data = pytest.mark.skipif(
    not ve.data_available(),
    reason=f"Vidur profiling data not found (shared/validation-data/vidur-profiling beside the repository "
           f"or ${ve.DATA_ENV})")


@pytest.fixture(scope="module")
def compute() -> pd.DataFrame:
    return ve.load_compute()


@pytest.fixture(scope="module")
def network() -> pd.DataFrame:
    return ve.load_network()


@needs_data
def test_loaders_parse_every_file(compute: pd.DataFrame, network: pd.DataFrame) -> None:
    root = ve.find_data_dir()
    files = sorted((root / "compute").glob("*/*/*/mlp.csv"))
    assert len(files) == 7
    expected = sum(len(pd.read_csv(f)) for f in files) * (len(ve.GEMM_OPS) + len(ve.ELEMENTWISE_OPS))
    assert len(compute) == expected
    assert set(compute["gpu"]) == {"a100", "h100"} and set(compute["kind"]) == {"gemm", "elementwise"}
    assert (compute["measured_s"] > 0).all() and compute["measured_s"].max() < 1.0  # ms converted to s
    assert compute["use_gated_mlp"].dtype == bool
    net_files = sorted((root / "network").glob("*/*.csv"))
    assert len(network) == sum(len(pd.read_csv(f)) for f in net_files)
    assert set(network["kind"]) == {"all_reduce", "send_recv"}
    assert (network["payload_bytes"] == network["size"]).all()
    # intra-node rows only where the group fits in a node
    assert (network["intra_node"] == (network["devices_per_node"] >= network["num_workers"])).all()


@needs_data
def test_op_shapes_by_hand(compute: pd.DataFrame) -> None:
    row = compute[(compute["model"] == "Llama-2-7b-hf") & (compute["tp"] == 1) & (compute["num_tokens"] == 128)].iloc[0]
    ops = ve.ops_for_row(row)
    qkv = ops["attn_pre_proj"]
    assert isinstance(qkv, MatmulOp) and (qkv.m, qkv.n, qkv.k) == (128, 12288, 4096)
    assert (ops["attn_post_proj"].n, ops["attn_post_proj"].k) == (4096, 4096)
    assert (ops["mlp_up_proj"].n, ops["mlp_up_proj"].k) == (2 * 11008, 4096)
    assert (ops["mlp_down_proj"].n, ops["mlp_down_proj"].k) == (4096, 11008)
    assert qkv.flops == 2 * 128 * 12288 * 4096 and qkv.bytes == 2 * (128 * 4096 + 4096 * 12288 + 128 * 12288)
    norm, rope, act, add = (ops[k] for k in ("input_layernorm", "attn_rope", "mlp_act", "add"))
    assert isinstance(norm, ElementwiseOp) and norm.elements == 128 * 4096 and norm.flops_per_element == 4.0
    assert rope.elements == 128 * (32 + 32) * 128 and rope.flops_per_element == 3.0
    assert act.elements == 128 * 11008 and act.flops_per_element == 5.0 and act.tensors_read == 2
    assert add.tensors_read == 2 and add.flops_per_element == 1.0
    emb = ops["emb"]
    # Vidur's file gives the padded vocabulary, 32768
    assert isinstance(emb, EmbeddingOp) and (emb.tokens, emb.dim, emb.rows) == (128, 4096, 32768)
    # GQA under tensor parallelism: llama3-70b, tp 8 -> 8 query heads and 1 KV head per device
    gqa = compute[(compute["model"] == "Meta-Llama-3-70B") & (compute["tp"] == 8)].iloc[0]
    assert ve.ops_for_row(gqa)["attn_pre_proj"].n == (8 + 2 * 1) * 128


@needs_data
def test_sampled_comparison_is_fast_and_shaped(compute: pd.DataFrame, network: pd.DataFrame) -> None:
    start = time.perf_counter()
    frame, summary = ve.run_external(sample=50)
    assert time.perf_counter() - start < 15.0
    assert {"gpu", "kind", "op", "shape", "measured_s", "predicted_s", "error"} <= set(frame.columns)
    assert frame.groupby(["gpu", "kind"]).size().max() <= 50
    assert np.allclose(frame["error"], frame["predicted_s"] / frame["measured_s"] - 1.0)
    assert set(summary) == {"a100-80g", "h100-sxm"}
    assert set(summary["a100-80g"]) == {"gemm", "elementwise", "all_reduce"}
    assert set(summary["h100-sxm"]) == {"gemm", "elementwise", "all_reduce", "send_recv"}
    for kinds in summary.values():
        for stats in kinds.values():
            assert set(stats) == {"mape", "max_error", "n"}
            assert isinstance(stats["n"], int) and 0 <= stats["mape"] <= stats["max_error"]
    json.dumps(summary)  # the shape `decodex validate external --json` prints
    assert ve.summary(frame) == summary


@needs_data
def test_held_out_h100_errors_with_the_committed_specs(compute: pd.DataFrame, network: pd.DataFrame) -> None:
    # every held-out H100 GEMM and collective (about 1 s); the A100 rows were the fit
    frame = ve.compare(compute=compute[(compute["gpu"] == "h100") & (compute["kind"] == "gemm")],
                       network=network[network["gpu"] == "h100"])
    h100 = ve.summary(frame)["h100-sxm"]
    # the goal was 10 %; the committed fit reaches 10.4 % (docs/validation-external.md): guard that
    assert h100["gemm"]["mape"] < 0.105
    assert h100["all_reduce"]["mape"] < 0.20


@needs_data
@pytest.mark.xfail(strict=True, reason="goals not met: H100 GEMM MAPE 10.4 % (goal 10 %), send/recv 30 % "
                                       "(goal 20 %); see docs/validation-external.md")
def test_held_out_goals(compute: pd.DataFrame, network: pd.DataFrame) -> None:
    frame = ve.compare(compute=compute[(compute["gpu"] == "h100") & (compute["kind"] == "gemm")],
                       network=network[network["gpu"] == "h100"])
    h100 = ve.summary(frame)["h100-sxm"]
    assert h100["gemm"]["mape"] <= 0.10 and h100["send_recv"]["mape"] <= 0.20


@needs_data
def test_vectorized_roofline_matches_op_time(compute: pd.DataFrame) -> None:
    for (gpu, kind), everything in compute.groupby(["gpu", "kind"]):
        group = everything.sample(40, random_state=1)
        device = load_system(ve.GPU_DEVICES[gpu]).primary_device
        unit = device.units["tensor" if kind == "gemm" else "simt"]
        assert isinstance(unit, RooflineUnit)
        memory = device.memories["hbm"]
        arrays = ve._Rows.of(group)
        fast = ve.roofline_times(arrays.flops, arrays.work(unit.tile_m), arrays.nbytes, unit.peak_flops(ve.DTYPE),
                                 memory.bandwidth_bytes_per_s, unit.efficiency, memory.efficiency,
                                 unit.op_overhead_s, unit.overlap_exponent)
        slow = [op_time(op, unit.name, device).time_s for op in ve._compute_ops(group)]
        assert np.allclose(fast, slow, rtol=1e-12, atol=0.0)


@needs_data
def test_fit_is_deterministic_on_a_subset() -> None:
    start = time.perf_counter()
    first = ve.fit_gpu_efficiency(sample=300)
    second = ve.fit_gpu_efficiency(sample=300)
    assert time.perf_counter() - start < 30.0
    first.pop("date")
    second.pop("date")
    assert first == second
    fit = first["fit"]
    for key in ("tensor_efficiency", "hbm_efficiency", "simt_efficiency"):
        sizes, values = fit[key]["sizes"], fit[key]["values"]
        assert all(b > a for a, b in itertools.pairwise(sizes))
        assert all(0 < v <= 1 for v in values) and values == sorted(values)
    assert fit["tile_m"] in ve.TILE_M_CANDIDATES and fit["overlap_exponent"] >= 1
    assert 0 < fit["nvlink_efficiency"] <= 1 and fit["collective_overhead_s"] >= 0
    assert first["data"]["sample_per_kind"] == 300
    assert all("a100" in f for f in first["data"]["fit_files"])
    assert not any("a100" in f for f in first["data"]["held_out_files"])
    with pytest.raises(ValueError, match="sample"):
        ve.fit_gpu_efficiency(sample=10, write=True)


def test_committed_specs_are_the_committed_fit() -> None:
    result = json.loads(ve.FIT_FILE.read_text())
    assert {"date", "scipy_version", "objective", "stages", "fit", "devices", "errors"} <= set(result)
    for name, values in result["devices"].items():
        device = load_system(name).primary_device
        tensor, simt = device.units["tensor"], device.units["simt"]
        assert isinstance(tensor, RooflineUnit) and isinstance(simt, RooflineUnit)
        assert tensor.efficiency == EfficiencyCurve(tuple(values["tensor_efficiency"]["sizes"]),
                                                    tuple(values["tensor_efficiency"]["values"]))
        assert device.memories["hbm"].efficiency.values == tuple(values["hbm_efficiency"]["values"])
        assert simt.efficiency.values == tuple(values["simt_efficiency"]["values"])
        assert (tensor.op_overhead_s, tensor.tile_m, tensor.overlap_exponent) == (
            values["tensor_overhead_s"], values["tile_m"], values["overlap_exponent"])
        if "nvlink" in device.links:
            link = device.links["nvlink"]
            assert (link.efficiency, link.latency_s, link.collective_overhead_s) == (
                values["nvlink_efficiency"], values["nvlink_latency_s"], values["collective_overhead_s"])
    # the H100 keeps its own measured large-size anchors through the ratio rule
    h100 = result["devices"]["h100-sxm"]
    a100 = result["devices"]["a100-80g"]
    ratio = np.array(h100["tensor_efficiency"]["values"]) / np.array(a100["tensor_efficiency"]["values"])
    assert np.allclose(ratio, 0.807 / 0.859, rtol=2e-3)


def test_device_fit_writer_keeps_the_rest_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "h100-sxm.toml"
    shutil.copy(DEVICES_DIR / "h100-sxm.toml", path)
    before = path.read_text().splitlines()
    curve = EfficiencyCurve((1e8, 1e10, 1e12), (0.3, 0.6, 0.7))
    fit = ve.GpuFit(curve, 3e-6, 128, 2.0, EfficiencyCurve((1e6, 1e9), (0.5, 0.8)),
                    EfficiencyCurve((1e6, 1e9), (0.05, 0.1)), 4e-6, 0.7, 1e-6, 2e-5)
    ve.write_device_fit(path, fit)
    once = path.read_text()
    ve.write_device_fit(path, fit)
    assert path.read_text() == once  # idempotent: the old sourced values stay in the comments
    device = load_device(path)
    tensor = device.units["tensor"]
    assert isinstance(tensor, RooflineUnit)
    assert tensor.efficiency == curve and tensor.tile_m == 128 and tensor.overlap_exponent == 2.0
    assert device.memories["hbm"].efficiency.values == (0.5, 0.8)
    assert device.links["nvlink"].collective_overhead_s == 2e-5 and device.links["pcie"].latency_s == 1.0e-6
    after = once.splitlines()
    fitted = [line for line in after if ve.FIT_TAG in line]
    assert len(fitted) == 13 and all("was: " in line for line in fitted if not line.startswith("values"))
    assert "was: value = 0.807 (derived: 798 / 989.4" in once
    assert [line for line in before if line.startswith(("peak", "fp", "bf16", "[", "capacity", "bandwidth"))] == \
        [line for line in after if line.startswith(("peak", "fp", "bf16", "[", "capacity", "bandwidth"))]


def test_collective_overhead_is_added_once_per_group_collective() -> None:
    link = LinkSpec("nvlink", 100e9, 1e-6, 0.5)
    slow = dataclasses.replace(link, collective_overhead_s=30e-6)
    for collective, devices in (("all_reduce", 8), ("all_gather", 4), ("all_to_all", 4)):
        base = collective_cost(collective, 1e6, devices, link).time_s
        assert collective_cost(collective, 1e6, devices, slow).time_s == pytest.approx(base + 30e-6)
    # a point-to-point send pays only its hop latency
    assert collective_cost("send_recv", 1e6, 2, slow).time_s == collective_cost("send_recv", 1e6, 2, link).time_s
    assert collective_cost("all_reduce", 1e6, 1, slow).time_s == 0.0


def test_tile_padding_rule() -> None:
    assert [padded_rows(m, 64) for m in (1, 16, 17, 33, 64, 65, 128, 129)] == [16, 16, 32, 64, 64, 128, 128, 192]
    assert padded_rows(100, 0) == 100


def test_data_dir_errors_name_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ve.DATA_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError, match=ve.DATA_ENV):
        ve.find_data_dir()
    assert not ve.data_available()
