"""Fixtures shared by the sweep tests."""

from __future__ import annotations

from typing import Any

import pytest

import decodex.explore.chunk_runs as chunk_runs


@pytest.fixture
def chunk_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of points of each chunk the runner evaluates from now on (a recording list)."""
    sizes: list[int] = []
    evaluate = chunk_runs.run_chunk

    def counting(chunk: list[dict[str, Any]], *args: Any) -> list[dict[str, Any]]:
        sizes.append(len(chunk))
        return evaluate(chunk, *args)

    monkeypatch.setattr(chunk_runs, "run_chunk", counting)
    return sizes
