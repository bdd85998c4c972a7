"""Reading a Hugging Face ``config.json`` (a file or its mapping) into a :class:`ModelConfig`.

The ``model_type`` field picks the family parser (:mod:`workloads.hf_families`); an unknown
``model_type``, a missing required field or a value out of range raises
:class:`~core.errors.SpecError` naming file, field and range. Keys starting with ``_``
(``_source``, ``_note``) are Decodex annotations and are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from decodex.core.errors import SpecError
from decodex.core.input_files import check_structure, read_json
from decodex.workloads.config_fields import ConfigFields
from decodex.workloads.hf_families import parser_for, supported_model_types
from decodex.workloads.model_config import ModelConfig


def model_from_dict(data: Mapping[str, Any], name: str = "model", source: str = "<dict>") -> ModelConfig:
    """Build a ModelConfig from a config.json mapping; raises SpecError on a bad field."""
    if not isinstance(data, Mapping):
        raise SpecError(source, "", "a model config must be a JSON object")
    check_structure(data, source)
    f = ConfigFields(data, source)
    model_type = f.str("model_type", "")
    if not model_type:
        raise SpecError(source, "model_type", "required field is missing")
    parser = parser_for(model_type)
    if parser is None:
        raise SpecError(source, "model_type",
                        f"unknown model_type {model_type!r}; supported: {', '.join(supported_model_types())}")
    return parser(f, name)


def load_model_config(path: str | Path, name: str | None = None) -> ModelConfig:
    """Read a Hugging Face ``config.json`` file into a ModelConfig."""
    path = Path(path)
    return model_from_dict(read_json(path), name or path.stem, str(path))
