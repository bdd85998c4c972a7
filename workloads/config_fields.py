"""Typed, range-checked access to the fields of a model ``config.json`` mapping.

Every read names the file and field in the :class:`~core.errors.SpecError` it raises for a
missing required field or a value of the wrong type or out of range. Keys starting with ``_``
(``_source``, ``_note``) are Decodex annotations and are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from decodex.core.errors import SpecError


class ConfigFields:
    """Typed access to a config mapping that raises SpecError naming file and field."""

    def __init__(self, data: Mapping[str, Any], source: str) -> None:
        self.data = {k: v for k, v in data.items() if not k.startswith("_")}
        self.source = source

    def has(self, key: str) -> bool:
        """Whether ``key`` is present and not null."""
        return self.data.get(key) is not None

    def int(self, key: str, default: int | None = None, lo: int = 1, hi: int = 10**9) -> int:
        """The integer at ``key`` (in the field's own unit) within ``[lo, hi]``; ``default`` when
        absent or null (required when ``default`` is None)."""
        value = self.data.get(key)
        if value is None:
            if default is None:
                raise SpecError(self.source, key, "required field is missing")
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(self.source, key, f"must be an integer in [{lo}, {hi}], got {value!r}")
        if not lo <= value <= hi:
            raise SpecError(self.source, key, f"{value} outside the allowed range [{lo}, {hi}]")
        return value

    def bool(self, key: str, default: bool) -> bool:
        """The boolean at ``key``; ``default`` when absent or null."""
        value = self.data.get(key, default)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise SpecError(self.source, key, f"must be true or false, got {value!r}")
        return value

    def str(self, key: str, default: str) -> str:
        """The string at ``key``; ``default`` when absent or null."""
        value = self.data.get(key, default)
        if value is None:
            return default
        if not isinstance(value, str):
            raise SpecError(self.source, key, f"must be a string, got {value!r}")
        return value

    def int_list(self, key: str) -> list[int]:
        """The integers at ``key``: a JSON list or a comma-separated string; empty when absent."""
        value = self.data.get(key) or []
        if isinstance(value, str):  # e.g. Step-3's "4,5,6"
            try:
                return [int(v) for v in value.split(",") if v.strip()]
            except ValueError:
                raise SpecError(self.source, key, f"must be a list of integers, got {value!r}") from None
        if not isinstance(value, list) or not all(isinstance(v, int) for v in value):
            raise SpecError(self.source, key, f"must be a list of integers, got {value!r}")
        return list(value)
