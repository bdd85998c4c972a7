"""The outcome of a prefill-decode disaggregated run (:func:`sim.serving.disagg.serve_disaggregated`):
every request with its prefill instance, decode instance and KV transfer, one
:class:`ServingResult` per instance, and metrics over one clock, per dollar and per watt."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from decodex.sim.serving import metrics
from decodex.sim.serving.request_metrics import RequestMetrics
from decodex.sim.serving.result import ServingResult, speculation_totals

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True, eq=False)
class DisaggResult(RequestMetrics):
    """Prefill and decode instances serving one stream of requests. Times in s, bytes in B,
    energy in J, lengths in tokens, prices in USD/hour.

    Requests (index = arrival order): ``prefill_instance``, ``decode_instance`` (-1 for a one-token
    request, done at its prefill), ``arrival_s``, ``prefill_start_s`` (start of its first prefill
    iteration), ``prefill_end_s``, ``transfer_start_s``/``transfer_end_s`` (the KV on the link;
    NaN when nothing was sent), ``decode_admit_s`` (admission on the decode instance),
    ``first_token_s`` (= ``transfer_end_s``: the first token is delivered with the KV; the prefill
    end for a one-token request), ``finish_s``, ``input_tokens``, ``output_tokens``,
    ``kv_transfer_bytes`` (KV bytes of the prompt, all layers), ``preemptions_per_request`` and
    token times ``token_time_s[token_offsets[i]:token_offsets[i + 1]]`` (token 0 at
    ``first_token_s``). ``prefill_results``/``decode_results``: one :class:`ServingResult` per
    instance over the requests it served (a prefill instance's requests have one output token;
    a decode instance's ``iteration_output_tokens`` count the tokens it made, one fewer per
    request than its ``output_tokens``). ``*_usd_per_hour``: price of each instance (its devices).
    """

    model: str
    prefill_router: str
    decode_router: str
    prefill_systems: tuple[str, ...]
    decode_systems: tuple[str, ...]
    link: str
    link_bandwidth_bytes_per_s: float
    link_latency_s: float
    layerwise_overlap: bool
    prefill_instance: np.ndarray
    decode_instance: np.ndarray
    arrival_s: np.ndarray
    prefill_start_s: np.ndarray
    prefill_end_s: np.ndarray
    transfer_start_s: np.ndarray
    transfer_end_s: np.ndarray
    decode_admit_s: np.ndarray
    first_token_s: np.ndarray
    finish_s: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    kv_transfer_bytes: np.ndarray
    preemptions_per_request: np.ndarray
    token_time_s: np.ndarray
    token_offsets: np.ndarray
    prefill_results: tuple[ServingResult, ...]
    decode_results: tuple[ServingResult, ...]
    prefill_usd_per_hour: tuple[float, ...]
    decode_usd_per_hour: tuple[float, ...]
    link_energy_per_byte_j: float
    slo_ttft_s: float
    slo_tpot_s: float

    # per-request metrics (ttft_s: the first token arrives with the KV, after the transfer) ----
    @cached_property
    def transfer_s(self) -> np.ndarray:
        """Time from the end of the prefill to the end of the KV transfer per request, s (what the
        transfer adds to TTFT; 0 when nothing was sent)."""
        sent = ~np.isnan(self.transfer_end_s)
        return np.where(sent, self.transfer_end_s - self.prefill_end_s, 0.0)

    @cached_property
    def decode_queue_s(self) -> np.ndarray:
        """Wait for KV blocks on the decode instance (transfer end to admission) per request, s."""
        return self.decode_admit_s - self.transfer_end_s

    @property
    def scheduled_s(self) -> np.ndarray:
        """When each request was first scheduled: the start of its first prefill iteration, s."""
        return self.prefill_start_s

    # run metrics ---------------------------------------------------------------------------
    @property
    def utilization(self) -> float:
        """Mean busy fraction of all instances over the makespan (0..1)."""
        return float(self.busy_s.mean()) / self.makespan_s if self.makespan_s > 0 else float("nan")

    @property
    def instances(self) -> tuple[ServingResult, ...]:
        """Every instance's result: the prefill instances, then the decode instances."""
        return self.prefill_results + self.decode_results

    @cached_property
    def busy_s(self) -> np.ndarray:
        """Time each instance (prefill, then decode) spent running iterations, s."""
        return np.array([r.busy_s for r in self.instances])

    @cached_property
    def instance_energy_j(self) -> np.ndarray:
        """Energy of each instance over the makespan: iterations plus idle power while idle, J."""
        idle = np.maximum(self.makespan_s - self.busy_s, 0.0)
        return np.array([float(r.iteration_energy_j.sum()) + r.idle_power_w * i
                         for r, i in zip(self.instances, idle, strict=True)])

    @property
    def link_energy_j(self) -> float:
        """Energy of the KV transfers (bytes sent x the link's J/B), J."""
        sent = ~np.isnan(self.transfer_end_s)
        return float(self.kv_transfer_bytes[sent].sum()) * self.link_energy_per_byte_j

    @property
    def energy_j(self) -> float:
        """Energy of all instances over the makespan plus the link's, J."""
        return float(self.instance_energy_j.sum()) + self.link_energy_j

    @property
    def mean_power_w(self) -> float:
        """Mean power of all instances over the makespan, W."""
        return self.energy_j / self.makespan_s if self.makespan_s > 0 else float("nan")

    @property
    def usd_per_hour(self) -> float:
        """Price of all instances, USD/hour."""
        return float(sum(self.prefill_usd_per_hour) + sum(self.decode_usd_per_hour))

    @property
    def tokens_per_s_per_usd_hour(self) -> float:
        """Throughput per price: output tokens/s per USD/hour."""
        return self.throughput_tokens_per_s / self.usd_per_hour if self.usd_per_hour > 0 else float("nan")

    @property
    def tokens_per_j(self) -> float:
        """Output tokens per joule (= tokens/s per watt of mean power)."""
        return self.total_output_tokens / self.energy_j

    @property
    def kv_bytes_sent(self) -> float:
        """KV bytes sent over the link, all requests, B."""
        return float(self.kv_transfer_bytes[~np.isnan(self.transfer_end_s)].sum())

    # tables --------------------------------------------------------------------------------
    @property
    def requests(self) -> pd.DataFrame:
        """One row per request (arrival order): instances, phase times (s), bytes sent (B),
        lengths (tokens), latency metrics (s)."""
        import pandas as pd

        return pd.DataFrame({
            "prefill_instance": self.prefill_instance, "decode_instance": self.decode_instance,
            "arrival_s": self.arrival_s, "prefill_start_s": self.prefill_start_s, "prefill_end_s": self.prefill_end_s,
            "transfer_start_s": self.transfer_start_s, "transfer_end_s": self.transfer_end_s,
            "transfer_s": self.transfer_s, "decode_admit_s": self.decode_admit_s,
            "decode_queue_s": self.decode_queue_s, "first_token_s": self.first_token_s, "finish_s": self.finish_s,
            "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
            "kv_transfer_bytes": self.kv_transfer_bytes, "ttft_s": self.ttft_s, "tpot_s": self.tpot_s,
            "e2e_s": self.e2e_s, "preemptions": self.preemptions_per_request, "meets_slo": self.meets_slo,
        })

    @property
    def instances_table(self) -> pd.DataFrame:
        """One row per instance (``role`` prefill or decode): requests, tokens, busy time and
        utilisation over the run's makespan, KV blocks, price (USD/h), energy (J)."""
        import pandas as pd

        span = self.makespan_s
        prices = self.prefill_usd_per_hour + self.decode_usd_per_hour
        rows = []
        for index, (res, busy, energy, price) in enumerate(zip(self.instances, self.busy_s, self.instance_energy_j,
                                                               prices, strict=True)):
            prefill = index < len(self.prefill_results)
            rows.append({
                "role": "prefill" if prefill else "decode",
                "instance": index if prefill else index - len(self.prefill_results),
                "system": res.system, "devices": res.devices, "requests": res.num_requests,
                "input_tokens": int(res.input_tokens.sum()),
                "output_tokens": int(res.iteration_output_tokens.sum()),
                "iterations": int(res.iteration_start_s.size), "busy_s": float(busy), "utilization": busy / span,
                "preemptions": res.preemptions, "kv_blocks": res.kv.total_blocks,
                "peak_kv_blocks_used": int(res.iteration_kv_blocks.max()) if res.iteration_kv_blocks.size else 0,
                "usd_per_hour": price, "energy_j": float(energy),
            })
        return pd.DataFrame(rows)

    def summary(self) -> dict[str, Any]:
        """The headline figures as a plain dict (JSON-ready), named as :meth:`ClusterResult.summary`
        where they mean the same, plus the link, transfers, price and energy figures."""
        return {
            "model": self.model, "prefill_systems": list(self.prefill_systems),
            "decode_systems": list(self.decode_systems), "prefill_router": self.prefill_router,
            "decode_router": self.decode_router, "link": self.link,
            "link_bandwidth_bytes_per_s": self.link_bandwidth_bytes_per_s, "link_latency_s": self.link_latency_s,
            "layerwise_overlap": self.layerwise_overlap,
            "devices": int(sum(r.devices for r in self.instances)),
            "requests": self.num_requests, "output_tokens": self.total_output_tokens,
            "input_tokens": int(self.input_tokens.sum()),
            "ttft_s": metrics.percentiles(self.ttft_s), "tpot_s": metrics.percentiles(self.tpot_s),
            "e2e_s": metrics.percentiles(self.e2e_s), "tbt_s": metrics.percentiles(self.tbt_s),
            "transfer_s": metrics.percentiles(self.transfer_s),
            "decode_queue_s": metrics.percentiles(self.decode_queue_s),
            "kv_bytes_sent": self.kv_bytes_sent,
            "throughput_tokens_per_s": self.throughput_tokens_per_s,
            "request_throughput_per_s": self.request_throughput_per_s,
            "goodput_requests_per_s": self.goodput_requests_per_s,
            "slo_ttft_s": self.slo_ttft_s, "slo_tpot_s": self.slo_tpot_s,
            "slo_attainment": float(self.meets_slo.mean()), "makespan_s": self.makespan_s,
            "energy_j": self.energy_j, "energy_per_token_j": self.energy_per_token_j,
            "mean_power_w": self.mean_power_w, "tokens_per_j": self.tokens_per_j,
            "usd_per_hour": self.usd_per_hour, "tokens_per_s_per_usd_hour": self.tokens_per_s_per_usd_hour,
            "preemptions": self.preemptions,
            "per_instance": self.instances_table.to_dict(orient="records"),
            **speculation_totals(self.decode_results),
        }
