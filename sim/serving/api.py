"""``serve``: simulate one model replica serving a stream of requests."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from decodex.core.errors import ArgumentError
from decodex.hw_models.system import SystemSpec, load_system
from decodex.sim.estimate import estimate
from decodex.sim.serving.engine import ServingEngine
from decodex.sim.serving.kv_cache import BlockManager, kv_capacity
from decodex.sim.serving.result import ServingResult
from decodex.sim.serving.schedulers import get_scheduler
from decodex.sim.serving.state import ReplicaState
from decodex.sim.serving.step_times import StepTimes
from decodex.sim.serving.workload import MAX_TOKENS, Workload
from decodex.workloads.batch import Batch, Routing
from decodex.workloads.catalog import load_model
from decodex.workloads.model_config import ModelConfig
from decodex.workloads.parallelism import Parallelism
from decodex.workloads.precision import Precision

DEFAULT_SLO_TTFT_S = 2.0
DEFAULT_SLO_TPOT_S = 0.1


def _positive_float(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            math.isfinite(value) and value > 0):
        raise ArgumentError(f"{name}: {value!r} must be a number in (0, inf)")
    return float(value)


def serve(model: str | Path | ModelConfig, system: str | Path | SystemSpec, workload: Workload, *,
          requests: int | None = None, scheduler: str = "continuous", chunk: int = 512, max_batch: int = 256,
          max_prefill_tokens: int | None = None, block_size: int = 16, memory_utilization: float = 0.9,
          kv_blocks: int | None = None, precision: str | Precision = "bf16", parallelism: Parallelism | None = None,
          seed: int = 0, slo_ttft_s: float = DEFAULT_SLO_TTFT_S, slo_tpot_s: float = DEFAULT_SLO_TPOT_S,
          bucket_width: float = 0.01, routing: Routing | None = None) -> ServingResult:
    """Simulate one replica of ``model`` on ``system`` serving ``workload``.

    ``model``/``system``: catalog names, file paths or loaded specs (as for ``estimate``).
    ``workload``: a :class:`Workload` (arrival process and length distributions, or a trace).
    ``requests``: how many requests to draw (default 1000; a trace's rows by default).
    ``scheduler``: ``"static"``, ``"continuous"`` or ``"chunked"`` (see ``SCHEDULERS``).
    ``chunk``: token budget per iteration of ``chunked`` (tokens). ``max_batch``: most requests
    running at once. ``max_prefill_tokens``: most prompt tokens in one ``continuous`` prefill
    iteration (default max(model context window, 2048) tokens, as vLLM). ``block_size``: KV
    block size (tokens). ``memory_utilization``: fraction of device memory usable for weights,
    workspace and KV cache (0..1]. ``kv_blocks``: override the KV block count (blocks).
    ``precision``/``parallelism``: as for ``estimate`` (KV cache in the precision's KV format).
    ``seed``: seeds the workload's draws. ``slo_ttft_s``/``slo_tpot_s``: goodput SLOs (s).
    ``bucket_width``: relative width of the step-time cache's context buckets (0 = exact).
    ``routing``: MoE expert choice of every iteration (:class:`workloads.batch.Routing`).

    Returns a :class:`ServingResult` (times in s, energy in J, lengths in tokens). Raises
    ArgumentError for an argument out of range, including a KV cache too small for the
    longest request.
    """
    if not isinstance(workload, Workload):
        raise ArgumentError(f"workload: must be a Workload, got {type(workload).__name__}")
    model_cfg = load_model(model)
    system_spec = load_system(system)
    prec = Precision.parse(precision)
    par = parallelism or Parallelism()
    slo_ttft = _positive_float("slo_ttft_s", slo_ttft_s)
    slo_tpot = _positive_float("slo_tpot_s", slo_tpot_s)
    context_window = model_cfg.context_window or MAX_TOKENS
    prefill_cap = max(model_cfg.max_position_embeddings, 2048) if max_prefill_tokens is None else max_prefill_tokens
    sched = get_scheduler(scheduler)(max_batch=max_batch, chunk=chunk, max_prefill_tokens=prefill_cap)
    arrivals = workload.generate(requests, seed, max_total_tokens=context_window)
    capacity = kv_capacity(model_cfg, system_spec, precision=prec, parallelism=par, block_size=block_size,
                           memory_utilization=memory_utilization, workspace_tokens=sched.max_step_tokens,
                           total_blocks=kv_blocks)
    longest = int((arrivals.input_tokens + arrivals.output_tokens - 1).max())
    if -(-longest // capacity.block_size) > capacity.total_blocks:
        what = "kv_blocks" if kv_blocks is not None else "memory_utilization"
        raise ArgumentError(f"{what}: the KV cache holds {capacity.total_tokens} tokens "
                            f"({capacity.total_blocks} blocks of {capacity.block_size}); the longest request needs "
                            f"{longest}; raise {what}")
    step_times = StepTimes(model_cfg, system_spec, precision=prec, parallelism=par, bucket_width=bucket_width,
                           routing=routing)
    blocks = BlockManager(capacity.total_blocks, capacity.block_size, arrivals.arrival_s.size)
    state = ReplicaState(arrivals.input_tokens, arrivals.output_tokens, blocks)
    engine = ServingEngine(arrivals.arrival_s, state, sched, step_times)
    engine.run()
    probe = estimate(model_cfg, system_spec, Batch.decode(1, 1), precision=prec, parallelism=par)
    return ServingResult(
        model=model_cfg.name, system=system_spec.name, scheduler=sched.name, parallelism=par.label,
        precision=prec.name, devices=probe.devices, arrival_s=arrivals.arrival_s,
        scheduled_s=engine.scheduled_s, first_token_s=engine.first_token_s, finish_s=engine.finish_s,
        input_tokens=arrivals.input_tokens,
        output_tokens=arrivals.output_tokens, preemptions_per_request=state.preemptions,
        token_time_s=engine.token_time_s, token_offsets=engine.token_offsets,
        iteration_start_s=np.asarray(engine.it_start), iteration_duration_s=np.asarray(engine.it_duration),
        iteration_decodes=np.asarray(engine.it_decodes, dtype=np.int64),
        iteration_prefills=np.asarray(engine.it_prefills, dtype=np.int64),
        iteration_prefill_tokens=np.asarray(engine.it_prefill_tokens, dtype=np.int64),
        iteration_output_tokens=np.asarray(engine.it_output_tokens, dtype=np.int64),
        iteration_kv_blocks=np.asarray(engine.it_kv_blocks, dtype=np.int64),
        iteration_energy_j=np.asarray(engine.it_energy), kv=capacity,
        idle_power_w=system_spec.primary_device.power.idle_w * probe.devices,
        slo_ttft_s=slo_ttft, slo_tpot_s=slo_tpot, step_cache_hits=step_times.hits,
        step_cache_misses=step_times.misses,
    )
