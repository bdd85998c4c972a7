"""Speculative decoding page (AppTest): the default point against the API, the draft inputs, and
an infeasible draft reported, not raised."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from decodex.app.dashboard.speculative_view import SpeculativeChoice, speedup_figure, steps_table
from decodex.sim.speculative import Draft, estimate_speculative, speculative_parts
from decodex.workloads.acceptance import ChainAcceptance

ROOT = Path(__file__).resolve().parents[3]
PAGE = str(ROOT / "app/dashboard/views/speculative.py")


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_the_default_point_shows_the_api_best_draft() -> None:
    at = AppTest.from_file(PAGE, default_timeout=90).run()
    assert not at.exception
    steps = [estimate_speculative("llama3-8b", "h100-sxm", 8, context=2048, draft=Draft("self", layers=4),
                                  draft_length=k, acceptance=ChainAcceptance((0.7,))) for k in range(9)]
    best = max(steps, key=lambda s: s.tokens_per_s)
    shown = _metrics(at)
    assert shown["Best draft length"] == str(best.draft_length)
    assert shown["Speedup"] == f"{best.speedup:.2f}x"
    assert len(at.get("plotly_chart")) == 2


def test_draft_kind_and_acceptance_change_the_result() -> None:
    at = AppTest.from_file(PAGE, default_timeout=90).run()
    before = _metrics(at)["Speedup"]
    at.sidebar.slider(key="spec.acceptance").set_value(0.9).run()
    higher = _metrics(at)["Speedup"]
    assert float(higher.rstrip("x")) > float(before.rstrip("x"))
    at.sidebar.selectbox(key="spec.kind").set_value("heads").run()
    assert not at.exception and _metrics(at)["Speedup"]
    at.sidebar.selectbox(key="spec.kind").set_value("model").run()
    assert not at.exception
    local = _metrics(at)["Speedup"]
    at.sidebar.selectbox(key="spec.draft_system").set_value("a100-80g").run()  # the draft on another GPU
    assert not at.exception and _metrics(at)["Speedup"] != local


def test_a_draft_that_does_not_fit_is_a_message_not_a_traceback() -> None:
    at = AppTest.from_file(PAGE, default_timeout=90).run()
    at.sidebar.number_input(key="spec.layers").set_value(64).run()  # more layers than Llama-3-8B has
    assert not at.exception
    assert at.error


def test_the_table_and_figure_follow_the_parts() -> None:
    choice = SpeculativeChoice("free", 4, 0.8)
    parts = speculative_parts("llama3-8b", "duplex", 4, context=1024, draft=Draft("free"), lengths=choice.lengths)
    table = steps_table(parts, 0.8)
    assert list(table["draft_length"]) == [0, 1, 2, 3, 4]
    assert table["speedup"].iloc[0] == 1.0
    assert table["tokens_per_step"].iloc[4] == pytest.approx(1 + 0.8 + 0.64 + 0.512 + 0.4096)
    figure = speedup_figure(parts, 0.8)
    assert len(figure.data) == 5  # the drawn rates, the chosen one among them
