"""The one input reader: every way a file can be bad is one SpecError naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from decodex.core.errors import SpecError
from decodex.core.input_files import MAX_NESTING, parse_json, parse_toml, read_json, read_text, read_toml
from decodex.hw_models.device import load_device
from decodex.workloads.catalog import CATALOG_DIR
from decodex.workloads.hf_config import load_model_config, model_from_dict


def _one_line(err: pytest.ExceptionInfo[SpecError], *needles: str) -> None:
    text = str(err.value)
    assert "\n" not in text
    for needle in needles:
        assert needle in text, text


def test_missing_folder_and_oversized_files(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as err:
        read_text(tmp_path / "nope.toml")
    _one_line(err, "nope.toml", "file not found")
    with pytest.raises(SpecError) as err:
        read_toml(tmp_path)
    _one_line(err, "is a folder")
    big = tmp_path / "big.toml"
    big.write_text("x = 1\n" * 10)
    with pytest.raises(SpecError) as err:
        read_text(big, max_bytes=10)
    _one_line(err, "big.toml", "more than the 10 B")


def test_non_utf8_and_bom(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.json"
    bad.write_bytes('{"model_type": "llama", "name": "caf\xe9"}'.encode("latin-1"))
    with pytest.raises(SpecError) as err:
        load_model_config(bad)
    _one_line(err, "latin1.json", "not UTF-8")
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + (CATALOG_DIR / "llama3-8b.json").read_bytes())
    assert load_model_config(bom).num_layers == 32


def test_deep_nesting_is_refused() -> None:
    deep_json = "[" * 5000 + "]" * 5000
    with pytest.raises(SpecError) as err:
        parse_json(deep_json, "deep.json")
    _one_line(err, "deep.json", "nested")
    shallow_enough = "[" * MAX_NESTING + "]" * MAX_NESTING
    parse_json(shallow_enough, "ok.json")
    deep_toml = "x = " + "[" * 3000 + "]" * 3000
    with pytest.raises(SpecError) as err:
        parse_toml(deep_toml, "deep.toml")
    _one_line(err, "deep.toml")


def test_huge_integers_and_non_numbers() -> None:
    with pytest.raises(SpecError) as err:
        parse_json('{"hidden_size": ' + "9" * 5000 + "}", "digits.json")
    _one_line(err, "digits.json")
    with pytest.raises(SpecError) as err:
        parse_toml("[memories.hbm]\nbandwidth_bytes_per_s = " + "9" * 40, "big.toml")
    _one_line(err, "big.toml", "memories.hbm.bandwidth_bytes_per_s")
    with pytest.raises(SpecError) as err:
        parse_json('{"rms_norm_eps": NaN}', "nan.json")
    _one_line(err, "nan.json", "NaN")


def test_api_dicts_are_checked_like_files() -> None:
    config = json.loads((CATALOG_DIR / "llama3-8b.json").read_text())
    config["vocab_size"] = 10**40
    with pytest.raises(SpecError) as err:
        model_from_dict(config, "m")
    _one_line(err, "vocab_size")


def test_spec_files_go_through_the_reader(tmp_path: Path) -> None:
    device = tmp_path / "dev.toml"
    device.write_bytes(b"[device]\nname = \"dev\"\ndescription = \"\xff\"\n")
    with pytest.raises(SpecError) as err:
        load_device(device)
    _one_line(err, "dev.toml", "not UTF-8")
    space = tmp_path / "space.json"
    space.write_text("{}")
    assert read_json(space) == {}
