"""The Serving page's "Find capacity" action (Streamlit AppTest): the capacity, its figure and
the steady-state flags."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

PAGE = Path(__file__).resolve().parents[3] / "app/dashboard/views/serving.py"


def test_find_capacity_shows_the_capacity_and_the_curve() -> None:
    at = AppTest.from_file(str(PAGE), default_timeout=120).run()
    at.selectbox(key="serving.model").set_value("llama3-8b")  # the auto layout takes tp1 for it
    at.selectbox(key="serving.dataset").set_value("alpaca")
    at.number_input(key="serving.requests").set_value(100)
    at.number_input(key="serving.max_batch").set_value(16)
    at.number_input(key="serving.rate").set_value(30.0).run()
    assert not at.exception and not at.error
    assert any(c.value.startswith("Layout tp1:") for c in at.sidebar.caption)
    at.button(key="serving.capacity").click().run()
    assert not at.exception and not at.error
    values = [m.value for m in at.metric if m.label == "Capacity (req/s)"]
    assert values and float(values[0].replace(",", "")) > 0 and len(values[0]) <= 6  # short enough for a tile
    assert at.get("plotly_chart")
    curves = [d.value for d in at.dataframe if "steady reason" in d.value.columns]
    assert curves and {"steady", "passes", "arrival rate (req/s)"} <= set(curves[0].columns) and len(curves[0]) >= 2
    assert any(c.startswith("TTFT p99 (") and c.endswith("s)") for c in curves[0].columns)  # with its unit
