"""Every spec number is held to the physical range of its unit: nonsense such as 1e-300 B/s is
an error naming file and field, while every catalog spec stays inside."""

from __future__ import annotations

from pathlib import Path

import pytest

from decodex.core.errors import SpecError
from decodex.hw_models.device import load_device
from decodex.hw_models.spec_reader import physical_range
from decodex.hw_models.system import DEVICES_DIR, list_devices


def _variant(tmp_path: Path, table: str, key: str, value: str) -> Path:
    path = tmp_path / "variant.toml"
    path.write_text(f'[device]\nname = "variant"\nextends = "h100-sxm"\n\n[{table}]\n{key} = {value}\n')
    return path


@pytest.mark.parametrize(("table", "key", "value"), [
    ("memories.hbm", "bandwidth_bytes_per_s", "1e-300"),   # was a ZeroDivisionError / NaN downstream
    ("memories.hbm", "bandwidth_bytes_per_s", "1e30"),
    ("memories.hbm", "capacity_bytes", "1e30"),
    ("device.power", "tdp_w", "1e12"),
    ("units.tensor.peak_flops", "bf16", "1e-9"),
    ("units.tensor.peak_flops", "bf16", "1e40"),
    ("links.nvlink", "latency_s", "1e9"),
])
def test_values_outside_the_unit_range_name_the_field(tmp_path: Path, table: str, key: str, value: str) -> None:
    with pytest.raises(SpecError, match=rf"{table.split('.')[-1]}\.{key}.*outside") as err:
        load_device(_variant(tmp_path, table, key, value))
    assert "\n" not in str(err.value)


def test_units_have_ranges_and_the_catalog_is_inside() -> None:
    assert physical_range("bandwidth_bytes_per_s") == (1e3, 1e17)
    assert physical_range("capacity_bytes")[1] == 1e16 and physical_range("latency_s") == (0.0, 3600.0)
    assert physical_range("energy_per_flop_j")[1] == 1e-3
    assert physical_range("tile_m") == (float("-inf"), float("inf"))
    for name in list_devices():
        load_device(DEVICES_DIR / f"{name}.toml")
