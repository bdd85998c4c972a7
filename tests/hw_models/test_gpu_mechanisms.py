"""The GPU mechanisms of [gpu-fidelity]: one-/two-shot all-reduce next to the NCCL ring,
weight-only dequantization efficiency, and memory capacity with the driver's and runtime's
reservations."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from decodex.core.errors import SpecError
from decodex.hw_models.collectives import collective_cost, collective_cost_many
from decodex.hw_models.device import device_from_dict, read_device_toml
from decodex.hw_models.memory import LinkSpec
from decodex.hw_models.roofline import RooflineUnit
from decodex.hw_models.system import DEVICES_DIR, load_system
from decodex.sim.estimate import estimate
from decodex.sim.vector_estimate import estimate_grid
from decodex.workloads.parallelism import Parallelism

LINK = LinkSpec("nvlink", bandwidth_bytes_per_s=300e9, latency_s=0.3e-6, efficiency=0.8, collective_overhead_s=40e-6,
                custom_allreduce_latency_s=3.5e-6, custom_allreduce_peer_latency_s=0.35e-6,
                custom_allreduce_max_bytes=8e6)
BETA = 300e9 * 0.8


def test_all_reduce_algorithms_by_hand() -> None:
    p, size = 8, 16e3
    sync = 3.5e-6 + 7 * 0.35e-6
    ring = 2 * 7 / 8 * size / BETA + 14 * 0.3e-6 + 40e-6
    oneshot = 7 * size / BETA + sync
    twoshot = 2 * 7 / 8 * size / BETA + 2 * sync
    assert collective_cost("all_reduce", size, p, LINK).time_s == pytest.approx(min(ring, oneshot, twoshot))
    assert collective_cost("all_reduce", size, p, LINK, algorithm="ring").time_s == pytest.approx(ring)
    assert collective_cost("all_reduce", size, p, LINK, algorithm="oneshot").time_s == pytest.approx(oneshot)
    assert collective_cost("all_reduce", size, p, LINK, algorithm="twoshot").time_s == pytest.approx(twoshot)
    # small: one-shot (one barrier); mid: two-shot (less traffic); beyond the workspace: the ring
    assert collective_cost("all_reduce", 8e3, p, LINK).time_s == pytest.approx(7 * 8e3 / BETA + sync)
    mid = 4e6
    assert collective_cost("all_reduce", mid, p, LINK).time_s == pytest.approx(2 * 7 / 8 * mid / BETA + 2 * sync)
    big = 64e6
    assert collective_cost("all_reduce", big, p, LINK).time_s == pytest.approx(2 * 7 / 8 * big / BETA + 14 * 0.3e-6
                                                                               + 40e-6)
    # other collectives keep the ring formulas
    assert collective_cost("all_gather", size, p, LINK).time_s == pytest.approx(7 / 8 * size / BETA + 7 * 0.3e-6
                                                                                + 40e-6)


def test_custom_all_reduce_is_never_slower_and_monotone() -> None:
    sizes = np.geomspace(1e2, 1e9, 400)
    for p in (2, 4, 8):
        best, _ = collective_cost_many("all_reduce", sizes, p, LINK)
        ring = np.array([collective_cost("all_reduce", s, p, LINK, algorithm="ring").time_s for s in sizes])
        assert np.all(best <= ring + 1e-15)
        assert np.all(np.diff(best) >= -1e-15)  # more bytes are never faster
        scalar = np.array([collective_cost("all_reduce", s, p, LINK).time_s for s in sizes])
        np.testing.assert_allclose(best, scalar, rtol=1e-12)  # the grid path prices as the scalar one
    plain = dataclasses.replace(LINK, custom_allreduce_latency_s=None)
    assert collective_cost("all_reduce", 8e3, 8, plain).time_s == collective_cost(
        "all_reduce", 8e3, 8, LINK, algorithm="ring").time_s


def test_link_needs_the_workspace_with_custom_latency(tmp_path: Path) -> None:
    text = (DEVICES_DIR / "h100-sxm.toml").read_text()
    lines = [line for line in text.splitlines() if not line.startswith("custom_allreduce_max_bytes")]
    bad = tmp_path / "h100-sxm.toml"
    bad.write_text("\n".join(lines))
    with pytest.raises(SpecError, match="custom_allreduce_max_bytes"):
        device_from_dict(read_device_toml(bad), str(bad))


def test_weight_only_matmul_reads_at_the_dequantizing_fraction() -> None:
    system = load_system("a100-80g")
    tensor = system.primary_device.units["tensor"]
    assert isinstance(tensor, RooflineUnit)
    plain = dataclasses.replace(tensor, weight_only_efficiency={})
    device = dataclasses.replace(system.primary_device, units={**system.primary_device.units, "tensor": plain})
    bare = dataclasses.replace(system, groups=tuple(dataclasses.replace(g, device=device) for g in system.groups))
    for precision, dtype in (("w8a16", "int8"), ("w4a16", "int4")):
        with_factor = estimate("llama2-7b", system, 1, context=100, precision=precision)
        without = estimate("llama2-7b", bare, 1, context=100, precision=precision)
        factor = next(v for k, v in tensor.weight_only_efficiency.items() if k.value == dtype)
        for a, b in zip(with_factor.records, without.records, strict=True):
            if a.kind == "matmul" and a.weight_bytes > 0:
                assert a.memory_s == pytest.approx(b.memory_s / factor)
            else:
                assert a.time_s == pytest.approx(b.time_s)
    # W8A8 computes in the weights' format: no dequantization
    int8 = estimate("llama2-7b", system, 1, context=100, precision="int8")
    int8_bare = estimate("llama2-7b", bare, 1, context=100, precision="int8")
    assert int8.step_time_s == pytest.approx(int8_bare.step_time_s)


def test_grid_prices_weight_only_and_custom_all_reduce_as_the_scalar_path() -> None:
    for precision, tp in (("w4a16", 1), ("bf16", 8), ("w8a16", 4)):
        batches = np.array([1, 4, 32, 128])
        contexts = np.array([64, 512, 2048, 8000])
        grid = estimate_grid("llama3-8b", "8x-h100-sxm", batches, contexts, precision=precision,
                             parallelism=Parallelism(tp=tp))
        for row in grid.itertuples(index=False):
            scalar = estimate("llama3-8b", "8x-h100-sxm", int(row.batch), context=int(row.context),
                              precision=precision, parallelism=Parallelism(tp=tp))
            assert row.step_time_s == pytest.approx(scalar.step_time_s, rel=1e-9)


def test_hbm_capacity_is_binary_and_reservations_are_subtracted() -> None:
    gib = 2**30
    for name, physical in (("a100-80g", 80), ("h100-sxm", 80), ("h800", 80), ("a800", 80), ("a100-40g", 40),
                           ("h200", 141), ("h20", 96), ("v100s", 32)):
        device = load_system(name).primary_device
        memory = device.main_memory
        assert memory.capacity_bytes == pytest.approx(physical * gib, rel=1e-3)
        assert device.capacity_bytes == pytest.approx(memory.capacity_bytes - memory.driver_reserved_bytes
                                                      - memory.runtime_reserved_bytes)
        assert 0 < memory.driver_reserved_bytes < 2 * gib and 0 < memory.runtime_reserved_bytes < 1 * gib
    # H100: what CUDA exposes (79.22 GiB) less the CUDA context (400 MiB)
    assert load_system("h100-sxm").primary_device.capacity_bytes / gib == pytest.approx(79.22 - 400 / 1024, abs=0.01)


def test_reservations_that_leave_nothing_are_refused(tmp_path: Path) -> None:
    text = (DEVICES_DIR / "h100-sxm.toml").read_text()
    bad = tmp_path / "h100-sxm.toml"
    bad.write_text(text.replace("runtime_reserved_bytes = 0.4194e9", "runtime_reserved_bytes = 85.5e9"))
    with pytest.raises(SpecError, match="runtime_reserved_bytes"):
        device_from_dict(read_device_toml(bad), str(bad))
