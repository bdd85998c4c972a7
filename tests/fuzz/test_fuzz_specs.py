"""Fuzzing spec fields, config fields and sweep spaces all the way through a run: a device file
whose numbers are scaled over twelve decades or set to edge values, a Hugging Face config with
other shapes, and a sweep space of hostile axes each end in one clean DecodexError line, or in a
result that is finite, positive and inside the physical bounds (a step is never faster than its
roofline; a sweep has one row per point, each with finite metrics or its reason).

The upload routes of the dashboard are fuzzed in ``test_fuzz_uploads.py`` (what is parsed); here
what is parsed is also run (``estimate``, ``simulate``, ``sweep``)."""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import decodex as dx
from decodex.core.errors import DecodexError
from decodex.hw_models.system import DEVICES_DIR
from decodex.workloads.catalog import CATALOG_DIR

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
DEVICES = ["h100-sxm", "a100-80g", "duplex", "neupims-npu", "alveo-u280", "cpu-host"]
MODELS = {"h100-sxm": "llama3-8b", "a100-80g": "llama3-8b", "duplex": "mixtral-8x7b", "neupims-npu": "gpt3-7b",
          "alveo-u280": "llama2-7b", "cpu-host": "llama3-8b"}
EDGE = [0, -1, 1e-300, 5e-324, 1e300, 10**30, math.inf, math.nan, True, "12", [], [1.0]]


def _one_line(err: DecodexError) -> None:
    event(f"refused: {type(err).__name__}")
    text = str(err)
    assert text.strip() and "\n" not in text and "Traceback" not in text, text


def _leaves(data: dict[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(path, value) of every number, and list of numbers, in a TOML document."""
    for key, value in data.items():
        path = (*prefix, key)
        if isinstance(value, dict):
            yield from _leaves(value, path)
        elif _is_number(value) or (isinstance(value, list) and value and all(_is_number(v) for v in value)):
            yield path, value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value) if isinstance(value, str) else str(value)


def _dump(data: dict[str, Any]) -> str:
    """A TOML document of nested tables of scalars and lists (what device files hold)."""
    lines: list[str] = []

    def table(name: str, body: dict[str, Any]) -> None:
        scalars = {k: v for k, v in body.items() if not isinstance(v, dict)}
        if name:
            lines.append(f"[{name}]")
        lines.extend(f"{json.dumps(k)} = {_toml(v)}" for k, v in scalars.items())
        for key, value in body.items():
            if isinstance(value, dict):
                table(f"{name}.{json.dumps(key)}" if name else json.dumps(key), value)

    table("", data)
    return "\n".join(lines) + "\n"


def _set(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        data = data[key]
    data[path[-1]] = value


DEVICE_DATA = {name: tomllib.loads((DEVICES_DIR / f"{name}.toml").read_text()) for name in DEVICES}
DEVICE_LEAVES = {name: list(_leaves(data)) for name, data in DEVICE_DATA.items()}


@st.composite
def device_file(draw: st.DrawFn) -> tuple[str, str]:
    """(device name, TOML text): a catalog device with one to three numbers scaled by 10**-6..10**6
    (lists: each element) or set to an edge value."""
    name = draw(st.sampled_from(DEVICES))
    data = json.loads(json.dumps(DEVICE_DATA[name]))  # a deep copy
    data["device"].pop("extends", None)
    data["device"]["name"] = "fuzzed"
    leaves = DEVICE_LEAVES[name]
    for index in draw(st.lists(st.integers(0, len(leaves) - 1), min_size=1, max_size=3, unique=True)):
        path, value = leaves[index]
        if draw(st.integers(0, 4)) == 0:
            new: Any = draw(st.sampled_from(EDGE))
        else:
            factor = draw(st.sampled_from([0.1, 0.5, 0.9, 2.0, 10.0])) if draw(st.booleans()) else \
                10.0 ** draw(st.integers(-6, 6))
            new = [_scaled(v, factor) for v in value] if isinstance(value, list) else _scaled(value, factor)
        _set(data, path, new)
    return name, _dump(data)


def _scaled(value: float, factor: float) -> float:
    """``value`` times ``factor``, an integer staying a whole number >= 1."""
    return value * factor if isinstance(value, float) else max(1, round(value * factor))


@SETTINGS
@given(case=device_file(), batch=st.sampled_from([1, 8, 64]), context=st.sampled_from([1, 512, 4000]))
def test_a_device_with_any_numbers_runs_within_its_roofline_or_is_one_line(case: tuple[str, str], batch: int,
                                                                            context: int, tmp_path: Path) -> None:
    name, text = case
    path = tmp_path / "fuzzed.toml"
    path.write_text(text)
    try:
        system = dx.load_system(path)
        result = dx.estimate(MODELS[name], system, batch, context=context)
    except DecodexError as err:
        _one_line(err)
        return
    event("ran")
    assert math.isfinite(result.step_time_s) and result.step_time_s > 0, text
    assert math.isfinite(result.energy_j) and result.energy_j >= 0, text
    assert math.isfinite(result.tokens_per_s) and result.tokens_per_s > 0
    for record in result.records:  # no operator beats its own roofline
        assert record.time_s >= max(record.compute_s, record.memory_s) * (1 - 1e-9), (text, record)
        assert all(math.isfinite(x) and x >= 0 for x in (record.time_s, record.energy_j, record.flops, record.bytes))


CONFIG = json.loads((CATALOG_DIR / "llama3-8b.json").read_text())
SHAPES = {"hidden_size": [64, 128, 4096, 5120, 7, 0, -4096, 2**40],
          "num_attention_heads": [1, 4, 32, 40, 3, 0, 10**9],
          "num_key_value_heads": [1, 2, 8, 32, 3, 0, 64],
          "num_hidden_layers": [1, 2, 32, 0, 10**7],
          "intermediate_size": [1, 256, 14336, 0, 10**12],
          "vocab_size": [1, 1000, 128256, 0, 10**12],
          "max_position_embeddings": [1, 2, 8192, 0, 2**40],
          "head_dim": [8, 64, 128, 0, 7],
          "hidden_act": ["silu", "swish", "gelu", "relu", "nope", ""],
          "torch_dtype": ["bfloat16", "float16", "float32", "int3", 3],
          "tie_word_embeddings": [True, False, "yes"],
          "rope_theta": [10000.0, 0.0, -1.0, 1e300]}


@st.composite
def config_file(draw: st.DrawFn) -> str:
    data = dict(CONFIG)
    for key in draw(st.lists(st.sampled_from(sorted(SHAPES)), min_size=1, max_size=4, unique=True)):
        data[key] = draw(st.sampled_from(SHAPES[key]))
    return json.dumps(data)


@SETTINGS
@given(text=config_file(), batch=st.sampled_from([1, 16]), context=st.sampled_from([1, 100, 4000]),
       run=st.sampled_from(["estimate", "simulate"]))
def test_a_config_with_any_shape_runs_with_exact_counts_or_is_one_line(text: str, batch: int, context: int,
                                                                      run: str, tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(text)
    try:
        model = dx.load_model(path)
        result = (dx.estimate if run == "estimate" else dx.simulate)(model, "h100-sxm", batch, context=context)
    except DecodexError as err:
        _one_line(err)
        return
    event("ran")
    step = result.step_time_s
    assert math.isfinite(step) and step > 0, text
    if run == "estimate":
        # a decode step reads every weight once (of the embedding table only the batch's rows), so
        # it is never faster than the HBM streams them (0.5: margin for the efficiency curves)
        streamed = result.weight_bytes - 2.0 * model.vocab_size * model.hidden_size  # bf16 embedding table
        assert result.flops > 0 and result.bytes >= streamed > 0, text
        hbm = dx.load_system("h100-sxm").groups[0].device.memories["hbm"].bandwidth_bytes_per_s
        assert step >= 0.5 * streamed / hbm, text


AXES = {"batch": [[1, 4], [0], [2.5], [-3], [10**12], "8"], "context": [[1, 2048], [0], [10**9], [1.5]],
        "tp": [[1, 2], [3], [0], [10**6]], "precision": [["bf16", "fp8"], ["int3"], [7]],
        "model": [["llama3-8b", "gpt3-7b"], ["nope"], [""]], "system": [["h100-sxm", "a100-80g"], ["nope"]],
        "spec.hbm.bandwidth_bytes_per_s@scale": [[0.5, 2.0], [0.0], [-1.0], [1e300], [math.nan]],
        "mapper.microbatches": [[1, 2], [0], [1.5]], "unknown_axis": [[1, 2]]}


@st.composite
def space(draw: st.DrawFn) -> dict[str, Any]:
    axes = {key: draw(st.sampled_from(AXES[key]))
            for key in draw(st.lists(st.sampled_from(sorted(AXES)), min_size=1, max_size=3, unique=True))}
    fixed = {"model": "llama3-8b", "system": "h100-sxm"}
    return {"name": "fuzz", "mode": "estimate", "fixed": fixed, "axes": axes}


@SETTINGS
@given(spec=space())
def test_any_space_sweeps_to_one_row_per_point_or_is_one_line(spec: dict[str, Any]) -> None:
    try:
        frame = dx.sweep(spec, progress=False)
    except DecodexError as err:
        _one_line(err)
        return
    event(f"ran, {int(frame['feasible'].sum())} of {len(frame)} feasible")
    expected = int(np.prod([len(v) for v in spec["axes"].values()]))
    assert len(frame) == expected and frame["point_id"].is_unique
    for row in frame.to_dict("records"):
        if row["feasible"]:
            assert math.isfinite(row["step_time_s"]) and row["step_time_s"] > 0, row
            assert math.isfinite(row["tokens_per_s"]) and row["tokens_per_s"] > 0, row
        else:
            assert isinstance(row["reason"], str) and row["reason"].strip() and "\n" not in row["reason"], row


@pytest.mark.parametrize("value", ["1e-300", "5e-324", "1e300", "nan", "-1.0", "0.0"])
def test_hbm_bandwidth_edge_values_are_refused_naming_the_field(value: str, tmp_path: Path) -> None:
    text = (DEVICES_DIR / "h100-sxm.toml").read_text()
    start = text.index("bandwidth_bytes_per_s", text.index("[memories.hbm]"))
    end = text.index("\n", start)
    path = tmp_path / "h100-edge.toml"
    path.write_text(text[:start] + f"bandwidth_bytes_per_s = {value}" + text[end:])
    with pytest.raises(DecodexError, match=r"h100-edge\.toml.*bandwidth_bytes_per_s") as refused:
        dx.load_system(path)
    assert "\n" not in str(refused.value)
