"""The H200 vector unit fitted on its own Numba kernel record: the halves, the SM-fill model that
validate gpu predicts with, the fit and its check on the held-out half, why the catalog keeps the
transferred curve, and the writers."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from decodex.core.dtypes import DType
from decodex.hw_models.efficiency import EfficiencyCurve
from decodex.hw_models.roofline import RooflineUnit
from decodex.hw_models.system import DEVICES_DIR, load_device, load_system
from decodex.validation.device_fit_writer import KERNEL_FIT_PREFIX, write_device_fit
from decodex.validation.gpu_fit import GpuFit
from decodex.validation.kernel_validation import predict
from decodex.validation.kernels import KERNELS
from decodex.validation.records import RECORDS_DIR
from decodex.validation.vector_fit import fit_vector_unit, kernel_times, record_fill, split_halves, write_vector_fit

RECORD = "h200/gpu-20261204T142717Z.csv"


@pytest.fixture(scope="module")
def result() -> dict:
    return fit_vector_unit(RECORD)


def test_halves_are_disjoint_cover_the_record_and_hold_every_kernel() -> None:
    frame = pd.read_csv(RECORDS_DIR / RECORD)
    fit, check = split_halves(frame)
    assert len(fit) + len(check) == len(frame) and abs(len(fit) - len(check)) <= 1
    key = ["kernel", "shape", "dtype", "measured_s"]
    both = pd.concat([fit[key], check[key]]).sort_values(key).reset_index(drop=True)
    assert both.equals(frame[key].sort_values(key).reset_index(drop=True))
    assert set(fit["kernel"]) == set(check["kernel"]) == set(frame["kernel"])


def test_the_fit_model_is_what_validate_gpu_predicts() -> None:
    """kernel_times (the fit's model) and predict with the GPU's SMs (what validate gpu records)
    are one mechanism: the compute term over the launch's SM fill."""
    frame = pd.read_csv(RECORDS_DIR / RECORD)
    device = load_system("h200").primary_device
    simt, hbm = device.units["simt"], device.memories["hbm"]
    assert isinstance(simt, RooflineUnit)
    fill = record_fill(frame, 132)
    times = kernel_times(frame, fill, simt.peak_flops(DType.FP32), hbm.bandwidth_bytes_per_s, simt.efficiency,
                         hbm.efficiency, simt.op_overhead_s)
    predicted = [predict(KERNELS[r.kernel], json.loads(r.shape), r.dtype, device, 132)[1] for r in frame.itertuples()]
    assert np.allclose(times, predicted, rtol=1e-12)
    assert np.allclose(frame["predicted_s"], [predict(KERNELS[r.kernel], json.loads(r.shape), r.dtype, device)[1]
                                              for r in frame.itertuples()], rtol=1e-12)  # as recorded: no fill
    one_block = frame.index[(frame["kernel"] == "gemm") & (frame["shape"] == '{"k": 64, "m": 64, "n": 64}')][0]
    assert fill[one_block] == 1 / 132 and (fill <= 1).all() and (fill > 0).all()


def test_the_trial_fits_the_kernels_on_half_and_checks_on_the_other(result: dict) -> None:
    check = result["check"]
    assert check["fitted"]["mape"] < check["spec"]["mape"] / 3
    assert check["fitted"]["mape"] < 0.5
    assert abs(check["fitted"]["mape"] - result["fit"]["fitted"]["mape"]) < 0.1  # no overfit of the fit half
    assert all(np.diff(result["curve"]["values"]) >= 0)  # never less efficient on more work
    assert 0 < result["overhead_s"] < 4.5e-6  # below the fastest kernel measured (4.49 us)
    assert result["rows_below_one_wave"] == 12


def test_the_catalog_keeps_the_transferred_curve_because_elementwise_ops_fit_it_better(result: dict) -> None:
    """estimate runs only element-wise ops on a GPU's vector unit; on the record's element-wise
    kernels (RMSNorm, softmax) the fit over all kernels is worse than the transferred A100 curve,
    so no field was written (docs/validation-gpu.md)."""
    def elementwise(key: str) -> float:
        return float(np.mean([result[h][key][k] for h in ("fit", "check") for k in ("rmsnorm", "softmax")]))

    assert elementwise("fitted_by_kernel") > elementwise("spec_by_kernel")
    simt = load_system("h200").primary_device.units["simt"]
    assert isinstance(simt, RooflineUnit)
    assert simt.efficiency.values == tuple(result["spec"]["values"])
    assert KERNEL_FIT_PREFIX not in (DEVICES_DIR / "h200.toml").read_text()


def test_write_is_idempotent_and_the_external_fit_keeps_it(tmp_path: Path, result: dict) -> None:
    shutil.copy(DEVICES_DIR / "h200.toml", tmp_path / "h200.toml")
    write_vector_fit(result, devices_dir=tmp_path, fits_dir=tmp_path)
    once = (tmp_path / "h200.toml").read_text()
    saved = json.loads((tmp_path / "h200-vector.json").read_text())
    assert saved["curve"] == result["curve"] and saved["record"] == RECORD
    written = load_device(tmp_path / "h200.toml").units["simt"]
    assert isinstance(written, RooflineUnit) and written.op_overhead_s == result["overhead_s"]
    again = fit_vector_unit(RECORD, str(tmp_path / "h200.toml"))
    write_vector_fit(again, devices_dir=tmp_path, fits_dir=tmp_path)
    assert (tmp_path / "h200.toml").read_text() == once  # idempotent
    assert json.loads((tmp_path / "h200-vector.json").read_text()) == saved  # keeps the first comparison
    other = GpuFit(EfficiencyCurve((1e8, 1e12), (0.3, 0.7)), 3e-6, 128, 2.0, EfficiencyCurve((1e6, 1e9), (0.5, 0.8)),
                   EfficiencyCurve((1e6, 1e9), (0.05, 0.1)), 4e-6, 0.7, 1e-6, 2e-5)
    write_device_fit(tmp_path / "h200.toml", other)  # the Vidur A100 fit transferred
    device = load_device(tmp_path / "h200.toml")
    simt, tensor = device.units["simt"], device.units["tensor"]
    assert isinstance(simt, RooflineUnit) and isinstance(tensor, RooflineUnit)
    assert simt.efficiency.values == tuple(result["curve"]["values"])  # the GPU's own kernel fit stays
    assert tensor.efficiency.values == (0.3, 0.7)  # the rest takes the transfer
    assert sum(KERNEL_FIT_PREFIX in line for line in (tmp_path / "h200.toml").read_text().splitlines()) == 3


def test_cli_fits_without_a_gpu() -> None:
    out = subprocess.run([sys.executable, "-m", "decodex.app.cli", "validate", "gpu", "--fit", RECORD, "--json"],
                         capture_output=True, text=True, check=True, timeout=300)
    data = json.loads(out.stdout)
    assert data["device"] == "h200" and data["unit"] == "simt" and data["written"] is None
    assert data["check"]["fitted"]["rows"] == 25
