"""The outcome of a cluster serving run: every request (with the replica that served it), one
:class:`ServingResult` per replica, and cluster metrics over one simulation clock."""

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
class ClusterResult(RequestMetrics):
    """Replicas behind a router serving one stream of requests. Times in s, energy in J, lengths
    in tokens.

    Requests (index = arrival order, cluster-wide): ``replica`` (index of the replica the router
    sent it to), ``arrival_s``, ``scheduled_s``, ``first_token_s``, ``finish_s``,
    ``input_tokens``, ``output_tokens``, ``preemptions_per_request``, and token times
    ``token_time_s[token_offsets[i]:token_offsets[i + 1]]`` as in :class:`ServingResult`.
    ``replica_results``: one :class:`ServingResult` per replica, over the requests it served
    (renumbered 0..k-1 in arrival order; its own makespan, so its ``utilization`` is over its
    own first arrival to last finish; :attr:`replicas` uses the cluster's makespan instead).
    ``systems``: the system of each replica. ``router``: the routing policy's name.
    """

    model: str
    router: str
    systems: tuple[str, ...]
    replica: np.ndarray
    arrival_s: np.ndarray
    scheduled_s: np.ndarray
    first_token_s: np.ndarray
    finish_s: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    preemptions_per_request: np.ndarray
    token_time_s: np.ndarray
    token_offsets: np.ndarray
    replica_results: tuple[ServingResult, ...]
    slo_ttft_s: float
    slo_tpot_s: float

    # cluster metrics -----------------------------------------------------------------------
    @property
    def num_replicas(self) -> int:
        """Replicas behind the router."""
        return len(self.replica_results)

    @cached_property
    def busy_s(self) -> np.ndarray:
        """Time each replica spent running iterations, s (one entry per replica)."""
        return np.array([r.busy_s for r in self.replica_results])

    @property
    def utilization(self) -> float:
        """Mean busy fraction of the replicas over the cluster's makespan (0..1)."""
        return float(self.busy_s.mean()) / self.makespan_s if self.makespan_s > 0 else float("nan")

    @cached_property
    def replica_energy_j(self) -> np.ndarray:
        """Energy of each replica over the cluster's makespan: its iterations' energy plus idle
        power while idle, J."""
        idle = np.maximum(self.makespan_s - self.busy_s, 0.0)
        return np.array([float(r.iteration_energy_j.sum()) + r.idle_power_w * i
                         for r, i in zip(self.replica_results, idle, strict=True)])

    @property
    def energy_j(self) -> float:
        """Energy of all replicas over the cluster's makespan, J."""
        return float(self.replica_energy_j.sum())

    # tables --------------------------------------------------------------------------------
    @property
    def requests(self) -> pd.DataFrame:
        """One row per request (arrival order), with the ``replica`` that served it and its
        ``system``; unit-suffixed columns as :attr:`ServingResult.requests`."""
        import pandas as pd

        return pd.DataFrame({"replica": self.replica, "system": np.asarray(self.systems, dtype=object)[self.replica],
                             **self.request_columns()})

    @property
    def replicas(self) -> pd.DataFrame:
        """One row per replica: requests and tokens served, busy time and utilisation (over the
        cluster's makespan), throughput (tokens/s over the cluster's makespan), latency
        percentiles (s), goodput (requests/s), preemptions, KV blocks, energy (J)."""
        import pandas as pd

        span = self.makespan_s
        rows = []
        for index, (res, busy, energy) in enumerate(zip(self.replica_results, self.busy_s, self.replica_energy_j,
                                                        strict=True)):
            ttft, tpot, e2e = (metrics.percentiles(v) for v in (res.ttft_s, res.tpot_s, res.e2e_s))
            rows.append({
                "replica": index, "system": res.system, "devices": res.devices, "requests": res.num_requests,
                "input_tokens": int(res.input_tokens.sum()), "output_tokens": res.total_output_tokens,
                "iterations": int(res.iteration_start_s.size), "busy_s": float(busy), "utilization": busy / span,
                "throughput_tokens_per_s": res.total_output_tokens / span,
                "goodput_requests_per_s": int(res.meets_slo.sum()) / span,
                "ttft_p50_s": ttft["p50"], "ttft_p99_s": ttft["p99"], "tpot_p50_s": tpot["p50"],
                "tpot_p99_s": tpot["p99"], "e2e_p50_s": e2e["p50"], "e2e_p99_s": e2e["p99"],
                "preemptions": res.preemptions, "kv_blocks": res.kv.total_blocks,
                "peak_kv_blocks_used": int(res.iteration_kv_blocks.max()) if res.iteration_kv_blocks.size else 0,
                "energy_j": float(energy),
            })
        return pd.DataFrame(rows)

    def summary(self) -> dict[str, Any]:
        """The headline figures as a plain dict (JSON-ready): cluster latency percentiles
        (``p50``, ``p90``, ``p99``, ``mean``; s), throughput (tokens/s), goodput (requests/s),
        counts, and ``replicas``: one dict per replica (the rows of :attr:`replicas`)."""
        first = self.replica_results[0]
        return {
            "model": self.model, "router": self.router, "replicas": self.num_replicas, "systems": list(self.systems),
            "scheduler": first.scheduler, "software": first.software, "parallelism": first.parallelism,
            "precision": first.precision, "devices": int(sum(r.devices for r in self.replica_results)),
            "requests": self.num_requests, "output_tokens": self.total_output_tokens,
            "input_tokens": int(self.input_tokens.sum()),
            "ttft_s": metrics.percentiles(self.ttft_s), "tpot_s": metrics.percentiles(self.tpot_s),
            "e2e_s": metrics.percentiles(self.e2e_s), "tbt_s": metrics.percentiles(self.tbt_s),
            "throughput_tokens_per_s": self.throughput_tokens_per_s,
            "request_throughput_per_s": self.request_throughput_per_s,
            "goodput_requests_per_s": self.goodput_requests_per_s,
            "slo_ttft_s": self.slo_ttft_s, "slo_tpot_s": self.slo_tpot_s,
            "slo_attainment": float(self.meets_slo.mean()),
            "makespan_s": self.makespan_s, "utilization": self.utilization, "mean_in_system": self.mean_in_system,
            "energy_j": self.energy_j, "energy_per_token_j": self.energy_per_token_j,
            "preemptions": self.preemptions,
            "per_replica": self.replicas.to_dict(orient="records"),
            **speculation_totals(self.replica_results),
        }

