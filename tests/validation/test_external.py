"""``validate external``: Vidur's measured kernel times against the GPU specs (validation/external*.py).

The data ship with the package (validation/data/vidur-profiling), so every test runs.
"""

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

from decodex.core.errors import DecodexError
from decodex.hw_models import collective_cost, op_time
from decodex.hw_models.device import load_device
from decodex.hw_models.efficiency import EfficiencyCurve
from decodex.hw_models.memory import LinkSpec
from decodex.hw_models.roofline import RooflineUnit, padded_rows
from decodex.hw_models.system import DEVICES_DIR, load_system
from decodex.validation import external
from decodex.validation.device_fit_writer import FIT_TAG, write_device_fit
from decodex.validation.external_compare import compare, summary
from decodex.validation.external_data import (
    DATA_ENV,
    ELEMENTWISE_OPS,
    GEMM_OPS,
    GPU_DEVICES,
    PACKAGED_DATA_DIR,
    data_available,
    find_data_dir,
    load_compute,
    load_network,
)
from decodex.validation.external_fit import FIT_FILE, FitRows, fit_gpu_efficiency, roofline_times
from decodex.validation.external_ops import DTYPE, compute_ops, ops_for_row
from decodex.validation.gpu_fit import TILE_M_CANDIDATES, GpuFit
from decodex.workloads.ops import ElementwiseOp, EmbeddingOp, MatmulOp


@pytest.fixture(scope="module")
def compute() -> pd.DataFrame:
    return load_compute()


@pytest.fixture(scope="module")
def network() -> pd.DataFrame:
    return load_network()


def test_loaders_parse_every_file(compute: pd.DataFrame, network: pd.DataFrame) -> None:
    root = find_data_dir()
    files = sorted((root / "compute").glob("*/*/*/mlp.csv"))
    assert len(files) == 7
    expected = sum(len(pd.read_csv(f)) for f in files) * (len(GEMM_OPS) + len(ELEMENTWISE_OPS))
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


def test_op_shapes_by_hand(compute: pd.DataFrame) -> None:
    row = compute[(compute["model"] == "Llama-2-7b-hf") & (compute["tp"] == 1) & (compute["num_tokens"] == 128)].iloc[0]
    ops = ops_for_row(row)
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
    assert ops_for_row(gqa)["attn_pre_proj"].n == (8 + 2 * 1) * 128


def test_sampled_comparison_is_fast_and_shaped(compute: pd.DataFrame, network: pd.DataFrame) -> None:
    start = time.perf_counter()
    frame, result = external.run_external(sample=50)
    assert time.perf_counter() - start < 15.0
    assert {"gpu", "kind", "op", "shape", "measured_s", "predicted_s", "error"} <= set(frame.columns)
    assert frame.groupby(["gpu", "kind"]).size().max() <= 50
    assert np.allclose(frame["error"], frame["predicted_s"] / frame["measured_s"] - 1.0)
    assert set(result) == {"a100-80g", "h100-sxm"}
    assert set(result["a100-80g"]) == {"gemm", "elementwise", "all_reduce"}
    assert set(result["h100-sxm"]) == {"gemm", "elementwise", "all_reduce", "send_recv"}
    for kinds in result.values():
        for stats in kinds.values():
            assert set(stats) == {"mape", "max_error", "n"}
            assert isinstance(stats["n"], int) and 0 <= stats["mape"] <= stats["max_error"]
    json.dumps(result)  # the shape `decodex validate external --json` prints
    assert summary(frame) == result


def test_held_out_h100_errors_with_the_committed_specs(compute: pd.DataFrame, network: pd.DataFrame) -> None:
    # every held-out H100 GEMM and collective (about 1 s); the A100 rows were the fit
    frame = compare(compute=compute[(compute["gpu"] == "h100") & (compute["kind"] == "gemm")],
                       network=network[network["gpu"] == "h100"])
    h100 = summary(frame)["h100-sxm"]
    # the goal was 10 %; the committed fit reaches 10.4 % (docs/validation-external.md): guard that
    assert h100["gemm"]["mape"] < 0.105
    assert h100["all_reduce"]["mape"] < 0.20


@pytest.mark.xfail(strict=True, reason="goals not met: H100 GEMM MAPE 10.4 % (goal 10 %), send/recv 30 % "
                                       "(goal 20 %); see docs/validation-external.md")
def test_held_out_goals(compute: pd.DataFrame, network: pd.DataFrame) -> None:
    frame = compare(compute=compute[(compute["gpu"] == "h100") & (compute["kind"] == "gemm")],
                       network=network[network["gpu"] == "h100"])
    h100 = summary(frame)["h100-sxm"]
    assert h100["gemm"]["mape"] <= 0.10 and h100["send_recv"]["mape"] <= 0.20


def test_vectorized_roofline_matches_op_time(compute: pd.DataFrame) -> None:
    for (gpu, kind), everything in compute.groupby(["gpu", "kind"]):
        group = everything.sample(40, random_state=1)
        device = load_system(GPU_DEVICES[gpu]).primary_device
        unit = device.units["tensor" if kind == "gemm" else "simt"]
        assert isinstance(unit, RooflineUnit)
        memory = device.memories["hbm"]
        arrays = FitRows.of(group)
        fast = roofline_times(arrays.flops, arrays.work(unit.tile_m), arrays.nbytes, unit.peak_flops(DTYPE),
                                 memory.bandwidth_bytes_per_s, unit.efficiency, memory.efficiency,
                                 unit.op_overhead_s, unit.overlap_exponent)
        slow = [op_time(op, unit.name, device).time_s for op in compute_ops(group)]
        assert np.allclose(fast, slow, rtol=1e-12, atol=0.0)


def test_fit_is_deterministic_on_a_subset() -> None:
    start = time.perf_counter()
    first = fit_gpu_efficiency(sample=300)
    second = fit_gpu_efficiency(sample=300)
    assert time.perf_counter() - start < 30.0
    first.pop("date")
    second.pop("date")
    assert first == second
    fit = first["fit"]
    for key in ("tensor_efficiency", "hbm_efficiency", "simt_efficiency"):
        sizes, values = fit[key]["sizes"], fit[key]["values"]
        assert all(b > a for a, b in itertools.pairwise(sizes))
        assert all(0 < v <= 1 for v in values) and values == sorted(values)
    assert fit["tile_m"] in TILE_M_CANDIDATES and fit["overlap_exponent"] >= 1
    assert 0 < fit["nvlink_efficiency"] <= 1 and fit["collective_overhead_s"] >= 0
    assert first["data"]["sample_per_kind"] == 300
    assert all("a100" in f for f in first["data"]["fit_files"])
    assert not any("a100" in f for f in first["data"]["held_out_files"])
    with pytest.raises(ValueError, match="sample"):
        fit_gpu_efficiency(sample=10, write=True)


def test_committed_specs_are_the_committed_fit() -> None:
    result = json.loads(FIT_FILE.read_text())
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
    fit = GpuFit(curve, 3e-6, 128, 2.0, EfficiencyCurve((1e6, 1e9), (0.5, 0.8)),
                    EfficiencyCurve((1e6, 1e9), (0.05, 0.1)), 4e-6, 0.7, 1e-6, 2e-5)
    write_device_fit(path, fit)
    once = path.read_text()
    write_device_fit(path, fit)
    assert path.read_text() == once  # idempotent: the old sourced values stay in the comments
    device = load_device(path)
    tensor = device.units["tensor"]
    assert isinstance(tensor, RooflineUnit)
    assert tensor.efficiency == curve and tensor.tile_m == 128 and tensor.overlap_exponent == 2.0
    assert device.memories["hbm"].efficiency.values == (0.5, 0.8)
    assert device.links["nvlink"].collective_overhead_s == 2e-5 and device.links["pcie"].latency_s == 1.0e-6
    after = once.splitlines()
    fitted = [line for line in after if FIT_TAG in line]
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


def test_the_packaged_copy_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATA_ENV, raising=False)
    assert find_data_dir() == PACKAGED_DATA_DIR and data_available()
    assert (PACKAGED_DATA_DIR / "LICENSE").read_text().strip().startswith("MIT License")
    assert "microsoft/vidur" in (PACKAGED_DATA_DIR / "README.md").read_text()
    for module in Path(external.__file__).parent.glob("external*.py"):  # nothing reads ../shared any more
        assert "shared/validation-data" not in module.read_text()


def test_data_dir_and_variable_override_the_packaged_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a folder holding vidur-profiling/ with the network files only and no compute rows
    copy = tmp_path / "elsewhere" / "vidur-profiling"
    (copy / "compute").mkdir(parents=True)
    shutil.copytree(PACKAGED_DATA_DIR / "network" / "h100_dgx", copy / "network" / "h100_dgx")
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "elsewhere"))
    assert find_data_dir() == copy
    assert set(load_network()["cluster"]) == {"h100_dgx"}
    with pytest.raises(DecodexError, match="no compute"):
        load_compute()
    # data_dir= wins over the variable
    assert find_data_dir(PACKAGED_DATA_DIR) == PACKAGED_DATA_DIR
    assert set(load_network(PACKAGED_DATA_DIR)["cluster"]) == {"a100_dgx", "h100_dgx"}


def test_a_missing_folder_is_a_one_line_error_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "no-such-folder"
    with pytest.raises(DecodexError) as caught:
        find_data_dir(missing)
    assert str(missing) in str(caught.value) and "\n" not in str(caught.value)
    assert not data_available(missing)
    monkeypatch.setenv(DATA_ENV, str(missing))
    with pytest.raises(DecodexError, match=f"\\${DATA_ENV}"):
        find_data_dir()
    assert not data_available()


def test_the_module_split_keeps_the_cli_imports() -> None:
    # app/cli_validate.py imports these four from decodex.validation.external
    assert external.data_available is data_available and external.fit_gpu_efficiency is fit_gpu_efficiency
    assert callable(external.run_external) and callable(external.write_external_records)
