"""Runners of the attention-FFN disaggregation reproductions (Step-3, MegaScale-Infer).

- ``afd_decode_cost``: Step-3's theoretical decoding cost (sim/decode_cost.py), USD per million
  tokens, for ``model`` at ``context`` with each part on the cheapest of ``devices``
  (``disaggregated``) or both on the cheapest single device.
- ``afd_tokens_per_device``: the highest tokens/s per device ``system`` reaches for ``model`` at
  ``context`` within ``tpot_s`` (sim/tpot_search.py), over the micro-batch counts in
  ``microbatches`` and batches in steps of ``batch_step`` up to ``batch_max``; 0 when no batch
  meets the target.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sim.decode_cost import decode_cost
from sim.tpot_search import best_under_tpot
from validation.reproduce import register_runner


@register_runner("afd_decode_cost")
def afd_decode_cost(config: Mapping[str, Any]) -> float:
    """USD per million decoded tokens (module docstring)."""
    cost = decode_cost(str(config["model"]), int(config["context"]), tuple(config["devices"]),
                       precision=str(config.get("precision", "fp8")),
                       disaggregated=bool(config.get("disaggregated", True)))
    return cost.usd_per_million_tokens


@register_runner("afd_tokens_per_device")
def afd_tokens_per_device(config: Mapping[str, Any]) -> float:
    """Tokens/s per device within the TPOT target (module docstring)."""
    point = best_under_tpot(str(config["model"]), str(config["system"]), context=int(config["context"]),
                            tpot_s=float(config["tpot_s"]), precision=str(config.get("precision", "fp8")),
                            settings=[{"microbatches": int(m)} for m in config.get("microbatches", [2, 3, 4])],
                            step=int(config.get("batch_step", 32)), high=int(config.get("batch_max", 16384)))
    return point.tokens_per_s_per_device if point is not None else 0.0
