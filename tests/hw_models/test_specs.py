"""Device and system specs: the catalog loads; bad files get errors naming file, field, range."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from decodex.core.dtypes import DType
from decodex.core.errors import ArgumentError, SpecError
from decodex.hw_models.device import device_from_dict, load_device
from decodex.hw_models.efficiency import EfficiencyCurve
from decodex.hw_models.spec_reader import TableReader
from decodex.hw_models.system import DEVICES_DIR, list_devices, list_systems, load_system, system_from_dict
from tests.conftest import ideal_device

REQUIRED = {"a100-40g", "a100-80g", "h100-sxm", "h200", "v100s", "h800", "h20", "a800", "cpu-host"}


def test_catalog_has_required_devices_and_systems() -> None:
    assert set(list_devices()) >= REQUIRED
    assert set(list_systems()) >= REQUIRED


@pytest.mark.parametrize("name", sorted(set(list_devices())))
def test_every_device_loads_with_sane_numbers(name: str) -> None:
    device = load_device(DEVICES_DIR / f"{name}.toml")
    assert device.capacity_bytes > 1e9
    assert device.main_memory.bandwidth_bytes_per_s > 1e10
    assert device.power.idle_w <= device.power.tdp_w
    assert device.unit_for_role("matrix")


@pytest.mark.parametrize("name", sorted(set(list_systems())))
def test_every_system_loads(name: str) -> None:
    system = load_system(name)
    assert system.default_mapper
    assert system.device_count >= 1


def test_gpu_specs_match_datasheets() -> None:
    h100 = load_system("h100-sxm").primary_device
    assert h100.units["tensor"].peak_flops(DType.BF16) == pytest.approx(989.4e12)
    assert h100.main_memory.bandwidth_bytes_per_s == pytest.approx(3.35e12)
    assert h100.units["simt"].peak_flops(DType.FP32) == pytest.approx(66.9e12)
    v100s = load_system("v100s").primary_device
    assert not v100s.units["tensor"].supports(DType.BF16)


def test_every_number_in_catalog_specs_has_a_source_comment() -> None:
    number = re.compile(r"^\s*[\w.]+\s*=\s*\[?\s*[-+]?\d")
    for path in sorted(Path(DEVICES_DIR).glob("*.toml")):
        lines = path.read_text().splitlines()
        for index, line in enumerate(lines):
            if number.match(line.split("#", 1)[0]):
                previous = lines[index - 1].strip() if index else ""
                assert "#" in line or previous.startswith("#"), f"{path.name}:{index + 1} has no source"


@pytest.mark.parametrize(("change", "field", "message"), [
    ({"memories.hbm.bandwidth_bytes_per_s": -1.0}, "memories.hbm.bandwidth_bytes_per_s", "outside"),
    ({"units.tensor.efficiency": 1.5}, "units.tensor.efficiency", "outside"),
    ({"units.tensor.memory": "dram"}, "units.tensor.memory", "not one of"),
    ({"units.tensor.model": "magic"}, "units.tensor.model", "not one of"),
    ({"device.kind": "quantum"}, "device.kind", "not one of"),
    ({"device.power.idle_w": 500.0}, "device.power.idle_w", "exceeds"),
    ({"units.tensor.peak_flops": {"bf17": 1e12}}, "units.tensor.peak_flops.bf17", "unknown dtype"),
    ({"units.tensor.energy_per_flop_j": {"bf16": 1e-12}}, "units.tensor.energy_per_flop_j", "missing"),
    ({"units.tensor.efficiency": {"sizes": [1e9, 1e6], "values": [0.5, 0.6]}}, "units.tensor.efficiency.sizes",
     "ascending"),
    ({"links.nvlink.latency_s": "fast"}, "links.nvlink.latency_s", "finite number"),
])
def test_bad_spec_fields_are_named(change: dict[str, object], field: str, message: str) -> None:
    with pytest.raises(SpecError) as info:
        device_from_dict(ideal_device(**change), "bad.toml")
    assert info.value.source == "bad.toml"
    assert info.value.field == field
    assert message in info.value.message


def test_missing_table_and_bad_file(tmp_path: Path) -> None:
    data = ideal_device()
    del data["memories"]
    with pytest.raises(SpecError, match="memories: required table is missing"):
        device_from_dict(data, "x.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[device\nname=")
    with pytest.raises(SpecError, match="not valid TOML"):
        load_system(str(broken))
    with pytest.raises(ArgumentError, match="unknown system"):
        load_system("no-such-system")


def test_device_name_must_match_file(tmp_path: Path) -> None:
    path = tmp_path / "other.toml"
    path.write_text((DEVICES_DIR / "h100-sxm.toml").read_text())
    with pytest.raises(SpecError, match="must equal the file name"):
        load_device(path)


def test_system_file_with_device_reference(tmp_path: Path) -> None:
    path = tmp_path / "pair.toml"
    path.write_text('[system]\nname = "pair"\ndefault_mapper = "gpu"\n'
                    '[[system.devices]]\ndevice = "h100-sxm"\ncount = 2\n'
                    '[system.interconnect]\nintra_node_link = "nvlink"\ndevices_per_node = 8\n')
    system = load_system(str(path))
    assert system.device_count == 2 and not system.scalable
    assert system.link_for_group(2).name == "nvlink"
    bad = {"system": {"name": "x", "default_mapper": "gpu", "devices": [{"device": "h100-sxm", "count": 1}],
                      "interconnect": {"intra_node_link": "warp-drive"}}}
    with pytest.raises(SpecError, match="no link 'warp-drive'"):
        system_from_dict(bad, "x.toml")


def test_efficiency_curve_interpolates_in_log_size() -> None:
    curve = EfficiencyCurve((1e6, 1e9), (0.2, 0.8))
    assert curve.at(1e3) == pytest.approx(0.2)
    assert curve.at(1e12) == pytest.approx(0.8)
    assert curve.at(10**7.5) == pytest.approx(0.5)
    assert EfficiencyCurve.read(TableReader({"efficiency": 0.7}, "t")).at(5.0) == 0.7
    with pytest.raises(SpecError, match="points but sizes"):
        EfficiencyCurve.read(TableReader({"efficiency": {"sizes": [1.0, 2.0], "values": [0.5]}}, "t"))


def _write_edit(path: Path, old: str, new: str) -> None:
    """Replace ``old`` by ``new`` in ``path`` and move its modification time on (a coarse clock
    could give the edit the time of the first write)."""
    import os

    text = path.read_text()
    assert old in text
    before = path.stat().st_mtime_ns
    path.write_text(text.replace(old, new))
    os.utime(path, ns=(before + 10**9, before + 10**9))


def test_an_edit_of_any_file_a_system_is_built_from_is_seen(tmp_path: Path) -> None:
    """A system file names a device file, which extends another: an edit of any of the three is
    seen by the next load_system; while nothing changes, the same spec object comes back."""
    (tmp_path / "base.toml").write_text((DEVICES_DIR / "h100-sxm.toml").read_text().replace(
        'name = "h100-sxm"', 'name = "base"'))
    (tmp_path / "fast.toml").write_text('[device]\nname = "fast"\nextends = "base"\n\n'
                                        '[memories.hbm]\nbandwidth_bytes_per_s = 4.0e12\n')
    system = tmp_path / "pair.toml"
    system.write_text('[system]\nname = "pair"\ndefault_mapper = "gpu"\n\n[[system.devices]]\n'
                      'device = "fast.toml"\ncount = 2\n\n[system.interconnect]\nintra_node_link = "nvlink"\n')
    first = load_system(str(system))
    assert load_system(str(system)) is first and load_system(system) is first
    assert first.primary_device.main_memory.bandwidth_bytes_per_s == 4.0e12

    _write_edit(tmp_path / "fast.toml", "4.0e12", "5.0e12")  # the device file the system names
    second = load_system(str(system))
    assert second is not first and second.primary_device.main_memory.bandwidth_bytes_per_s == 5.0e12

    _write_edit(tmp_path / "base.toml", "idle_w = 70.0", "idle_w = 90.0")  # the file it extends
    third = load_system(str(system))
    assert third is not second and third.primary_device.power.idle_w == 90.0
    assert load_system(str(system)) is third

    _write_edit(system, "count = 2", "count = 4")  # the system file itself
    assert load_system(str(system)).groups[0].count == 4
