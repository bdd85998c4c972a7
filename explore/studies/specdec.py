"""Speculative decoding study: where drafting pays, and where it erases the PIM and FPGA advantage.

Verifying ``k`` drafted tokens per request runs the target over ``k + 1`` tokens for one read of
its weights, so the verify step's FLOP per byte (Op/B) grows about ``k + 1`` times over plain
decode's. NeuPIMs, Duplex and FlightLLM win where decode's Op/B is low; the study prices, from the
mechanisms (:func:`sim.speculative.speculative_parts`), for each model, deployment, batch and
context:

- ``speedup_study``: the speculative step's speedup over plain decode (time per token) and its
  tokens/s, against the draft length ``k`` and the acceptance rate (one rate for every position,
  :class:`~workloads.acceptance.ChainAcceptance`);
- ``best_lengths``: the draft length that maximises tokens/s on each deployment;
- ``advantage_crossover``: each near-memory or FPGA deployment's tokens/s over the GPU's at the
  same point, against the GPU verify step's Op/B, and the Op/B where the ratio falls to 1.

The draft is a self-draft (the target's first eighth of its layers and its LM head, Kangaroo's
early exit) unless another :class:`~sim.speculative.Draft` is given. A deployment whose model does
not fit is a row with its reason. Times in s.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from decodex.core.errors import DecodexError
from decodex.sim.speculative import Draft, speculative_parts
from decodex.workloads.acceptance import ChainAcceptance
from decodex.workloads.catalog import load_model
from decodex.workloads.parallelism import Parallelism

MODELS = ("llama3-8b", "llama3-70b", "mixtral-8x7b")
BATCHES = (1, 8, 32, 128)
CONTEXTS = (512, 2048, 8000)  # "8k": 8000 + a draft of 8 + 1 stays within Llama-3's 8192 positions
LENGTHS = (0, 1, 2, 3, 4, 6, 8)
ACCEPTANCES = (0.5, 0.7, 0.9)
SINGLE_DEVICE_WEIGHTS_B = 60e9  # bf16 weights above this run on the 8-device systems, tensor parallel 8
GPU = "h100"


@dataclass(frozen=True)
class Deployment:
    """Where a model runs in the study: a label, a catalog system, the precision its mapper takes."""

    label: str
    system: str
    precision: str
    tp: int = 1


def deployments(model: str) -> tuple[Deployment, ...]:
    """The GPU, Duplex, NeuPIMs and U280 (FlightLLM) deployments of ``model``: one device, or eight
    (tensor parallel 8) for a model whose bf16 weights exceed :data:`SINGLE_DEVICE_WEIGHTS_B`; the
    U280 stays one card (a model it cannot hold is a row with its reason)."""
    large = 2 * load_model(model).parameter_count() > SINGLE_DEVICE_WEIGHTS_B  # bf16: 2 B per parameter
    if large:
        return (Deployment(GPU, "8x-h100-sxm", "bf16", 8), Deployment("duplex", "8x-duplex", "bf16", 8),
                Deployment("neupims", "neupims", "fp16", 8), Deployment("u280", "alveo-u280", "w4a8"))
    return (Deployment(GPU, "h100-sxm", "bf16"), Deployment("duplex", "duplex", "bf16"),
            Deployment("neupims", "neupims", "fp16"), Deployment("u280", "alveo-u280", "w4a8"))


def self_draft(model: str, fraction: float = 0.125) -> Draft:
    """The target's first ``fraction`` of its layers (at least one) as the draft."""
    return Draft("self", layers=max(1, math.floor(load_model(model).num_layers * fraction)))


def speedup_study(models: Sequence[str] = MODELS, batches: Sequence[int] = BATCHES,
                  contexts: Sequence[int] = CONTEXTS, lengths: Sequence[int] = LENGTHS,
                  acceptances: Sequence[float] = ACCEPTANCES, draft: Callable[[str], Draft] = self_draft,
                  on_point: Callable[[], None] | None = None) -> pd.DataFrame:
    """One row per (model, deployment, batch, context, draft length, acceptance): ``speedup``
    over plain decode, ``tokens_per_s``, ``time_per_token_s``, the verify and plain steps' Op/B,
    the draft's share of the step, ``fits`` and ``reason``; ``on_point`` is called after each
    (model, deployment, batch, context). Steps are priced once per draft length and combined with
    each acceptance."""
    rows: list[dict[str, object]] = []
    for model in models:
        for place in deployments(model):
            for batch in batches:
                for context in contexts:
                    rows += _point_rows(model, place, batch, context, lengths, acceptances, draft(model))
                    if on_point is not None:
                        on_point()
    return pd.DataFrame(rows)


def _point_rows(model: str, place: Deployment, batch: int, context: int, lengths: Sequence[int],
                acceptances: Sequence[float], draft: Draft) -> list[dict[str, object]]:
    """The rows of one (model, deployment, batch, context): every length x acceptance, or one row
    per pair with the reason when the point cannot be priced (e.g. the model does not fit)."""
    base = {"model": model, "deployment": place.label, "system": place.system, "precision": place.precision,
            "tp": place.tp, "batch": batch, "context": context}
    try:
        parts = speculative_parts(model, place.system, batch, context=context, draft=draft, lengths=lengths,
                                  precision=place.precision, parallelism=Parallelism(tp=place.tp))
    except DecodexError as err:
        return [{**base, "draft_length": k, "acceptance": a, "fits": False, "reason": str(err).splitlines()[0]}
                for k in lengths for a in acceptances]
    rows = []
    for k in lengths:
        for rate in acceptances:
            step = parts.step(int(k), ChainAcceptance((float(rate),)).expected_accepted(int(k)))
            rows.append({**base, "draft_length": int(k), "acceptance": float(rate),
                         "tokens_per_step": step.tokens_per_step, "speedup": step.speedup,
                         "tokens_per_s": step.tokens_per_s, "time_per_token_s": step.time_per_token_s,
                         "verify_op_per_byte": step.verify_intensity,
                         "plain_op_per_byte": step.plain.flops / step.plain.bytes,
                         "draft_share": step.draft_time_s / step.step_time_s, "fits": step.fits,
                         "reason": step.reason})
    return rows


def best_lengths(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (model, deployment, batch, context, acceptance): the draft length with the most
    tokens/s among the points that fit, with its speedup (none fit: no row)."""
    ok = frame[frame["fits"].astype(bool)]
    if ok.empty:
        return pd.DataFrame(columns=["model", "deployment", "batch", "context", "acceptance", "draft_length",
                                     "speedup", "tokens_per_s"])
    keys = ["model", "deployment", "batch", "context", "acceptance"]
    best = ok.loc[ok.groupby(keys)["tokens_per_s"].idxmax()]
    return best[[*keys, "draft_length", "speedup", "tokens_per_s"]].reset_index(drop=True)


def advantage_crossover(frame: pd.DataFrame, gpu: str = GPU) -> pd.DataFrame:
    """Per (model, other deployment, batch, context, acceptance): its tokens/s over the GPU's at
    plain decode (``advantage_plain``), at the GPU's best draft length, and the GPU verify step's
    Op/B at which the ratio first falls to 1 as the draft lengthens (log-linear between the two
    draft lengths around it; NaN when it never does, or when there is no advantage to lose)."""
    ok = frame[frame["fits"].astype(bool)]
    rows = []
    keys = ["model", "batch", "context", "acceptance"]
    for key, group in ok.groupby(keys):
        ours = group[group["deployment"] == gpu].set_index("draft_length")
        if ours.empty:
            continue
        for label, other in group[group["deployment"] != gpu].groupby("deployment"):
            theirs = other.set_index("draft_length")
            common = sorted(set(ours.index) & set(theirs.index))
            if not common:
                continue
            ratio = np.array([theirs.loc[k, "tokens_per_s"] / ours.loc[k, "tokens_per_s"] for k in common])
            opb = np.array([ours.loc[k, "verify_op_per_byte"] for k in common])
            rows.append({**dict(zip(keys, key, strict=True)), "deployment": label,
                         "advantage_plain": float(ratio[0]) if common[0] == 0 else math.nan,
                         "advantage_at_gpu_best": float(theirs["tokens_per_s"].max() / ours["tokens_per_s"].max()),
                         "vanishes_at_op_per_byte": _first_crossing(opb, ratio)})
    return pd.DataFrame(rows)


def _first_crossing(opb: np.ndarray, ratio: np.ndarray) -> float:
    """The Op/B at which ``ratio`` first falls from above 1 to 1 or below (log-linear between the
    two points around it); NaN if it starts at or below 1 or never gets there."""
    if ratio.size == 0 or ratio[0] <= 1.0:
        return math.nan
    for i in range(1, ratio.size):
        if ratio[i] <= 1.0:
            x0, x1 = math.log(opb[i - 1]), math.log(opb[i])
            y0, y1 = math.log(ratio[i - 1]), math.log(ratio[i])
            return float(math.exp(x0 + (x1 - x0) * (0.0 - y0) / (y1 - y0))) if y1 != y0 else float(opb[i])
    return math.nan


def speedup_figure(frame: pd.DataFrame, model: str = "llama3-8b", batch: int = 8, context: int = 2048) -> go.Figure:
    """Speedup over plain decode against the draft length, one line per deployment and acceptance."""
    fig = go.Figure()
    part = frame[(frame["model"] == model) & (frame["batch"] == batch) & (frame["context"] == context)
                 & frame["fits"].astype(bool)]
    for (label, rate), group in part.groupby(["deployment", "acceptance"]):
        group = group.sort_values("draft_length")
        fig.add_trace(go.Scatter(x=group["draft_length"], y=group["speedup"], mode="lines+markers",
                                 name=f"{label}, acceptance {rate:g}"))
    fig.add_hline(y=1.0, line_dash="dot")
    fig.update_layout(title=f"Speculative decoding speedup: {model}, batch {batch}, context {context}",
                      xaxis_title="draft length k", yaxis_title="speedup over plain decode (time per token)")
    return fig


def crossover_figure(frame: pd.DataFrame, model: str = "llama3-8b", context: int = 2048,
                     acceptance: float = 0.7, gpu: str = GPU) -> go.Figure:
    """Each deployment's tokens/s over the GPU's against the GPU verify step's Op/B (all batches
    and draft lengths at one context and acceptance)."""
    fig = go.Figure()
    part = frame[(frame["model"] == model) & (frame["context"] == context) & (frame["acceptance"] == acceptance)
                 & frame["fits"].astype(bool)]
    ours = part[part["deployment"] == gpu].set_index(["batch", "draft_length"])
    for label, other in part[part["deployment"] != gpu].groupby("deployment"):
        theirs = other.set_index(["batch", "draft_length"])
        common = theirs.index.intersection(ours.index)
        if common.empty:
            continue
        ratio = theirs.loc[common, "tokens_per_s"] / ours.loc[common, "tokens_per_s"]
        fig.add_trace(go.Scatter(x=ours.loc[common, "verify_op_per_byte"], y=ratio, mode="markers", name=str(label),
                                 text=[f"batch {b}, k {k}" for b, k in common]))
    fig.add_hline(y=1.0, line_dash="dot")
    fig.update_xaxes(type="log")
    fig.update_layout(title=f"Advantage over the GPU vs the verify step's Op/B: {model}, context {context}, "
                            f"acceptance {acceptance:g}",
                      xaxis_title="GPU verify step FLOP per byte", yaxis_title="tokens/s over the GPU's")
    return fig
