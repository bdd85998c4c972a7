"""The outcome of a serving run: per-request and per-iteration records and system metrics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from decodex.sim.serving import metrics
from decodex.sim.serving.kv_cache import KVCapacity
from decodex.sim.serving.request_metrics import RequestMetrics

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True, eq=False)
class ServingResult(RequestMetrics):
    """One replica serving a stream of requests. Times in s, energy in J, lengths in tokens.

    Requests (index = arrival order): ``arrival_s``, ``scheduled_s`` (start of the first
    iteration that prefilled it), ``first_token_s``, ``finish_s``,
    ``input_tokens``, ``output_tokens``, ``preemptions_per_request``. Token times:
    ``token_time_s[token_offsets[i]:token_offsets[i + 1]]`` are the times request ``i``'s output
    tokens were produced. Iterations: ``iteration_start_s``, ``iteration_duration_s``,
    ``iteration_decodes`` (decode requests), ``iteration_prefills`` (prefill chunks),
    ``iteration_prefill_tokens``, ``iteration_output_tokens``, ``iteration_kv_blocks`` (blocks in
    use during the iteration), ``iteration_energy_j`` (whole replica, from the step model).
    ``idle_power_w``: power of the replica's devices while no iteration runs (W), charged between
    iterations. ``slo_ttft_s``/``slo_tpot_s``: the goodput SLOs. ``software``: the serving
    software spec (its host time per iteration is inside ``iteration_duration_s``, its energy
    at idle power inside ``iteration_energy_j``).
    """

    model: str
    system: str
    scheduler: str
    parallelism: str
    precision: str
    devices: int
    arrival_s: np.ndarray
    scheduled_s: np.ndarray
    first_token_s: np.ndarray
    finish_s: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    preemptions_per_request: np.ndarray
    token_time_s: np.ndarray
    token_offsets: np.ndarray
    iteration_start_s: np.ndarray
    iteration_duration_s: np.ndarray
    iteration_decodes: np.ndarray
    iteration_prefills: np.ndarray
    iteration_prefill_tokens: np.ndarray
    iteration_output_tokens: np.ndarray
    iteration_kv_blocks: np.ndarray
    iteration_energy_j: np.ndarray
    kv: KVCapacity
    idle_power_w: float
    slo_ttft_s: float
    slo_tpot_s: float
    step_cache_hits: int = 0
    step_cache_misses: int = 0
    software: str = ""
    speculation: str = ""  # the speculative decoding of the run (Speculation.label), "" for none
    drafted_tokens: int = 0  # tokens drafted by all speculative decode steps
    accepted_tokens: int = 0  # of those, accepted and emitted
    speculative_steps: int = 0  # decode steps (request x iteration) that drafted

    # system metrics ------------------------------------------------------------------------
    @property
    def busy_s(self) -> float:
        """Time the replica spent running iterations, s."""
        return float(self.iteration_duration_s.sum())

    @property
    def utilization(self) -> float:
        """Busy fraction of the replica over the makespan (0..1)."""
        return self.busy_s / self.makespan_s if self.makespan_s > 0 else float("nan")

    @property
    def energy_j(self) -> float:
        """Energy of the replica over the makespan: every iteration's energy plus idle power
        while idle, J."""
        idle = max(self.makespan_s - self.busy_s, 0.0)
        return float(self.iteration_energy_j.sum()) + self.idle_power_w * idle

    # tables --------------------------------------------------------------------------------
    @property
    def requests(self) -> pd.DataFrame:
        """One row per request (arrival order), unit-suffixed columns."""
        import pandas as pd

        return pd.DataFrame(self.request_columns())

    @property
    def iterations(self) -> pd.DataFrame:
        """One row per iteration, unit-suffixed columns."""
        import pandas as pd

        return pd.DataFrame({
            "start_s": self.iteration_start_s, "duration_s": self.iteration_duration_s,
            "decode_requests": self.iteration_decodes, "prefill_requests": self.iteration_prefills,
            "prefill_tokens": self.iteration_prefill_tokens,
            "batch_size": self.iteration_decodes + self.iteration_prefills,
            "output_tokens": self.iteration_output_tokens, "kv_blocks_used": self.iteration_kv_blocks,
            "energy_j": self.iteration_energy_j,
        })

    def request_tbt_s(self, request: int) -> np.ndarray:
        """Times between consecutive tokens of one request, s."""
        times = self.token_time_s[self.token_offsets[request]:self.token_offsets[request + 1]]
        return np.diff(times)

    def summary(self) -> dict[str, Any]:
        """The headline figures as a plain dict (JSON-ready): latency percentiles (``p50``,
        ``p90``, ``p99``, ``mean``; s), throughput (tokens/s), goodput (requests/s), counts."""
        return {
            "model": self.model, "system": self.system, "scheduler": self.scheduler, "software": self.software,
            "parallelism": self.parallelism, "precision": self.precision, "devices": self.devices,
            "requests": self.num_requests, "output_tokens": self.total_output_tokens,
            "input_tokens": int(self.input_tokens.sum()),
            "ttft_s": metrics.percentiles(self.ttft_s), "tpot_s": metrics.percentiles(self.tpot_s),
            "e2e_s": metrics.percentiles(self.e2e_s), "tbt_s": metrics.percentiles(self.tbt_s),
            "throughput_tokens_per_s": self.throughput_tokens_per_s,
            "request_throughput_per_s": self.request_throughput_per_s,
            "goodput_requests_per_s": self.goodput_requests_per_s,
            "slo_ttft_s": self.slo_ttft_s, "slo_tpot_s": self.slo_tpot_s,
            "slo_attainment": float(self.meets_slo.mean()),
            "makespan_s": self.makespan_s, "utilization": self.utilization,
            "energy_j": self.energy_j, "energy_per_token_j": self.energy_per_token_j,
            "preemptions": self.preemptions, "iterations": int(self.iteration_start_s.size),
            "mean_batch_size": float(np.mean(self.iteration_decodes + self.iteration_prefills)),
            "kv_blocks": self.kv.total_blocks, "block_size": self.kv.block_size,
            "kv_bytes_per_token": self.kv.kv_bytes_per_token,
            "peak_kv_blocks_used": int(self.iteration_kv_blocks.max()),
            "step_cache_hits": self.step_cache_hits, "step_cache_misses": self.step_cache_misses,
            **self._speculation_summary(),
        }

    def _speculation_summary(self) -> dict[str, Any]:
        """The speculative decoding figures of :meth:`summary` (none without speculation)."""
        return speculation_totals((self,))


def speculation_totals(runs: tuple[ServingResult, ...]) -> dict[str, Any]:
    """Speculative decoding summed over the runs of one replica or instance each (none when no run
    speculated): the label, drafted and accepted tokens, the accepted share and the tokens each
    decode step emitted on average."""
    runs = tuple(r for r in runs if r.speculation)
    if not runs:
        return {}
    drafted, accepted = sum(r.drafted_tokens for r in runs), sum(r.accepted_tokens for r in runs)
    steps = sum(r.speculative_steps for r in runs)
    return {"speculation": runs[0].speculation, "drafted_tokens": drafted, "accepted_tokens": accepted,
            "acceptance_rate": accepted / drafted if drafted else 0.0,
            "tokens_per_decode_step": (steps + accepted) / max(steps, 1)}
