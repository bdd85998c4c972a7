"""What the speculative-decoding page computes and draws: the steps of a design point with a
draft, per draft length and acceptance, as a table and Plotly figures (``views/speculative.py``
lays them out)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from decodex.app.dashboard.design import DesignPoint
from decodex.sim.speculative import SpeculativeParts, speculative_parts
from decodex.sim.speculative_draft import Draft
from decodex.workloads.acceptance import ChainAcceptance

MAX_DRAFT_LENGTH = 16  # the page's longest draft: published chains stop near 8
CURVE_ACCEPTANCES = (0.5, 0.6, 0.7, 0.8, 0.9)  # acceptance rates drawn as curves beside the chosen one


@dataclass(frozen=True)
class SpeculativeChoice:
    """The page's speculative inputs: the draft (``Draft.parse`` text), the draft lengths to price
    and the per-position acceptance."""

    draft: str = "self:4"
    longest: int = 8
    acceptance: float = 0.7

    @property
    def lengths(self) -> tuple[int, ...]:
        """Draft lengths 0 ... ``longest``."""
        return tuple(range(self.longest + 1))


@st.cache_data(max_entries=64, show_spinner=False)
def cached_parts(point: DesignPoint, choice: SpeculativeChoice) -> SpeculativeParts:
    """The plain, verify and draft steps of ``point`` for ``choice`` (cached per both); bounded
    first as the design point page bounds its step."""
    point.check_size()
    return speculative_parts(point.model_config(), point.system_spec(), point.batch, context=point.context,
                             draft=Draft.parse(choice.draft), lengths=choice.lengths, precision=point.precision,
                             parallelism=point.parallelism(), mapper=point.mapper)


def steps_table(parts: SpeculativeParts, acceptance: float) -> pd.DataFrame:
    """One row per draft length at one acceptance rate: tokens per step, draft, verify and step
    time (s), time per token (s), tokens/s, speedup, the verify's FLOP/B and whether it fits."""
    rate = ChainAcceptance((acceptance,))
    rows = []
    for k in sorted(parts.verifies):
        step = parts.step(k, rate.expected_accepted(k))
        rows.append({"draft_length": k, "tokens_per_step": step.tokens_per_step, "draft_s": step.draft_time_s,
                     "verify_s": step.verify.step_time_s, "step_s": step.step_time_s,
                     "time_per_token_s": step.time_per_token_s, "tokens_per_s": step.tokens_per_s,
                     "speedup": step.speedup, "verify_flop_per_byte": step.verify_intensity,
                     "fits": step.fits, "reason": step.reason})
    return pd.DataFrame(rows)


def speedup_figure(parts: SpeculativeParts, chosen: float) -> go.Figure:
    """Speedup over plain decode against the draft length, one curve per acceptance rate (the
    chosen one bold), with the break-even line at 1."""
    fig = go.Figure()
    for rate in sorted({*CURVE_ACCEPTANCES, chosen}):
        table = steps_table(parts, rate)
        bold = rate == chosen
        fig.add_trace(go.Scatter(x=table["draft_length"], y=table["speedup"], mode="lines+markers",
                                 name=f"acceptance {rate:g}", line={"width": 4 if bold else 1.5},
                                 opacity=1.0 if bold else 0.6))
    fig.add_hline(y=1.0, line_dash="dot", annotation_text="plain decode")
    fig.update_layout(title="Speedup over plain decode", xaxis_title="draft length k (tokens)",
                      yaxis_title="speedup (x)", legend_title="per-position acceptance", height=420)
    return fig


def intensity_figure(parts: SpeculativeParts, chosen: float) -> go.Figure:
    """Time per emitted token against the verify's FLOP per byte: how far drafting moves decode
    toward the compute roof, and what it gives per token."""
    table = steps_table(parts, chosen)
    fig = go.Figure(go.Scatter(x=table["verify_flop_per_byte"], y=table["time_per_token_s"] * 1e3,
                               mode="lines+markers+text", text=[f"k={k}" for k in table["draft_length"]],
                               textposition="top center", name="speculative"))
    fig.update_layout(title=f"Time per token against the verify's Op/B (acceptance {chosen:g})",
                      xaxis_title="verify FLOP per byte", yaxis_title="time per token (ms)", height=420)
    return fig
