"""The near-memory (Logic-PIM) unit and device files that extend another device."""

from __future__ import annotations

import itertools

import pytest

from decodex.core.dtypes import DType
from decodex.core.errors import ArgumentError, SpecError
from decodex.explore.studies.duplex import duplex_device, probe_op
from decodex.hw_models.bank_pim import BankPimUnit
from decodex.hw_models.device import load_device, read_device_toml
from decodex.hw_models.logic_pim import LogicPimUnit
from decodex.hw_models.system import DEVICES_DIR, load_system
from decodex.workloads.ops import MatmulOp


def _pim(name: str = "duplex") -> tuple[LogicPimUnit, object]:
    device = load_device(DEVICES_DIR / f"{name}.toml")
    unit = device.units["pim"]
    assert isinstance(unit, LogicPimUnit)
    return unit, device


def test_duplex_logic_pim_peak_bandwidth_and_ridge_from_the_spec() -> None:
    unit, device = _pim()
    memory = device.memories["hbm"]
    assert unit.peak_flops_any == pytest.approx(2 * 5 * 32 * 512 * 650e6)  # 106.5 TFLOP/s
    assert unit.path_bandwidth(memory) == pytest.approx(4 * 3.35e12 * 0.8158)
    # nominal ridge (both efficiencies 1): 106.5 TFLOP/s / 13.4 TB/s ~ 8 FLOP/B, the paper's Op/B
    assert unit.peak_flops_any / (4 * memory.bandwidth_bytes_per_s) == pytest.approx(7.95, rel=0.01)
    # Bank-PIM: a bank_pim unit (HBM3 all-bank commands); its banks read 32 B each per tCCD_L, which is
    # the paper's 16x the HBM bandwidth, and its MACs match that read rate: ridge at Op/B 1
    bank_device = load_device(DEVICES_DIR / "duplex-bank-pim.toml")
    bank = bank_device.units["pim"]
    assert isinstance(bank, BankPimUnit)
    in_bank = bank.channels * bank.banks_per_channel * bank.burst_bytes / (bank.tccd_l * bank.tck_s)
    assert in_bank / bank_device.memories["hbm"].bandwidth_bytes_per_s == pytest.approx(16.0, rel=0.02)
    assert bank.peak_flops(DType.FP16) / in_bank == pytest.approx(1.0)


def test_logic_pim_matmul_time_by_hand() -> None:
    unit, device = _pim()
    memory = device.memories["hbm"]
    # 8 tokens x (8192 x 8192) fp16: 1.07 GFLOP, 134 MB of weights -> memory-bound on the PIM
    op = MatmulOp(name="fc", dtype=DType.FP16, m=8, n=8192, k=8192, weight_dtype=DType.FP16)
    cost = unit.op_cost(op, device.memories)
    assert cost.memory_s == pytest.approx(op.bytes / unit.path_bandwidth(memory))
    assert cost.compute_s == pytest.approx(op.flops / unit.peak_flops_any)
    assert cost.time_s == pytest.approx(max(cost.compute_s, cost.memory_s))
    assert cost.energy_j == pytest.approx(op.flops * unit.energy_per_flop_j + op.bytes * unit.energy_per_byte_j)
    # 512 tokens: compute-bound (Op/B ~ 512 >> ridge ~ 10)
    big = MatmulOp(name="fc", dtype=DType.FP16, m=512, n=8192, k=8192, weight_dtype=DType.FP16)
    assert unit.op_cost(big, device.memories).bound == "compute"
    assert not unit.supports(DType.FP8)


def test_more_pim_bandwidth_is_never_slower() -> None:
    times = []
    for multiple in (1, 2, 4, 8, 16):
        device = duplex_device(bandwidth_multiple=multiple)
        times.append(device.units["pim"].op_cost(probe_op(4), device.memories).time_s)
    assert all(b <= a for a, b in itertools.pairwise(times))
    assert times[-1] < times[0]
    with pytest.raises(ArgumentError, match="not a Logic-PIM"):  # a bank_pim unit has no TSV multiple
        duplex_device("duplex-bank-pim", bandwidth_multiple=2)


def test_extends_merges_tables_and_overrides_values(tmp_path) -> None:
    base = (DEVICES_DIR / "h100-sxm.toml").read_text()
    (tmp_path / "base.toml").write_text(base.replace('name = "h100-sxm"', 'name = "base"'))
    (tmp_path / "child.toml").write_text('[device]\nname = "child"\nextends = "base"\n'
                                         '[memories.hbm]\ncapacity_bytes = 160.0e9\n')
    child = load_device(tmp_path / "child.toml")
    parent = load_device(tmp_path / "base.toml")
    assert child.name == "child" and child.kind == parent.kind
    assert child.memories["hbm"].capacity_bytes == 160e9
    assert child.memories["hbm"].bandwidth_bytes_per_s == parent.memories["hbm"].bandwidth_bytes_per_s
    assert sorted(child.units) == sorted(parent.units)
    assert "extends" not in read_device_toml(tmp_path / "child.toml")["device"]
    # a system built from the device file resolves the base as well
    assert load_system(tmp_path / "child.toml").primary_device.memories["hbm"].capacity_bytes == 160e9


def test_extends_replaces_a_unit_whose_model_changes(tmp_path) -> None:
    # duplex-bank-pim names model = "bank_pim" for duplex's logic_pim unit: none of the Logic-PIM's
    # fields (level, stacks, bandwidth_multiple ...) carry over, or the reader would refuse them
    merged = read_device_toml(DEVICES_DIR / "duplex-bank-pim.toml")
    assert merged["units"]["pim"]["model"] == "bank_pim"
    assert not {"level", "stacks", "bandwidth_multiple", "macs_per_module"} & set(merged["units"]["pim"])
    assert merged["units"]["tensor"] == read_device_toml(DEVICES_DIR / "duplex.toml")["units"]["tensor"]
    # the same model still merges field by field (BankGroup-PIM changes two Logic-PIM fields)
    group = read_device_toml(DEVICES_DIR / "duplex-bankgroup-pim.toml")["units"]["pim"]
    assert group["level"] == "bank_group" and group["stacks"] == 5
    # a changed model that omits a field the new model requires is an error naming it
    (tmp_path / "child.toml").write_text('[device]\nname = "child"\nextends = "duplex"\n'
                                         '[units.pim]\nmodel = "roofline"\nrole = "matrix"\n')
    with pytest.raises(SpecError, match=r"child\.toml: units\.pim\.peak_flops"):
        load_device(tmp_path / "child.toml")


def test_extends_errors_name_the_file_and_field(tmp_path) -> None:
    (tmp_path / "a.toml").write_text('[device]\nname = "a"\nextends = "b"\n')
    (tmp_path / "b.toml").write_text('[device]\nname = "b"\nextends = "a"\n')
    with pytest.raises(SpecError, match=r"device\.extends.*cycle"):
        load_device(tmp_path / "a.toml")
    (tmp_path / "c.toml").write_text('[device]\nname = "c"\nextends = "missing"\n')
    with pytest.raises(SpecError, match=r"c\.toml.*device\.extends.*no file"):
        load_device(tmp_path / "c.toml")


def test_bad_logic_pim_field_is_named(tmp_path) -> None:
    text = (DEVICES_DIR / "duplex.toml").read_text().replace('name = "duplex"', 'name = "bad"')
    text = text.replace("bandwidth_multiple = 4.0", "bandwidth_multiple = -1.0")
    (tmp_path / "h100-sxm.toml").write_text((DEVICES_DIR / "h100-sxm.toml").read_text())
    (tmp_path / "bad.toml").write_text(text)
    with pytest.raises(SpecError, match=r"units\.pim\.bandwidth_multiple"):
        load_device(tmp_path / "bad.toml")
