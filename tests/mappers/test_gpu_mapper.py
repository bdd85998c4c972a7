"""The GPU mapper: units by op kind and dtype, links for collectives, device counts."""

from __future__ import annotations

import pytest

from decodex.core.errors import InfeasibleError
from decodex.hw_models.cost import UnsupportedOpError
from decodex.hw_models.system import load_system, system_from_dict
from decodex.mappers.base import MAPPERS, get_mapper
from decodex.mappers.gpu import choose_unit
from decodex.workloads.batch import Batch
from decodex.workloads.builder import build_step_graph
from decodex.workloads.catalog import load_model
from decodex.workloads.ops import OpKind
from decodex.workloads.parallelism import Parallelism
from decodex.workloads.precision import Precision


def test_registry_lists_gpu() -> None:
    assert "gpu" in MAPPERS


def test_ops_go_to_the_unit_for_their_kind() -> None:
    system = load_system("h100-sxm")
    graph = build_step_graph(load_model("llama3-8b"), Batch.decode(2, 10), parallelism=Parallelism(tp=2))
    plan = get_mapper("gpu").map(graph, system)
    for placement in plan.placements:
        if placement.op.kind in (OpKind.MATMUL, OpKind.ATTENTION):
            assert placement.unit == "tensor"
        elif placement.op.kind == OpKind.ELEMENTWISE:
            assert placement.unit == "simt"
        else:
            assert placement.link is not None and placement.link.name == "nvlink"
    assert plan.devices_used == 2


def test_fp32_matmul_uses_tf32_tensor_cores_and_v100s_lacks_bf16() -> None:
    h100 = load_system("h100-sxm").primary_device
    graph = build_step_graph(load_model("llama2-7b"), Batch.decode(1, 10), Precision.parse("fp32"))
    matmul = next(op for _, op in graph.ops() if op.kind == OpKind.MATMUL)
    assert choose_unit(matmul, h100) == "tensor"
    v100s = load_system("v100s").primary_device
    bf16 = build_step_graph(load_model("llama2-7b"), Batch.decode(1, 10))
    with pytest.raises(UnsupportedOpError, match="bf16"):
        get_mapper("gpu").map(bf16, load_system("v100s"))
    fp16 = build_step_graph(load_model("llama2-7b"), Batch.decode(1, 10), Precision.parse("fp16"))
    assert get_mapper("gpu").map(fp16, load_system("v100s")).devices_used == 1
    assert v100s.units["tensor"].supports(Precision.parse("fp16").compute)


def test_fixed_size_system_refuses_more_devices() -> None:
    pair = system_from_dict({"system": {"name": "pair", "default_mapper": "gpu",
                                        "devices": [{"device": "h100-sxm", "count": 2}],
                                        "interconnect": {"intra_node_link": "nvlink"}}}, "pair.toml")
    graph = build_step_graph(load_model("llama3-8b"), Batch.decode(1, 10), parallelism=Parallelism(tp=4))
    with pytest.raises(InfeasibleError, match="needs 4 devices"):
        get_mapper("gpu").map(graph, pair)


def test_groups_beyond_a_node_use_the_inter_node_link() -> None:
    system = load_system("h100-sxm")
    assert system.link_for_group(8).name == "nvlink"
    assert system.link_for_group(16).name == "nic"
