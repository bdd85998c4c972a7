"""Records round-trip, MAPE on hand data, error bands and their warnings."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from decodex.validation.bands import BandTable, OpForBand
from decodex.validation.records import error_summary, load_records, mape, relative_errors, write_record


def _cases(measured: list[float], predicted: list[float], kind: str = "matmul") -> pd.DataFrame:
    n = len(measured)
    return pd.DataFrame({"kernel": ["gemv"] * n, "op_kind": [kind] * n, "shape": ['{"n": 8}'] * n,
                         "dtype": ["fp32"] * n, "flops": np.linspace(1e6, 1e9, n), "bytes": np.linspace(1e6, 1e8, n),
                         "measured_s": measured, "predicted_s": predicted,
                         "error": relative_errors(np.array(measured), np.array(predicted))})


def test_mape_by_hand() -> None:
    assert mape(np.array([1.0, 2.0, 4.0]), np.array([1.1, 1.8, 4.0])) == pytest.approx((0.1 + 0.1 + 0) / 3)
    assert relative_errors(np.array([2.0]), np.array([3.0]))[0] == pytest.approx(0.5)


def test_records_round_trip(tmp_path: Path) -> None:
    cases = _cases([1.0, 2.0], [1.5, 1.0])
    path = write_record("cpu-test", {"cpu_model": "Test CPU", "cores": 2, "device_kind": "cpu"}, cases,
                        kind="cpu", root=tmp_path, run_id="cpu-1")
    assert path.is_file() and path.with_suffix(".json").is_file()
    loaded = load_records(tmp_path)
    assert list(loaded["measured_s"]) == [1.0, 2.0] and set(loaded["device"]) == {"cpu-test"}
    assert set(loaded["device_kind"]) == {"cpu"}
    summary = error_summary(loaded)
    assert summary["cpu-test"]["matmul"] == {"mape": pytest.approx(0.5), "max_error": pytest.approx(0.5), "n": 2}


def test_band_brackets_the_prediction_with_the_error_quantiles() -> None:
    # predictions 10 % high on every case: measured = predicted / 1.1
    frame = _cases([1.0] * 20, [1.1] * 20)
    frame["device"] = "gpu-a"
    frame["device_kind"] = "gpu"
    table = BandTable(frame)
    band = table.step_band("gpu-a", "gpu", [OpForBand("matmul", "fp32", 1e8, 1e7, 1.1e-3)])
    assert band.low_s == pytest.approx(1e-3) and band.high_s == pytest.approx(1e-3)
    assert band.covered == 1.0 and band.warnings == ()


def test_band_warnings_for_unvalidated_kinds_dtypes_sizes_and_devices() -> None:
    frame = _cases([1.0, 1.0, 1.0], [0.9, 1.0, 1.2])
    frame["device"] = "gpu-a"
    frame["device_kind"] = "gpu"
    table = BandTable(frame)
    ops = [OpForBand("matmul", "bf16", 1e12, 1e7, 1.0), OpForBand("attention", "bf16", 1e6, 1e6, 1.0)]
    band = table.step_band("gpu-b", "gpu", ops)
    text = " | ".join(band.warnings)
    assert "no validation records for gpu-b" in text and "validated only in fp32" in text
    assert "outside the validated" in text and "attention unvalidated" in text
    assert band.covered == pytest.approx(0.5)
    assert band.low_s <= 2.0 <= band.high_s
    # the unvalidated attention takes the widest validated band: errors -10 %..+20 % (quantiles
    # 5 % and 95 % of -0.1, 0, +0.2) -> measured in [1 / 1.19, 1 / 0.91] s for its 1 s
    matmul_only = table.step_band("gpu-b", "gpu", ops[:1])
    attention = band.high_s - matmul_only.high_s
    assert attention == pytest.approx(1.0 / (1.0 + np.quantile([-0.1, 0.0, 0.2], 0.05)))
    assert "widest of the validated kinds" in text
    # with no records at all: a factor 2 either way, never a zero-width band
    empty = BandTable(load_records(Path("/nonexistent"))).step_band("x", "gpu", ops)
    assert (empty.low_s, empty.high_s) == (pytest.approx(1.0), pytest.approx(4.0))
    assert any("factor 2" in w for w in empty.warnings)


def test_estimate_carries_a_band() -> None:
    from decodex.api import estimate

    result = estimate("llama3-8b", "h100-sxm", 8, context=512)
    assert result.band_low_s <= result.step_time_s * 1.5 and result.band_high_s >= result.band_low_s
    assert "band_low_s" in result.summary() and isinstance(result.summary()["warnings"], list)


def test_the_simulator_reads_no_records_the_facade_attaches_them() -> None:
    """sim.estimate leaves the band empty (no record feeds a prediction); decodex.estimate adds
    it without changing any predicted number; simulate's band scales with the engine time."""
    import decodex
    from decodex.sim.estimate import estimate as raw_estimate
    from decodex.validation.bands import attach_band

    raw = raw_estimate("llama3-8b", "h100-sxm", 8, context=512)
    assert math.isnan(raw.band_low_s) and raw.band_source == "" and raw.warnings == ()
    banded = decodex.estimate("llama3-8b", "h100-sxm", 8, context=512)
    assert banded.step_time_s == raw.step_time_s and banded.records == raw.records
    assert banded == attach_band(raw)
    assert banded.band_source == "records of h100-sxm"
    sim = decodex.simulate("llama3-8b", "h100-sxm", 8, context=512)
    scale = sim.step_time_s / sim.analytical_step_time_s
    assert sim.band_low_s == pytest.approx(banded.band_low_s * scale, rel=1e-12)
    assert sim.band_high_s == pytest.approx(banded.band_high_s * scale, rel=1e-12)


def test_an_unwritable_records_folder_is_one_line_error(tmp_path: Path) -> None:
    from decodex.core.errors import DecodexError
    from decodex.validation.records import CASE_COLUMNS

    blocker = tmp_path / "records"
    blocker.write_text("a file where a folder should be")
    cases = pd.DataFrame([dict.fromkeys(CASE_COLUMNS, 1.0)])
    with pytest.raises(DecodexError, match="cannot write the record") as info:
        write_record("dev", {}, cases, kind="cpu", root=blocker)
    assert "\n" not in str(info.value)
