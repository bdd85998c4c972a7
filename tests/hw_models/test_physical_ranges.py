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


@pytest.mark.parametrize(("table", "key", "close"), [
    ("units.tensor", "op_overhed_s", "op_overhead_s"),     # a misspelled optional field
    ("memories.hbm", "bandwith_bytes_per_s", "bandwidth_bytes_per_s"),
    ("device.price", "purchase_usd_", "purchase_usd"),
])
def test_a_misspelled_key_is_an_error_with_a_suggestion(tmp_path: Path, table: str, key: str, close: str) -> None:
    with pytest.raises(SpecError, match=rf"{key}: unknown field; did you mean '{close}'") as err:
        load_device(_variant(tmp_path, table, key, "1.0"))
    assert "\n" not in str(err.value)


def test_a_misspelled_table_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "variant.toml"
    path.write_text('[device]\nname = "variant"\nextends = "h100-sxm"\n\n[memory.hbm]\ncapacity_bytes = 1e9\n')
    with pytest.raises(SpecError, match="memory: unknown field; did you mean 'memories'"):
        load_device(path)


def test_system_files_refuse_unknown_keys(tmp_path: Path) -> None:
    from decodex.hw_models.system import load_system

    path = tmp_path / "sys.toml"
    path.write_text('[system]\nname = "sys"\ndefault_mapper = "gpu"\ndescripton = "x"\n\n'
                    '[[system.devices]]\ndevice = "h100-sxm"\ncount = 2\n')
    with pytest.raises(SpecError, match="descripton: unknown field; did you mean 'description'"):
        load_system(path)
    path.write_text('[system]\nname = "sys"\ndefault_mapper = "gpu"\n\n'
                    '[[system.devices]]\ndevice = "h100-sxm"\ncount = 2\nrol = "attention"\n')
    with pytest.raises(SpecError, match=r"devices\[0\]\.rol: unknown field; did you mean 'role'"):
        load_system(path)


def test_a_long_extends_chain_is_refused(tmp_path: Path) -> None:
    (tmp_path / "d0.toml").write_text('[device]\nname = "d0"\nextends = "h100-sxm"\n')
    for i in range(1, 1000):
        (tmp_path / f"d{i}.toml").write_text(f'[device]\nname = "d{i}"\nextends = "d{i - 1}"\n')
    assert load_device(tmp_path / "d10.toml").name == "d10"
    with pytest.raises(SpecError, match="more than 16 files extend each other") as err:
        load_device(tmp_path / "d999.toml")
    assert "\n" not in str(err.value)
