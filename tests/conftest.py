"""Shared fixtures: a minimal ideal device (no overheads, efficiency 1) for hand computation."""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from decodex.hw_models.system import SystemSpec, system_from_dict

IDEAL_DEVICE: dict[str, Any] = {
    "device": {"name": "ideal", "kind": "gpu", "description": "hand-computable test device",
               "power": {"idle_w": 0.0, "tdp_w": 100.0}, "price": {"usd_per_hour": 1.0}},
    "units": {
        "tensor": {"model": "roofline", "role": "matrix", "memory": "hbm", "op_overhead_s": 0.0,
                   "peak_flops": {"bf16": 100e12, "fp16": 100e12, "fp8": 200e12, "int8": 200e12},
                   "energy_per_flop_j": {"bf16": 1e-12, "fp16": 1e-12, "fp8": 0.5e-12, "int8": 0.5e-12},
                   "efficiency": 1.0, "sparsity_patterns": ["2:4"]},
        "simt": {"model": "roofline", "role": "vector", "memory": "hbm", "op_overhead_s": 0.0,
                 "peak_flops": {"fp32": 10e12, "bf16": 20e12, "fp16": 20e12},
                 "energy_per_flop_j": {"fp32": 2e-12, "bf16": 1e-12, "fp16": 1e-12}, "efficiency": 1.0},
    },
    "memories": {"hbm": {"capacity_bytes": 80e9, "bandwidth_bytes_per_s": 1e12, "efficiency": 1.0,
                         "energy_per_byte_j": 10e-12}},
    "links": {"nvlink": {"bandwidth_bytes_per_s": 100e9, "latency_s": 1e-6, "efficiency": 1.0}},
}


def ideal_device(**changes: Any) -> dict[str, Any]:
    """A deep copy of IDEAL_DEVICE with dotted-path overrides, e.g.
    ``ideal_device(**{"memories.hbm.bandwidth_bytes_per_s": 2e12})``."""
    data = copy.deepcopy(IDEAL_DEVICE)
    for path, value in changes.items():
        node = data
        keys = path.split(".")
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
    return data


def ideal_system(**changes: Any) -> SystemSpec:
    """A scalable one-device system built from :func:`ideal_device`."""
    return system_from_dict(ideal_device(**changes), "<ideal>")


@pytest.fixture
def ideal() -> SystemSpec:
    return ideal_system()


@pytest.fixture(autouse=True)
def _keep_main_module() -> Iterator[None]:
    """Streamlit's AppTest runs a page as ``__main__`` and leaves it there; a process spawned
    afterwards (a Dask worker) would then re-run that page on start-up. Put the real one back."""
    main = sys.modules.get("__main__")
    yield
    if main is not None:
        sys.modules["__main__"] = main


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Start the tests marked ``long`` (minutes each) first: under pytest-xdist a worker takes one
    at once instead of the whole run waiting on it at the end. The order is otherwise kept."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)
