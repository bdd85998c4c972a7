"""The end-to-end GPU comparison as documents: a Markdown table and a dependency-free SVG plot of
predicted vs measured step times (``docs/validation-gpu.md`` and ``docs/validation-gpu.svg``,
rewritten by ``decodex validate e2e --write-docs`` and checked against the code by the tests)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from decodex.core.errors import DecodexError

DOCS_DIR = Path(__file__).resolve().parent.parent / "docs"
TABLE_START = "<!-- e2e-table: written by `decodex validate e2e --write-docs` -->"
TABLE_END = "<!-- /e2e-table -->"
COLOURS = {"llama2-7b": "#1f77b4", "llama3-8b": "#d62728"}


def e2e_table_markdown(compared: pd.DataFrame) -> str:
    """One Markdown row per point: model, batch, context, measured and predicted step (ms), error,
    and the attention, projections and rest parts measured / predicted (ms)."""
    lines = ["| model | batch | context | measured | predicted | error | attention meas. / pred. | "
             "projections meas. / pred. | rest meas. / pred. |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in compared.itertuples(index=False):
        lines.append(
            f"| {r.model} | {r.batch} | {r.context:,} | {r.measured_s * 1e3:.2f} ms | {r.predicted_s * 1e3:.2f} ms | "
            f"{r.error:+.1%} | {r.measured_attention_s * 1e3:.2f} / {r.predicted_attention_s * 1e3:.2f} | "
            f"{r.measured_projections_s * 1e3:.2f} / {r.predicted_projections_s * 1e3:.2f} | "
            f"{r.measured_rest_s * 1e3:.2f} / {r.predicted_rest_s * 1e3:.2f} |")
    return "\n".join(lines)


def e2e_svg(compared: pd.DataFrame, width: int = 480, height: int = 400) -> str:
    """Log-log scatter of predicted vs measured step time (ms), one colour per model, the y = x
    line dashed and the +-15 % goal dotted; plain SVG text (deterministic)."""
    values = [*compared["measured_s"], *compared["predicted_s"]]
    ticks = [k * 10.0**e for e in range(-3, 6) for k in (1, 2, 5)]
    lo = max(t for t in ticks if t <= min(values) * 1e3)
    hi = min(t for t in ticks if t >= max(values) * 1e3)
    left, right, top, bottom = 60, 20, 20, 50
    span = math.log10(hi / lo)

    def x(ms: float) -> float:
        return left + (width - left - right) * math.log10(ms / lo) / span

    def y(ms: float) -> float:
        return height - bottom - (height - top - bottom) * math.log10(ms / lo) / span

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="12">', '<rect width="100%" height="100%" fill="white"/>']
    for tick in (t for t in ticks if lo * 0.999 <= t <= hi * 1.001):
        parts.append(f'<line x1="{x(tick):.1f}" y1="{top}" x2="{x(tick):.1f}" y2="{height - bottom}" '
                     f'stroke="#eee"/><text x="{x(tick):.1f}" y="{height - bottom + 16}" '
                     f'text-anchor="middle">{tick:g}</text>')
        parts.append(f'<line x1="{left}" y1="{y(tick):.1f}" x2="{width - right}" y2="{y(tick):.1f}" '
                     f'stroke="#eee"/><text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:g}</text>')
    parts.append(f'<line x1="{x(lo):.1f}" y1="{y(lo):.1f}" x2="{x(hi):.1f}" y2="{y(hi):.1f}" stroke="black" '
                 'stroke-dasharray="6,4"/>')
    for factor in (0.85, 1.15):  # the +-15 % goal: predicted = factor x measured
        start, stop = max(lo, lo / factor), min(hi, hi / factor)
        parts.append(f'<line x1="{x(start):.1f}" y1="{y(start * factor):.1f}" x2="{x(stop):.1f}" '
                     f'y2="{y(stop * factor):.1f}" stroke="gray" stroke-dasharray="2,3"/>')
    for r in compared.itertuples(index=False):
        colour = COLOURS.get(str(r.model), "#2ca02c")
        parts.append(f'<circle cx="{x(r.measured_s * 1e3):.1f}" cy="{y(r.predicted_s * 1e3):.1f}" r="4" '
                     f'fill="{colour}" fill-opacity="0.8"><title>{r.model} batch {r.batch} context {r.context}: '
                     f'{r.error:+.1%}</title></circle>')
    for i, (model, colour) in enumerate(sorted({str(m): COLOURS.get(str(m), "#2ca02c")
                                                for m in compared["model"]}.items())):
        parts.append(f'<circle cx="{left + 14}" cy="{top + 12 + 16 * i}" r="4" fill="{colour}"/>'
                     f'<text x="{left + 24}" y="{top + 16 + 16 * i}">{model}</text>')
    parts.append(f'<text x="{(left + width - right) / 2:.0f}" y="{height - 12}" text-anchor="middle">'
                 'measured step time on the GPU (ms)</text>')
    parts.append(f'<text transform="translate(16,{(top + height - bottom) / 2:.0f}) rotate(-90)" '
                 'text-anchor="middle">Decodex estimate (ms)</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def replace_table(text: str, table: str) -> str:
    """``text`` with the block between ``TABLE_START`` and ``TABLE_END`` replaced by ``table``."""
    start, end = text.index(TABLE_START) + len(TABLE_START), text.index(TABLE_END)
    return text[:start] + "\n" + table + "\n" + text[end:]


def write_docs(compared: pd.DataFrame, docs: Path = DOCS_DIR) -> dict[str, Any]:
    """Rewrite the table in ``docs/validation-gpu.md`` and the plot ``docs/validation-gpu.svg``;
    returns the paths written."""
    page = docs / "validation-gpu.md"
    if not page.is_file():
        raise DecodexError(f"--write-docs needs a checkout: {page} is not there")
    page.write_text(replace_table(page.read_text(), e2e_table_markdown(compared)))
    plot = docs / "validation-gpu.svg"
    plot.write_text(e2e_svg(compared))
    return {"table": str(page), "plot": str(plot)}
