"""The model catalog: Hugging Face config.json files shipped in ``workloads/catalog/``."""

from __future__ import annotations

import dataclasses
import os
from functools import lru_cache
from pathlib import Path

from decodex.core.errors import ArgumentError
from decodex.core.input_files import file_mtime_ns
from decodex.workloads.hf_config import load_model_config
from decodex.workloads.model_config import ModelConfig

CATALOG_DIR = Path(__file__).resolve().parent / "catalog"
CATALOG_PREFIX = f"{CATALOG_DIR}{os.sep}"  # a catalog file is this + name + ".json" (one stat per lookup)


def list_models() -> list[str]:
    """Names of the catalog models (file stems), sorted."""
    return sorted(p.stem for p in CATALOG_DIR.glob("*.json"))


@lru_cache(maxsize=256)
def _load_cached(path: str, name: str, mtime_ns: int) -> ModelConfig:
    del mtime_ns  # part of the cache key only: an edited file is read again
    return load_model_config(path, name)


def load_model(name_or_path: str | Path | ModelConfig) -> ModelConfig:
    """A ModelConfig from a catalog name (``llama3-70b``) or a path to a config.json file;
    ArgumentError for anything else (another type, an empty or unknown name)."""
    if isinstance(name_or_path, ModelConfig):
        return name_or_path
    if not isinstance(name_or_path, (str, Path)):  # a tuple: no union object built per call
        raise ArgumentError(f"model: must be a catalog name ({', '.join(list_models())}), a path to a "
                            f"config.json or a ModelConfig, got {type(name_or_path).__name__} {name_or_path!r:.80}")
    text = str(name_or_path)
    if not text.strip() or "\0" in text:
        raise ArgumentError(f"model: {text!r} is not a model name; catalog: {', '.join(list_models())} "
                            "(or a path to a config.json)")
    candidate = f"{CATALOG_PREFIX}{text}.json"
    mtime = file_mtime_ns(candidate)
    if mtime is not None:
        return _load_cached(candidate, text, mtime)
    path = Path(text)
    if path.is_file():
        return _load_cached(str(path.resolve()), path.stem, path.stat().st_mtime_ns)
    if path.suffix == ".json":
        return load_model_config(path)  # raises "file not found" naming the path
    raise ArgumentError(f"model: unknown model {text!r}; catalog: {', '.join(list_models())} "
                        "(or a path to a config.json)")


def model_reaching(name_or_path: str | Path | ModelConfig, position: int) -> ModelConfig:
    """The model of :func:`load_model` with its position limit raised to ``position`` tokens where
    it is lower: a what-if beyond the published window (e.g. Llama-2 at 8k context, as a
    measurement with random weights runs it); the model itself where it already reaches."""
    model = load_model(name_or_path)
    if model.max_position_embeddings < position:
        model = dataclasses.replace(model, max_position_embeddings=position)
    return model
