"""Metrics every serving result computes the same way from its per-request arrays.

:class:`RequestMetrics` is mixed into :class:`~sim.serving.result.ServingResult` (one replica),
:class:`~sim.serving.cluster_result.ClusterResult` (replicas behind a router) and
:class:`~sim.serving.disagg_result.DisaggResult` (prefill and decode pools): given
``arrival_s``, ``first_token_s``, ``finish_s``, ``output_tokens``, ``token_time_s``,
``token_offsets``, ``preemptions_per_request``, the SLOs ``slo_ttft_s``/``slo_tpot_s`` and each
result's own ``energy_j``, it gives per-request latencies (s), run rates over the makespan (per s),
energy per token (J) and preemptions. Each result's docstring says what its first token is
(e.g. after the KV transfer when disaggregated).
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

from decodex.sim.serving import metrics


class RequestMetrics:
    """Per-request latencies and run rates of a serving result (see the module docstring)."""

    arrival_s: np.ndarray
    input_tokens: np.ndarray
    first_token_s: np.ndarray
    finish_s: np.ndarray
    output_tokens: np.ndarray
    token_time_s: np.ndarray
    token_offsets: np.ndarray
    preemptions_per_request: np.ndarray
    slo_ttft_s: float
    slo_tpot_s: float

    @cached_property
    def ttft_s(self) -> np.ndarray:
        """Time to first token per request, s."""
        return metrics.ttft(self.arrival_s, self.first_token_s)

    @cached_property
    def e2e_s(self) -> np.ndarray:
        """End-to-end latency per request, s."""
        return metrics.e2e(self.arrival_s, self.finish_s)

    @cached_property
    def tpot_s(self) -> np.ndarray:
        """Time per output token after the first, per request, s (NaN for one-token outputs)."""
        return metrics.tpot(self.arrival_s, self.first_token_s, self.finish_s, self.output_tokens)

    @cached_property
    def tbt_s(self) -> np.ndarray:
        """Every time between consecutive tokens of a request, all requests, s."""
        return metrics.time_between_tokens(self.token_time_s, self.token_offsets)

    @cached_property
    def meets_slo(self) -> np.ndarray:
        """Per request: whether TTFT and TPOT are within the SLOs."""
        return metrics.meets_slo(self.ttft_s, self.tpot_s, self.slo_ttft_s, self.slo_tpot_s)

    def request_columns(self) -> dict[str, np.ndarray]:
        """The per-request columns every result's ``requests`` table shares, in order: times (s),
        queue (first scheduled - arrival, s), lengths (tokens), latencies (s), preemptions, SLO met.
        Needs the result's ``scheduled_s``."""
        scheduled = self.scheduled_s  # type: ignore[attr-defined]
        return {
            "arrival_s": self.arrival_s, "scheduled_s": scheduled, "queue_s": scheduled - self.arrival_s,
            "first_token_s": self.first_token_s, "finish_s": self.finish_s,
            "input_tokens": self.input_tokens, "output_tokens": self.output_tokens, "ttft_s": self.ttft_s,
            "tpot_s": self.tpot_s, "e2e_s": self.e2e_s, "preemptions": self.preemptions_per_request,
            "meets_slo": self.meets_slo,
        }

    @property
    def num_requests(self) -> int:
        """Requests served."""
        return int(self.arrival_s.size)

    @property
    def total_output_tokens(self) -> int:
        """Output tokens generated, all requests."""
        return int(self.output_tokens.sum())

    @property
    def mean_in_system(self) -> float:
        """Time-average number of requests in the system (Little's L)."""
        return metrics.mean_in_system(self.arrival_s, self.finish_s)

    @property
    def makespan_s(self) -> float:
        """From the first arrival to the last finish, s."""
        return float(self.finish_s.max() - self.arrival_s.min())

    def per_s(self, count: float) -> float:
        """``count`` per second of the makespan (NaN for an empty makespan)."""
        return count / self.makespan_s if self.makespan_s > 0 else float("nan")

    @property
    def throughput_tokens_per_s(self) -> float:
        """Output tokens per second over the makespan."""
        return self.per_s(self.total_output_tokens)

    @property
    def request_throughput_per_s(self) -> float:
        """Finished requests per second over the makespan."""
        return self.per_s(self.num_requests)

    @property
    def goodput_requests_per_s(self) -> float:
        """Requests per second that met both SLOs, over the makespan."""
        return self.per_s(int(self.meets_slo.sum()))

    @property
    def energy_j(self) -> float:
        """Energy of the run, J (defined by each result)."""
        raise NotImplementedError

    @property
    def energy_per_token_j(self) -> float:
        """Energy per output token, J."""
        return self.energy_j / self.total_output_tokens

    @property
    def preemptions(self) -> int:
        """Preemptions (evictions to recompute), all requests."""
        return int(self.preemptions_per_request.sum())
