"""``serve_cluster``: N replicas of one model (same or different systems) behind a global router,
on one simulation clock.

Every replica is a :class:`ServingEngine` with its own scheduler, KV block manager and step-time
cache; all of them push their events into one heap with one sequence counter, so events of all
replicas run in time order (ties in creation order). A request's arrival event asks the router
for a replica, using every replica's state at that instant (requests routed there and not
finished, KV blocks in use), and puts the request in that replica's waiting queue; once the
last request of an instant has been routed, each idle replica that received one plans its next
iteration. With one replica this is exactly :func:`serve`'s loop.

Not modelled: network or router delay (a request reaches its replica at its arrival time),
migration or re-routing of a request after it is routed, prefix-cache affinity.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from decodex.core.errors import ArgumentError
from decodex.core.run_limits import RunWatch, check_time_limit, memory_limit
from decodex.hw_models.system import SystemSpec, load_system
from decodex.sim.estimate import estimate
from decodex.sim.serving.api import (
    DEFAULT_SLO_TPOT_S,
    DEFAULT_SLO_TTFT_S,
    ITERATION_BYTES,
    REQUEST_BYTES,
    RUN_BASE_BYTES,
    TOKEN_BYTES,
    _check_arguments,
    _check_memory,
    _positive_float,
    _step_times,
    speculation_lookahead,
)
from decodex.sim.serving.cluster_result import ClusterResult
from decodex.sim.serving.engine import ARRIVAL, WATCH_EVENTS, ServingEngine
from decodex.sim.serving.kv_cache import BlockManager, KVCapacity, kv_capacity
from decodex.sim.serving.result import ServingResult
from decodex.sim.serving.schedulers import get_scheduler
from decodex.sim.serving.software import DEFAULT_SOFTWARE, ServingSoftware, load_software
from decodex.sim.serving.speculation import Speculation, share_capacity
from decodex.sim.serving.state import ReplicaState
from decodex.sim.serving.workload import MAX_TOKENS, RequestArrays, Workload, check_bool, check_int
from decodex.workloads.batch import Batch, Routing
from decodex.workloads.catalog import load_model
from decodex.workloads.model_config import ModelConfig
from decodex.workloads.parallelism import Parallelism
from decodex.workloads.precision import Precision

MAX_REPLICAS = 4096  # replicas of one cluster run (each holds per-request arrays; bounds a typo)
REPLICA_REQUEST_BYTES = 64  # per request per extra replica: ReplicaState's 5 arrays + block table (49 B), rounded up
SystemArg = str | Path | SystemSpec

# Routers: (outstanding requests per replica, KV fraction in use per replica, request index)
# -> replica index. Outstanding = routed there and not finished (waiting, preempted or running).
Router = Callable[[list[int], list[float], int], int]


def _round_robin(outstanding: list[int], kv_used: list[float], request: int) -> int:
    """Request ``i`` to replica ``i mod N``."""
    return request % len(outstanding)


def _least_outstanding(outstanding: list[int], kv_used: list[float], request: int) -> int:
    """The replica with the fewest outstanding requests; ties to the lowest index."""
    return min(range(len(outstanding)), key=outstanding.__getitem__)


def _least_kv(outstanding: list[int], kv_used: list[float], request: int) -> int:
    """The replica with the lowest fraction of KV blocks in use; ties (e.g. several with an empty
    cache but queued requests) to the fewest outstanding requests, then the lowest index."""
    return min(range(len(outstanding)), key=lambda r: (kv_used[r], outstanding[r]))


ROUTERS: dict[str, Router] = {"round-robin": _round_robin, "least-outstanding": _least_outstanding,
                              "least-kv": _least_kv}


def _system_list(systems: object, replicas: object) -> list[SystemArg]:
    """The system of every replica from ``systems`` (one system, a sequence of them, or a
    ``(system, n)`` pair) and ``replicas``; ArgumentError naming the bad argument."""
    if (isinstance(systems, tuple) and len(systems) == 2 and isinstance(systems[0], SystemArg)
            and not isinstance(systems[1], SystemArg)):
        if replicas is not None:
            raise ArgumentError("replicas: give the count once, in systems=(system, n) or replicas=n")
        systems, replicas = systems
    if isinstance(systems, SystemArg):
        count = 1 if replicas is None else check_int("replicas", replicas, 1, MAX_REPLICAS)
        return [systems] * count
    if not isinstance(systems, Sequence) or not all(isinstance(s, SystemArg) for s in systems):
        raise ArgumentError(f"systems: must be a system (name, path or SystemSpec), a sequence of them or "
                            f"(system, n); got {systems!r:.80}")
    check_int("replicas", len(systems), 1, MAX_REPLICAS)  # an empty list is zero replicas
    if replicas is not None and replicas != len(systems):
        raise ArgumentError(f"replicas: {replicas!r:.40} differs from the {len(systems)} systems given")
    return list(systems)


def serve_cluster(model: str | Path | ModelConfig, systems: SystemArg | Sequence[SystemArg] | tuple[SystemArg, int],
                  workload: Workload, *, replicas: int | None = None, router: str = "round-robin",
                  requests: int | None = None, scheduler: str | None = None, chunk: int | None = None,
                  max_batch: int | None = None, max_prefill_tokens: int | None = None, block_size: int | None = None,
                  memory_utilization: float | None = None, kv_blocks: int | None = None,
                  software: str | Path | ServingSoftware = DEFAULT_SOFTWARE, precision: str | Precision = "bf16",
                  parallelism: Parallelism | None = None, seed: int = 0, slo_ttft_s: float = DEFAULT_SLO_TTFT_S,
                  slo_tpot_s: float = DEFAULT_SLO_TPOT_S, bucket_width: float = 0.01, routing: Routing | None = None,
                  time_limit_s: float | None = None, max_memory_bytes: float | str | None = None,
                  progress: bool = False, speculation: Speculation | None = None) -> ClusterResult:
    """Simulate replicas of ``model`` behind a global ``router`` serving ``workload``, on one clock.

    ``systems``: the system of every replica: one system (a catalog name, file path or
    :class:`SystemSpec`; ``replicas`` copies, default 1), a sequence of them (one replica each,
    e.g. ``["h100-sxm", "h100-sxm", "h200"]``) or a pair ``(system, n)``. Each replica has its own
    KV cache (sized for its system), scheduler and step-time cache.
    ``router``: ``"round-robin"`` (request i to replica i mod N), ``"least-outstanding"``
    (fewest requests routed and not finished; ties to the lowest index) or ``"least-kv"`` (lowest
    fraction of KV blocks in use; ties to fewest outstanding, then lowest index); see ``ROUTERS``.
    Every other argument is as for :func:`serve` and applies to every replica (``kv_blocks``:
    per replica; ``speculation``: each replica draws its accepted tokens from its own stream).
    Ranges: ``replicas`` [1, MAX_REPLICAS]; the rest as :func:`serve`.

    Returns a :class:`ClusterResult` (times in s, energy in J, lengths in tokens). Raises
    ArgumentError for an argument out of range (checked before any work), including a KV cache
    of some replica too small for the longest request; :class:`core.run_limits.LimitError` for a
    run refused or stopped by ``max_memory_bytes`` or ``time_limit_s``.
    """
    engine_sw = load_software(software)
    scheduler, chunk, max_batch, block_size, memory_utilization = engine_sw.settings(
        scheduler, chunk, max_batch, block_size, memory_utilization)
    system_args = _system_list(systems, replicas)
    if not isinstance(router, str) or router not in ROUTERS:
        raise ArgumentError(f"router: {router!r:.80} not one of {', '.join(ROUTERS)}")
    _check_arguments(workload, requests, scheduler, chunk, max_batch, max_prefill_tokens, block_size,
                     memory_utilization, kv_blocks, parallelism, seed, bucket_width, routing)
    time_limit = check_time_limit(time_limit_s)
    limit = memory_limit(max_memory_bytes)
    check_bool("progress", progress)
    lookahead = speculation_lookahead(speculation)
    n_rep = len(system_args)
    per_request = REQUEST_BYTES + (n_rep - 1) * REPLICA_REQUEST_BYTES
    count_guess = requests or 1000
    _check_memory(n_rep * RUN_BASE_BYTES + count_guess * per_request, limit, count_guess)
    model_cfg = load_model(model)
    loaded: dict[object, SystemSpec] = {}  # one spec per distinct system: its replicas share its KV sizing
    for arg in system_args:
        key = arg if isinstance(arg, str | Path) else id(arg)
        if key not in loaded:
            loaded[key] = load_system(arg)
    specs = [loaded[arg if isinstance(arg, str | Path) else id(arg)] for arg in system_args]
    prec = Precision.parse(precision)
    par = parallelism or Parallelism()
    slo_ttft = _positive_float("slo_ttft_s", slo_ttft_s)
    slo_tpot = _positive_float("slo_tpot_s", slo_tpot_s)
    context_window = model_cfg.context_window or MAX_TOKENS
    prefill_cap = max(model_cfg.max_position_embeddings, 2048) if max_prefill_tokens is None else max_prefill_tokens
    make_scheduler = get_scheduler(scheduler)
    arrivals = workload.generate(requests, seed, max_total_tokens=context_window - lookahead)
    count = int(arrivals.arrival_s.size)
    held = n_rep * RUN_BASE_BYTES + count * per_request + float(arrivals.output_tokens.sum()) * TOKEN_BYTES
    _check_memory(held, limit, count)
    longest = int((arrivals.input_tokens + arrivals.output_tokens - (0 if engine_sw.reserves_output else 1)).max())
    longest += lookahead
    per_system: dict[int, tuple[KVCapacity, float, int]] = {}  # id(spec) -> capacity, idle power (W), devices
    sequence = itertools.count(1)
    engines: list[ServingEngine] = []
    for spec in specs:
        sched = make_scheduler(max_batch=max_batch, chunk=chunk, max_prefill_tokens=prefill_cap)
        if id(spec) not in per_system:
            capacity = kv_capacity(model_cfg, spec, precision=prec, parallelism=par, block_size=block_size,
                                   memory_utilization=memory_utilization,
                                   workspace_tokens=sched.max_step_tokens_ahead(lookahead),
                                   total_blocks=kv_blocks, memory_basis=engine_sw.kv_memory_basis)
            capacity = share_capacity(capacity, speculation, spec, model_cfg, prec, par, kv_blocks)
            if -(-longest // capacity.block_size) > capacity.total_blocks:
                what = "kv_blocks" if kv_blocks is not None else "memory_utilization"
                raise ArgumentError(f"{what}: the KV cache of a {spec.name} replica holds {capacity.total_tokens} "
                                    f"tokens ({capacity.total_blocks} blocks of {capacity.block_size}); the longest "
                                    f"request needs {longest}; raise {what}")
            probe = estimate(model_cfg, spec, Batch.decode(1, 1), precision=prec, parallelism=par)
            per_system[id(spec)] = (capacity, spec.primary_device.power.idle_w * probe.devices, probe.devices)
        capacity, idle_power, _ = per_system[id(spec)]
        step_times = _step_times(None, model_cfg, spec, prec, par, bucket_width, routing, speculation)
        state = ReplicaState(arrivals.input_tokens, arrivals.output_tokens,
                             BlockManager(capacity.total_blocks, capacity.block_size, count),
                             reserve_output=engine_sw.reserves_output, lookahead=lookahead)
        engine = ServingEngine(arrivals.arrival_s, state, sched, step_times,
                               host_overhead_s=engine_sw.iteration_host_overhead_s,
                               request_overhead_s=engine_sw.request_host_overhead_s, host_power_w=idle_power,
                               sequence=sequence,
                               speculation=None if speculation is None else speculation.draws(seed, len(engines)))
        if engines:  # one request runs on one replica: all write their records into the same arrays
            first = engines[0]
            engine.scheduled_s, engine.first_token_s, engine.finish_s = (first.scheduled_s, first.first_token_s,
                                                                         first.finish_s)
            engine.token_time_s = first.token_time_s
        engines.append(engine)
    watch = RunWatch("serving run", "requests", count, time_limit_s=time_limit, memory_limit_bytes=limit,
                     progress=progress, advice="; lower --requests or raise the limit")
    try:
        assigned = _run(engines, arrivals.arrival_s, ROUTERS[router], sequence,
                        lambda done, its: watch.tick(done, held + its * ITERATION_BYTES))
    finally:
        watch.close()
    results = tuple(_replica_result(engine, arrivals, assigned == index, model_cfg.name, spec.name, prec.name,
                                    par.label, engine_sw.name, *per_system[id(spec)], slo_ttft, slo_tpot)
                    for index, (engine, spec) in enumerate(zip(engines, specs, strict=True)))
    first = engines[0]
    return ClusterResult(
        model=model_cfg.name, router=router, systems=tuple(spec.name for spec in specs), replica=assigned,
        arrival_s=arrivals.arrival_s, scheduled_s=first.scheduled_s, first_token_s=first.first_token_s,
        finish_s=first.finish_s, input_tokens=arrivals.input_tokens, output_tokens=arrivals.output_tokens,
        preemptions_per_request=np.sum([e.state.preemptions for e in engines], axis=0),
        token_time_s=first.token_time_s, token_offsets=first.token_offsets, replica_results=results,
        slo_ttft_s=slo_ttft, slo_tpot_s=slo_tpot)


def _run(engines: list[ServingEngine], arrival_s: np.ndarray, route: Router, sequence: itertools.count[int],
         watch: Callable[[int, int], None]) -> np.ndarray:
    """The cluster's event loop: arrivals (routed when they happen) and every replica's iteration
    completions on one heap. Returns the replica index of every request; ``watch(finished,
    iterations)`` is called every WATCH_EVENTS events."""
    n = arrival_s.size
    assigned = np.full(n, -1, dtype=np.int64)
    routed = [0] * len(engines)
    heap: list[tuple[float, int, int, int, object]] = [(float(arrival_s[0]), next(sequence), ARRIVAL, -1, 0)] if n \
        else []
    touched: list[int] = []  # replicas that received a request at the current instant
    pop, push = heapq.heappop, heapq.heappush
    events = 0
    while heap:
        time, _, kind, replica, payload = pop(heap)
        if kind == ARRIVAL:
            request = int(payload)  # type: ignore[call-overload]
            outstanding = [routed[r] - e.finished for r, e in enumerate(engines)]
            kv_used = [e.state.kv.used_blocks / e.state.kv.total_blocks for e in engines]
            replica = route(outstanding, kv_used, request)
            assigned[request] = replica
            routed[replica] += 1
            engines[replica].enqueue(request)
            if replica not in touched:
                touched.append(replica)
            simultaneous = False
            if request + 1 < n:
                following = float(arrival_s[request + 1])
                simultaneous = following <= time  # each scheduler sees every request of one instant
                push(heap, (following, next(sequence), ARRIVAL, -1, request + 1))
            if not simultaneous:
                for r in sorted(touched):
                    for at, seq, what, it in engines[r].start(time):
                        push(heap, (at, seq, what, r, it))
                touched.clear()
        else:
            for at, seq, what, it in engines[replica].end_iteration(time, payload):  # type: ignore[arg-type]
                push(heap, (at, seq, what, replica, it))
        events += 1
        if events % WATCH_EVENTS == 0:
            watch(sum(e.finished for e in engines), sum(len(e.it_start) for e in engines))
    finished = sum(e.finished for e in engines)
    if finished != n:
        raise RuntimeError(f"serving loop stalled: {finished} of {n} requests finished")
    return assigned


def _replica_result(engine: ServingEngine, arrivals: RequestArrays, mine: np.ndarray, model: str, system: str,
                    precision: str, parallelism: str, software: str, capacity: KVCapacity, idle_power_w: float,
                    devices: int, slo_ttft_s: float, slo_tpot_s: float) -> ServingResult:
    """The :class:`ServingResult` of one replica over the requests it served (``mine``: a mask
    over all requests), renumbered in arrival order, with its own iterations."""
    ids = np.flatnonzero(mine)
    outputs = arrivals.output_tokens[ids]
    offsets = np.zeros(ids.size + 1, dtype=np.int64)
    np.cumsum(outputs, out=offsets[1:])
    starts = engine.token_offsets[ids]
    tokens = np.repeat(starts - offsets[:-1], outputs) + np.arange(int(offsets[-1]))
    return ServingResult(
        model=model, system=system, scheduler=engine.scheduler.name, software=software, parallelism=parallelism,
        precision=precision, devices=devices, arrival_s=arrivals.arrival_s[ids],
        scheduled_s=engine.scheduled_s[ids], first_token_s=engine.first_token_s[ids],
        finish_s=engine.finish_s[ids], input_tokens=arrivals.input_tokens[ids], output_tokens=outputs,
        preemptions_per_request=engine.state.preemptions[ids], token_time_s=engine.token_time_s[tokens],
        token_offsets=offsets, iteration_start_s=np.asarray(engine.it_start),
        iteration_duration_s=np.asarray(engine.it_duration),
        iteration_decodes=np.asarray(engine.it_decodes, dtype=np.int64),
        iteration_prefills=np.asarray(engine.it_prefills, dtype=np.int64),
        iteration_prefill_tokens=np.asarray(engine.it_prefill_tokens, dtype=np.int64),
        iteration_output_tokens=np.asarray(engine.it_output_tokens, dtype=np.int64),
        iteration_kv_blocks=np.asarray(engine.it_kv_blocks, dtype=np.int64),
        iteration_energy_j=np.asarray(engine.it_energy), kv=capacity, idle_power_w=idle_power_w,
        slo_ttft_s=slo_ttft_s, slo_tpot_s=slo_tpot_s, step_cache_hits=engine.step_times.hits,
        step_cache_misses=engine.step_times.misses, **speculation_record(engine))


def speculation_record(engine: ServingEngine) -> dict[str, Any]:
    """The speculative-decoding fields of a :class:`ServingResult` for ``engine``'s run (none
    without speculation)."""
    draws = engine.speculation
    if draws is None:
        return {}
    return {"speculation": draws.speculation.label, "drafted_tokens": draws.drafted,
            "accepted_tokens": draws.accepted, "speculative_steps": draws.steps}
