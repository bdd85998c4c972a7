"""``serve``: simulate one model replica serving a stream of requests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from decodex.core.errors import ArgumentError
from decodex.core.run_limits import LimitError, RunWatch, check_time_limit, memory_limit, si_bytes
from decodex.hw_models.system import SystemSpec, load_system
from decodex.sim.estimate import estimate
from decodex.sim.serving.engine import ServingEngine
from decodex.sim.serving.kv_cache import BlockManager, kv_capacity
from decodex.sim.serving.result import ServingResult
from decodex.sim.serving.schedulers import SCHEDULERS, get_scheduler
from decodex.sim.serving.software import DEFAULT_SOFTWARE, ServingSoftware, load_software
from decodex.sim.serving.speculation import Speculation, SpeculativeStepTimes, share_capacity
from decodex.sim.serving.state import ReplicaState
from decodex.sim.serving.step_times import StepTimes
from decodex.sim.serving.workload import MAX_TOKENS, Workload, check_bool, check_float, check_int
from decodex.workloads.batch import MAX_SEED, Batch, Routing, is_number
from decodex.workloads.catalog import load_model
from decodex.workloads.model_config import ModelConfig
from decodex.workloads.parallelism import Parallelism
from decodex.workloads.precision import Precision

DEFAULT_SLO_TTFT_S = 2.0
DEFAULT_SLO_TPOT_S = 0.1
MAX_REQUESTS = 10**8  # requests one run draws (as Workload.generate)
MAX_BATCH = 1_000_000  # requests running at once (as the schedulers)
MAX_STEP_TOKENS = 10_000_000  # tokens of one chunked iteration (as the schedulers)
MAX_PREFILL_TOKENS = 100_000_000  # prompt tokens of one prefill iteration (as the schedulers)
MAX_BLOCK_SIZE = 65536  # tokens per KV block (as kv_capacity)
MAX_KV_BLOCKS = 2**40  # KV blocks: ~1e12, far beyond any device; keeps blocks x block size within int64

# Memory one run holds (bytes): base + requests x REQUEST_BYTES + output tokens x TOKEN_BYTES +
# iterations x ITERATION_BYTES. Least-squares fit of tracemalloc peaks of 8 runs (llama3-8b on
# h100-sxm, fixed 200-token prompts, 50-400 output tokens, 400-3200 requests, 0.8k-180k
# iterations; CPython 3.11): 193 kB + 312 B/request + 7.9 B/token + 152 B/iteration, within 12 %
# of every run; rounded up by about a quarter (the base also covers the step-time cache). Checked
# on two runs left out of the fit: 3000 sharegpt requests (llama3-8b, 20/s) peak 12.8 MB,
# predicted 15.2 MB; 2000 alpaca requests (llama2-7b, 5/s) peak 10.6 MB, predicted 14.0 MB.
RUN_BASE_BYTES = 1_000_000
REQUEST_BYTES = 400
TOKEN_BYTES = 10
ITERATION_BYTES = 200
DEFAULT_REQUESTS = 1000  # requests drawn when neither ``requests`` nor a trace says
LOOPS = ("compiled", "stretch", "step")  # serve(loop=...): the same record, fastest first


def _positive_float(name: str, value: object) -> float:
    """``value`` as a float when it is a finite number > 0 (not a bool); ArgumentError otherwise."""
    if not is_number(value) or not value > 0:  # type: ignore[operator]
        raise ArgumentError(f"{name}: {value!r:.80} must be a number in (0, inf)")
    return float(value)  # type: ignore[arg-type]


def _check_arguments(workload: object, requests: object, scheduler: object, chunk: object, max_batch: object,
                     max_prefill_tokens: object, block_size: object, memory_utilization: object,
                     kv_blocks: object, parallelism: object, seed: object, bucket_width: object,
                     routing: object) -> None:
    """Check every argument of :func:`serve` that needs no model or system, before any work:
    ArgumentError naming the first bad one and its range."""
    if not isinstance(workload, Workload):
        raise ArgumentError(f"workload: must be a Workload, got {type(workload).__name__}")
    if requests is not None:
        check_int("requests", requests, 1, MAX_REQUESTS)
    if not isinstance(scheduler, str) or scheduler not in SCHEDULERS:
        raise ArgumentError(f"scheduler: {scheduler!r:.80} not one of {', '.join(sorted(SCHEDULERS))}")
    check_int("chunk", chunk, 1, MAX_STEP_TOKENS)
    check_int("max_batch", max_batch, 1, MAX_BATCH)
    if max_prefill_tokens is not None:
        check_int("max_prefill_tokens", max_prefill_tokens, 1, MAX_PREFILL_TOKENS)
    check_int("block_size", block_size, 1, MAX_BLOCK_SIZE)
    check_float("memory_utilization", memory_utilization, 0.0, 1.0, lo_open=True)
    if kv_blocks is not None:
        check_int("kv_blocks", kv_blocks, 1, MAX_KV_BLOCKS)
    if parallelism is not None and not isinstance(parallelism, Parallelism):
        raise ArgumentError(f"parallelism: must be a Parallelism or None, got {type(parallelism).__name__}")
    check_int("seed", seed, 0, MAX_SEED)
    check_float("bucket_width", bucket_width, 0.0, 1.0)
    if routing is not None and not isinstance(routing, Routing):
        raise ArgumentError(f"routing: must be a Routing or None, got {type(routing).__name__} {routing!r:.80}")


def serve(model: str | Path | ModelConfig, system: str | Path | SystemSpec, workload: Workload, *,
          requests: int | None = None, scheduler: str | None = None, chunk: int | None = None,
          max_batch: int | None = None, max_prefill_tokens: int | None = None, block_size: int | None = None,
          memory_utilization: float | None = None, kv_blocks: int | None = None,
          software: str | Path | ServingSoftware = DEFAULT_SOFTWARE, precision: str | Precision = "bf16",
          parallelism: Parallelism | None = None,
          seed: int = 0, slo_ttft_s: float = DEFAULT_SLO_TTFT_S, slo_tpot_s: float = DEFAULT_SLO_TPOT_S,
          bucket_width: float = 0.01, routing: Routing | None = None, time_limit_s: float | None = None,
          max_memory_bytes: float | str | None = None, progress: bool = False,
          loop: str = "compiled", step_cache: StepTimes | None = None,
          speculation: Speculation | None = None) -> ServingResult:
    """Simulate one replica of ``model`` on ``system`` serving ``workload``.

    ``model``/``system``: catalog names, file paths or loaded specs (as for ``estimate``).
    ``workload``: a :class:`Workload` (arrival process and length distributions, or a trace).
    ``requests``: how many requests to draw (default 1000; a trace's rows by default).
    ``software``: the serving engine (a catalog name such as ``"vllm"`` or ``"trtllm"``, a TOML
    path or a :class:`ServingSoftware`): its host time per iteration is added to every
    iteration, its admission policy (``preempt`` or ``reserve``) and KV memory basis apply, and
    it gives the defaults of the five arguments that follow (None = the software's).
    ``scheduler``: ``"static"``, ``"continuous"``, ``"inflight"`` or ``"chunked"`` (see
    ``SCHEDULERS``). ``chunk``: token budget per iteration of ``chunked`` and ``inflight``
    (tokens; the software's ``max_num_tokens``). ``max_batch``: most requests running at once.
    ``block_size``: KV block size (tokens). ``memory_utilization``: the fraction (0..1] of the
    device memory available to the model that weights, workspace and KV cache use (software
    basis ``total``), or of what weights and workspace leave that the KV cache takes (``free``).
    ``max_prefill_tokens``: most prompt tokens in one ``continuous`` prefill iteration (default
    max(model context window, 2048) tokens, as vLLM). ``kv_blocks``: override the KV block
    count (blocks).
    ``precision``/``parallelism``: as for ``estimate`` (KV cache in the precision's KV format).
    ``seed``: seeds the workload's draws. ``slo_ttft_s``/``slo_tpot_s``: goodput SLOs (s).
    ``bucket_width``: relative width of the step-time cache's context buckets (0 = exact).
    ``routing``: MoE expert choice of every iteration (:class:`workloads.batch.Routing`).
    ``time_limit_s``: stop (LimitError) once the run has taken that many seconds of wall time.
    ``max_memory_bytes``: bytes, or text such as ``"8G"`` (default: half the physical memory): a
    run whose memory (module constants: per request, output token and iteration) is above it is
    refused before it starts, or stopped (LimitError) when its iterations grow past it.
    ``progress``: a line on stderr with the requests finished. ``loop``: how the serving loop
    runs, each giving the same record bit for bit: ``"compiled"`` (the Numba loop of
    :mod:`sim.serving.compiled_loop`; a scheduler that is not built in runs as ``"stretch"``),
    ``"stretch"`` (Python, repeated decode-only iterations planned at once,
    :mod:`sim.serving.stretch`) or ``"step"`` (Python, iteration by iteration: the reference).
    ``step_cache``: a :class:`StepTimes` to reuse across runs (a capacity search, a sweep over
    rates) so that no batch is priced twice; it must price this model on this system with this
    precision, parallelism, bucket width, routing and speculation (checked).
    ``speculation``: speculative decoding (:class:`sim.serving.speculation.Speculation`: a draft,
    its length and an acceptance model): every decode drafts and verifies, emitting ``1 +
    accepted`` tokens drawn from ``seed``; the run goes iteration by iteration (``loop`` is
    ignored), and TPOT is per emitted token.

    Ranges: ``requests`` [1, MAX_REQUESTS]; ``chunk`` [1, MAX_STEP_TOKENS] and
    ``max_prefill_tokens`` [1, MAX_PREFILL_TOKENS] tokens; ``max_batch`` [1, MAX_BATCH];
    ``block_size`` [1, MAX_BLOCK_SIZE] tokens; ``memory_utilization`` (0, 1]; ``kv_blocks``
    [1, MAX_KV_BLOCKS]; ``seed`` [0, 2**63 - 1]; ``bucket_width`` [0, 1]; SLOs finite and > 0 s.

    Returns a :class:`ServingResult` (times in s, energy in J, lengths in tokens). Raises
    ArgumentError for an argument out of range (checked before any work), including a KV cache
    too small for the longest request; :class:`core.run_limits.LimitError` for a run refused or
    stopped by ``max_memory_bytes`` or ``time_limit_s``.
    """
    engine_sw = load_software(software)
    scheduler, chunk, max_batch, block_size, memory_utilization = engine_sw.settings(
        scheduler, chunk, max_batch, block_size, memory_utilization)
    _check_arguments(workload, requests, scheduler, chunk, max_batch, max_prefill_tokens, block_size,
                     memory_utilization, kv_blocks, parallelism, seed, bucket_width, routing)
    time_limit = check_time_limit(time_limit_s)
    limit = memory_limit(max_memory_bytes)
    check_bool("progress", progress)
    if loop not in LOOPS:
        raise ArgumentError(f"loop: {loop!r:.40} not one of {', '.join(LOOPS)}")
    lookahead = speculation_lookahead(speculation)
    _check_memory(RUN_BASE_BYTES + (requests or DEFAULT_REQUESTS) * REQUEST_BYTES, limit, requests or DEFAULT_REQUESTS)
    model_cfg = load_model(model)
    system_spec = load_system(system)
    prec = Precision.parse(precision)
    par = parallelism or Parallelism()
    slo_ttft = _positive_float("slo_ttft_s", slo_ttft_s)
    slo_tpot = _positive_float("slo_tpot_s", slo_tpot_s)
    context_window = model_cfg.context_window or MAX_TOKENS
    prefill_cap = max(model_cfg.max_position_embeddings, 2048) if max_prefill_tokens is None else max_prefill_tokens
    sched = get_scheduler(scheduler)(max_batch=max_batch, chunk=chunk, max_prefill_tokens=prefill_cap)
    arrivals = workload.generate(requests, seed, max_total_tokens=context_window - lookahead)
    count = int(arrivals.arrival_s.size)
    held = RUN_BASE_BYTES + count * REQUEST_BYTES + float(arrivals.output_tokens.sum()) * TOKEN_BYTES
    _check_memory(held, limit, count)
    capacity = kv_capacity(model_cfg, system_spec, precision=prec, parallelism=par, block_size=block_size,
                           memory_utilization=memory_utilization,
                           workspace_tokens=sched.max_step_tokens_ahead(lookahead),
                           total_blocks=kv_blocks, memory_basis=engine_sw.kv_memory_basis)
    capacity = share_capacity(capacity, speculation, system_spec, model_cfg, prec, par, kv_blocks)
    longest = int((arrivals.input_tokens + arrivals.output_tokens - (0 if engine_sw.reserves_output else 1)).max())
    longest += lookahead
    if -(-longest // capacity.block_size) > capacity.total_blocks:
        what = "kv_blocks" if kv_blocks is not None else "memory_utilization"
        raise ArgumentError(f"{what}: the KV cache holds {capacity.total_tokens} tokens "
                            f"({capacity.total_blocks} blocks of {capacity.block_size}); the longest request needs "
                            f"{longest}; raise {what}")
    step_times = _step_times(step_cache, model_cfg, system_spec, prec, par, bucket_width, routing, speculation)
    hits_before, misses_before = step_times.hits, step_times.misses
    blocks = BlockManager(capacity.total_blocks, capacity.block_size, arrivals.arrival_s.size)
    state = ReplicaState(arrivals.input_tokens, arrivals.output_tokens, blocks,
                         reserve_output=engine_sw.reserves_output, lookahead=lookahead)
    draws = speculation.draws(seed) if speculation is not None else None
    probe = estimate(model_cfg, system_spec, Batch.decode(1, 1), precision=prec, parallelism=par)
    idle_power = system_spec.primary_device.power.idle_w * probe.devices
    engine = ServingEngine(arrivals.arrival_s, state, sched, step_times,
                           host_overhead_s=engine_sw.iteration_host_overhead_s,
                           request_overhead_s=engine_sw.request_host_overhead_s, host_power_w=idle_power,
                           fast_forward=loop != "step", compiled=loop == "compiled", speculation=draws)
    watch = RunWatch("serving run", "requests", count, time_limit_s=time_limit, memory_limit_bytes=limit,
                     progress=progress, advice="; lower --requests or raise the limit")
    try:
        engine.run(lambda e: watch.tick(e.finished, held + e.iterations_done * ITERATION_BYTES))
    finally:
        watch.close()
    return ServingResult(
        model=model_cfg.name, system=system_spec.name, scheduler=sched.name, software=engine_sw.name,
        parallelism=par.label,
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
        idle_power_w=idle_power,
        slo_ttft_s=slo_ttft, slo_tpot_s=slo_tpot, step_cache_hits=step_times.hits - hits_before,
        step_cache_misses=step_times.misses - misses_before,
        speculation="" if speculation is None else speculation.label,
        drafted_tokens=0 if draws is None else draws.drafted, accepted_tokens=0 if draws is None else draws.accepted,
        speculative_steps=0 if draws is None else draws.steps,
    )


def _step_times(cache: StepTimes | None, model: ModelConfig, system: SystemSpec, precision: Precision,
                parallelism: Parallelism, bucket_width: float, routing: Routing | None,
                speculation: Speculation | None) -> StepTimes:
    """``cache`` when it prices exactly this run's steps, a new StepTimes when None; ArgumentError
    naming what differs otherwise."""
    if cache is None and speculation is not None:
        return SpeculativeStepTimes(model, system, speculation=speculation, precision=precision,
                                    parallelism=parallelism, bucket_width=bucket_width, routing=routing)
    if cache is None:
        return StepTimes(model, system, precision=precision, parallelism=parallelism, bucket_width=bucket_width,
                         routing=routing)
    if not isinstance(cache, StepTimes):
        raise ArgumentError(f"step_cache: must be a StepTimes or None, got {type(cache).__name__}")
    wanted = {"model": model, "system": system, "precision": precision, "parallelism": parallelism,
              "bucket_width": float(bucket_width), "routing": routing or Routing(), "speculation": speculation}
    for name, value in wanted.items():
        if getattr(cache, name, None) != value:
            raise ArgumentError(f"step_cache: it prices {name} {getattr(cache, name, None)!r:.60}, this run "
                                f"{value!r:.60}; use one cache per model, system and settings")
    return cache


def speculation_lookahead(speculation: object) -> int:
    """Tokens a decode drafts beyond its next one under ``speculation`` (0 for None);
    ArgumentError for anything but a :class:`Speculation` or None."""
    if speculation is None:
        return 0
    if not isinstance(speculation, Speculation):
        raise ArgumentError(f"speculation: must be a Speculation or None, got {type(speculation).__name__}")
    return speculation.lookahead


def _check_memory(need: float, limit: float, requests: int) -> None:
    """LimitError when a run of ``requests`` needing ``need`` bytes is above ``limit`` bytes."""
    if need > limit:
        raise LimitError(f"max_memory_bytes: a serving run of {requests:,} requests needs about {si_bytes(need)} "
                         f"before its iterations, above the limit of {si_bytes(limit)} (--max-memory); lower "
                         "--requests or raise the limit")
