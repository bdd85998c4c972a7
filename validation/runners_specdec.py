"""Runner of the speculative-decoding reproductions: measured acceptance in, speedup out.

``specdec_speedup``: the speedup of speculative over plain decoding at batch 1 that Spec-Bench
measured on one A100 (``workloads/catalog/speculative/spec-bench-a100.toml``), from the tokens
per step it measured (the acceptance, taken as given) and the mechanisms: the device time of
every forward pass from the step model, and the host time of Hugging Face transformers' eager
decoding (``validation/data/specbench/host-time.toml``: per decoder layer of every forward, and
per speculative step of each method's own loop).

- ``method = "sps"``: a draft model through transformers' assisted generation, its draft length
  under the heuristic schedule (:mod:`sim.speculative_schedule`; the one per-position rate under
  which the schedule gives the measured tokens per step): per step, ``k`` draft forwards and one
  verify of ``k + 1`` tokens, averaged over the schedule's lengths.
- ``method = "medusa"``: ``heads`` decoding heads and the named tree: per step, one verify over
  the tree and one pass of the heads.
- ``method = "eagle"``: EAGLE's draft, one decoder layer of the target's shape over the target's
  features with the target's LM head (Li et al. 2024, arXiv 2401.15077; the small layer fusing
  features and embeddings is not priced), priced as a one-layer self-draft that drafts the named
  tree level by level (:func:`~sim.speculative_draft.tree_draft_steps`): per step, one draft
  forward per level and one verify over the tree.

speedup = tokens per step x plain time per token / time per step, both with their host time.
The same host constants serve the RTX 3090 rows (another machine, 12 CPU cores against 96: an
assumption the two held-out 3090 targets put to the test).
:func:`fit_host_time` derives the host constants (what the data file records) from the sources
named there; the tests check that the file holds what it gives.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from decodex.core.input_files import read_toml
from decodex.hw_models.system import load_system
from decodex.sim.estimate import estimate
from decodex.sim.speculative import verify_step
from decodex.sim.speculative_draft import Draft, heads_step, tree_draft_steps
from decodex.sim.speculative_schedule import heuristic_lengths, heuristic_rate_for
from decodex.validation.reproduce import register_runner
from decodex.workloads.acceptance import ChainAcceptance
from decodex.workloads.acceptance_data import load_measured
from decodex.workloads.catalog import load_model
from decodex.workloads.token_tree import TokenTree, named_tree

HOST_FILE = Path(__file__).resolve().parent / "data" / "specbench" / "host-time.toml"
MOST_DRAFT = 32  # the heuristic schedule's cap here: at the measured rates it stays below ~12
STEP_HOST = {"sps": "assisted_step_s", "medusa": "medusa_step_s", "eagle": "eagle_step_s"}  # each loop's own


@cache
def host_time(path: Path = HOST_FILE) -> dict[str, float]:
    """The host-time constants of the data file, s."""
    return {key: float(value) for key, value in read_toml(path)["host"].items()}


def measured(config: Mapping[str, Any]) -> tuple[float, float]:
    """(tokens per step, speedup) Spec-Bench measured for the config's ``measured_method`` on
    ``measured_target`` on ``measured_device`` (default the config's ``system``)."""
    method, target = str(config["measured_method"]), str(config["measured_target"])
    device = str(config.get("measured_device", config["system"]))
    for row in load_measured():
        if row.method == method and row.target == target and row.source.get("device") == device:
            return row.tokens_per_step, row.speedup
    raise KeyError(f"no Spec-Bench row for {method} on {target} on {device}")


def step_times(config: Mapping[str, Any], per_layer_s: float) -> tuple[float, float, float]:
    """(tokens per step, plain time per token, speculative time per step without the method's own
    per-step host time) for a target config (module doc), s."""
    model = load_model(str(config["model"]))
    system = load_system(str(config["system"]))
    precision, context = str(config["precision"]), int(config["context"])
    tokens, _ = measured(config)
    host = per_layer_s * model.num_layers
    plain = estimate(model, system, 1, context=context, precision=precision).step_time_s + host
    if config["method"] == "sps":
        draft = load_model(str(config["draft"]))
        rate = heuristic_rate_for(tokens, MOST_DRAFT)
        share = heuristic_lengths(ChainAcceptance((rate,)), MOST_DRAFT)
        draft_s = estimate(draft, system, 1, context=context, precision=precision).step_time_s \
            + per_layer_s * draft.num_layers
        step = sum(share[k] * (k * draft_s + verify_step(model, system, 1, context=context, tree=TokenTree.chain(k),
                                                         precision=precision).step_time_s)
                   for k in range(1, share.size) if share[k] > 1e-9) + host
        return tokens, plain, float(step)
    tree = named_tree(str(config["tree"]))
    verify = verify_step(model, system, 1, context=context, tree=tree, precision=precision).step_time_s
    if config["method"] == "eagle":
        levels = tree_draft_steps(model, system, 1, context, tree, Draft("self", layers=1), precision, None)
        drafting = sum(level.step_time_s + per_layer_s for level in levels)  # one layer's launches per level
        return tokens, plain, verify + drafting + host
    heads = int(config["heads"])
    drafting = heads_step(model, system, 1, context, rows=tree.query_tokens, heads=heads, precision=precision,
                          parallelism=None).step_time_s
    return tokens, plain, verify + drafting + host + per_layer_s  # the heads: one more module's launches


@register_runner("specdec_speedup")
def specdec_speedup(config: Mapping[str, Any]) -> float:
    """Speedup of speculative over plain decoding (module docstring)."""
    host = host_time()
    tokens, plain, step = step_times(config, host["per_layer_s"])
    own = host[STEP_HOST[str(config["method"])]]
    return tokens * plain / (step + own)


def fit_host_time(vanilla_tokens_per_s: float, fits: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """The host constants (s): ``per_layer_s`` from a measured vanilla decoding rate of the
    ``"sps"`` config's target (its time per token less the step model's device time, over its
    layers), then each method's per-step host time that makes its config (``fits[method]``) give
    the measured speedup (one row per method; the others are held out)."""
    sps = fits["sps"]
    model = load_model(str(sps["model"]))
    device = estimate(model, load_system(str(sps["system"])), 1, context=int(sps["context"]),
                      precision=str(sps["precision"])).step_time_s
    per_layer = (1.0 / vanilla_tokens_per_s - device) / model.num_layers
    out = {"per_layer_s": per_layer}
    for method, config in fits.items():
        key = STEP_HOST[method]
        tokens, plain, step = step_times(config, per_layer)
        _, speedup = measured(config)
        out[key] = float(tokens * plain / speedup - step)
    return out


def fit_report(targets: list[Any]) -> dict[str, Any]:
    """Each specdec target's simulated speedup against Spec-Bench's, with the error (a table for
    the docs)."""
    rows = []
    for target in targets:
        if target.runner != "specdec_speedup":
            continue
        value = specdec_speedup(target.config)
        rows.append({"target": target.name, "measured": target.value, "simulated": value,
                     "error": value / target.value - 1.0, "role": target.config.get("role", "")})
    return {"rows": rows, "mean_abs_error": float(np.mean([abs(r["error"]) for r in rows])) if rows else 0.0}
