"""Readable names and units of sweep columns, for axes, legends and tables.

A sweep's columns are SI and named by what they hold with a unit suffix (``tpot_s``,
``energy_per_token_j``, ``memory_required_bytes``, ``usd_per_mtok``). :func:`metric_label` turns
one into ``("TPOT", "s")``; :func:`axis_title` into ``"TPOT (s)"``; :func:`style_axis` puts the
unit on the ticks with SI prefixes (``20ms``, ``1.5GB``), so a figure never shows a raw column
name or a bare ``0.00002``. Unknown columns keep their name and get no unit.
"""

from __future__ import annotations

from typing import Any

NAMES = {
    "tpot_s": "TPOT", "tpot_p99_s": "TPOT p99", "ttft_p50_s": "TTFT p50", "ttft_p99_s": "TTFT p99",
    "step_time_s": "step time", "tokens_per_s": "throughput", "tokens_per_s_per_device": "throughput per device",
    "energy_per_token_j": "energy per token", "memory_required_bytes": "memory required",
    "memory_capacity_bytes": "memory capacity", "usd_per_hour": "rental price",
    "usd_per_mtok": "cost per million tokens",
    "price_usd": "purchase price", "goodput_requests_per_s": "goodput", "slo_attainment": "SLO attainment",
    "devices": "devices", "batch": "batch", "context": "context", "rate_per_s": "arrival rate",
    "sched_delay_p99_s": "scheduling delay p99", "ttft_s": "TTFT", "e2e_s": "end-to-end latency", "queue_s": "queueing",
    "arrival_s": "arrival", "scheduled_s": "scheduled", "first_token_s": "first token", "finish_s": "finish",
    "input_tokens": "input tokens", "output_tokens": "output tokens", "meets_slo": "meets the SLOs",
}
"""Readable names of the metrics a sweep writes (explore/points.py) and of common inputs."""

UNITS = {"tokens_per_s": "tokens/s", "tokens_per_s_per_device": "tokens/s", "goodput_requests_per_s": "req/s",
         "usd_per_mtok": "$", "usd_per_hour": "$/h", "price_usd": "$", "context": "tokens", "batch": "requests",
         "slo_attainment": "%", "rate_per_s": "req/s"}
"""Units of columns whose suffix does not say it."""

SUFFIX_UNITS = (("_per_s", "/s"), ("_bytes", "B"), ("_flops", "FLOP"), ("_usd", "$"), ("_s", "s"), ("_j", "J"),
                ("_w", "W"), ("_hz", "Hz"))
"""Column-name suffixes and the SI unit they carry (longest first where one ends another)."""

PREFIXED = {"s", "B", "FLOP", "J", "W", "Hz", "/s", "tokens/s", "req/s"}
"""Units shown with SI prefixes on an axis (k, M, G / m, µ, n)."""
SYMBOLS = {"s", "B", "FLOP", "J", "W", "Hz", "/s"}
"""Unit symbols written straight after the prefix (``20ms``, ``1.5GB``); the others after a space."""


def metric_label(column: str) -> tuple[str, str]:
    """``(readable name, unit)`` of a sweep column; the unit is ``""`` when unknown."""
    if column in UNITS or column in NAMES:
        return NAMES.get(column, column.replace("_", " ")), UNITS.get(column, _suffix_unit(column)[1])
    stem, unit = _suffix_unit(column)
    if column.startswith("util."):
        return f"{column[len('util.'):]} busy share", ""
    return stem.replace("_", " ").replace(".", " "), unit


def _suffix_unit(column: str) -> tuple[str, str]:
    for suffix, unit in SUFFIX_UNITS:
        if column.endswith(suffix) and len(column) > len(suffix):
            return column[: -len(suffix)], unit
    return column, ""


def axis_title(column: str) -> str:
    """``"TPOT (s)"``: the readable name with its unit in brackets (no brackets without a unit)."""
    name, unit = metric_label(column)
    return f"{name} ({unit})" if unit else name


def style_axis(axis: Any, column: str) -> None:
    """Title ``axis`` (a plotly axis, e.g. ``figure.layout.xaxis``) after ``column`` and, for SI
    units, put the unit on the ticks with prefixes (``20ms``); dollars get a ``$`` prefix."""
    name, unit = metric_label(column)
    if unit in PREFIXED:
        axis.update(title_text=name, tickformat="~s", ticksuffix=unit if unit in SYMBOLS else f" {unit}")
    elif unit == "$":
        axis.update(title_text=name, tickprefix="$")
    elif unit == "%":
        axis.update(title_text=name, tickformat=".0%")
    else:
        axis.update(title_text=axis_title(column))


def hover_labels(columns: list[str]) -> dict[str, str]:
    """``{column: "name (unit)"}`` for plotly's ``labels=`` (hover text and legends)."""
    return {column: axis_title(column) for column in columns}
