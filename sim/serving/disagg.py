"""``serve_disaggregated``: prefill-decode disaggregation -- a pool of prefill instances and a pool
of decode instances (each a system, possibly of different hardware), the KV cache of every
request sent from its prefill instance to its decode instance over a link, on one clock.

The module is longer than 400 lines because it does one job: the argument checks, the decode
instances' scheduler, the link and the event loop of one disaggregated run belong together.

Mechanism (per request):

1. On arrival the prefill pool's router picks a prefill instance; the request queues there and
   is prefilled by that instance's scheduler like any prompt (a prefill-only engine: the
   request's output is one token, produced at the end of its prefill, as in Splitwise and
   DistServe). The prefill instance frees its KV blocks at that instant (the copy being sent is
   not held against its cache: not modelled).
2. At the end of the prefill the decode pool's router picks a decode instance and the KV cache
   of the prompt (``input_tokens`` x the model's KV bytes per token, all layers, in the
   precision's KV format, unsharded) is sent over the prefill instance's link. Each prefill
   instance has one outgoing link, a FIFO server: its transfers run one after another in the
   order their prefills finished. A transfer of ``B`` bytes takes ``latency_s + B / bw`` with
   ``bw`` = the link's ``bandwidth_bytes_per_s`` x ``efficiency`` x lanes (lanes: the smaller
   device count of the two instances; each device sends its shard over its own link).
   ``layerwise_overlap``: layer ``l``'s KV is sent while layer ``l + 1`` is prefilled (Splitwise,
   Patel et al., ISCA 2024: per-layer KV transfer overlapped with the prompt phase); the
   transfer then ends at ``max(prefill end + latency + B / (layers x bw),
   max(link free, start of the prefill iteration) + latency + B / bw)``: only the last layer's
   share is exposed when the link keeps up, the link's own time when it does not. Without the
   overlap it starts at ``max(prefill end, link free)``.
3. At the end of the transfer the first token is delivered (TTFT includes the transfer: the
   user's stream comes from the decode instance) and the request joins the decode instance's
   waiting queue. It is admitted (FCFS, within ``max_batch``) only when that instance's block
   manager has the blocks for its context (prompt + first token; the whole sequence with a
   ``reserve`` software), then decodes
   its remaining ``output - 1`` tokens there, batched with the other decodes. A request the
   decode instance preempts recomputes its context there (vLLM recompute) before decoding on.
   A one-token request finishes at its prefill: nothing is sent.

All engines push their events into one heap with one sequence counter (as
:func:`serve_cluster`); events of one instant run in creation order, and engines that received
requests at an instant plan their next iteration once the instant's events are done.

Not modelled: link contention at the receiver or in the network (only the sender's link is a
FIFO server), the prefill instance's memory holding the KV until it is sent, KV layout
conversion between unlike instances (different tensor parallelism), router delay, prefix
caching, and the decode instance prefilling anything but a preempted request's recompute.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from decodex.core.errors import ArgumentError
from decodex.core.run_limits import RunWatch, check_time_limit, memory_limit
from decodex.hw_models.memory import LinkSpec
from decodex.hw_models.system import SystemSpec, load_system
from decodex.sim.estimate import estimate
from decodex.sim.serving.api import (
    DEFAULT_SLO_TPOT_S,
    DEFAULT_SLO_TTFT_S,
    ITERATION_BYTES,
    MAX_KV_BLOCKS,
    REQUEST_BYTES,
    RUN_BASE_BYTES,
    TOKEN_BYTES,
    _check_arguments,
    _check_memory,
    _positive_float,
    _step_times,
    speculation_lookahead,
)
from decodex.sim.serving.cluster import MAX_REPLICAS, REPLICA_REQUEST_BYTES, ROUTERS, Router, SystemArg, _replica_result
from decodex.sim.serving.disagg_result import DisaggResult
from decodex.sim.serving.engine import ARRIVAL, ITERATION_END, WATCH_EVENTS, ServingEngine
from decodex.sim.serving.kv_cache import BlockManager, KVCapacity, kv_capacity
from decodex.sim.serving.schedulers import Scheduler, get_scheduler
from decodex.sim.serving.software import DEFAULT_SOFTWARE, ServingSoftware, load_software
from decodex.sim.serving.speculation import Speculation, share_capacity
from decodex.sim.serving.state import Iteration, ReplicaState
from decodex.sim.serving.workload import MAX_TOKENS, RequestArrays, Workload, check_bool, check_int
from decodex.workloads.batch import Batch, Routing, is_number
from decodex.workloads.catalog import load_model
from decodex.workloads.model_config import ModelConfig
from decodex.workloads.parallelism import Parallelism
from decodex.workloads.precision import Precision

TRANSFER_END = 2  # event kind: a request's KV cache has reached its decode instance
# Memory of a run beyond two pools' records (the serve() model for each pool, REPLICA_REQUEST_BYTES per request for
# every further instance). Per request: the loop's four arrays (instances, transfer start and end, 32 B), the KV
# bytes sent (8 B), the merged result arrays (24 B); and 8 B per decode instance (its admission times). Per output
# token: the merged token times and the decode pool's copy. DISAGG_TOKEN_BYTES was set from tracemalloc peaks of two
# runs (llama3-8b, azure-conv-2023: 2000 requests on 1 H100 + 1 H100, 3000 on 2 H100 + 3 H20; 13.3 and 8.5 B per
# token above the serve() terms) and rounded up; checked on three runs left out (4000 requests 1+1, 6000 at 2x rate
# 2+3, 1500 on 4+4): peaks 43.7 / 72.0 / 34.4 MB, predicted 46.6 / 84.5 / 42.1 MB.
DISAGG_REQUEST_BYTES = 64
DISAGG_TOKEN_BYTES = 16
LinkArg = str | LinkSpec | float | int | None


class DecodeScheduler(Scheduler):
    """The scheduler of a decode instance: every running decode (blocks reserved first, preempting
    the most recently admitted when short), then waiting requests admitted FCFS while
    ``max_batch`` and the free KV blocks allow. A request that arrives with its KV cache (never
    preempted here) joins this iteration's decodes; one preempted here recomputes its context as
    a whole-prompt prefill (at most ``max_prefill_tokens`` recomputed tokens per iteration).
    ``admitted_s``: the time each request was first admitted here (s; NaN until then)."""

    name = "decode"

    def __init__(self, *, max_batch: int = 256, chunk: int = 512, max_prefill_tokens: int = 8192,
                 num_requests: int = 0) -> None:
        super().__init__(max_batch=max_batch, chunk=chunk, max_prefill_tokens=max_prefill_tokens)
        self.admitted_s = np.full(num_requests, np.nan)

    @property
    def max_step_tokens(self) -> int:
        """Most tokens of one iteration: ``max_batch`` decodes or a recompute prefill."""
        return max(self.max_batch, self.max_prefill_tokens)

    def next_batch(self, now: float, state: ReplicaState) -> Iteration | None:
        """Decodes of the running requests and of newly admitted ones, plus recompute prefills."""
        decodes, context = state.reserve_decodes(state.decoding())
        joined: list[int] = []
        recompute: list[int] = []
        recompute_tokens = 0
        waiting = state.waiting
        while waiting and state.running.size < self.max_batch:
            request = waiting[0]
            again = bool(state.preemptions[request])
            prompt = state.recompute_tokens(request)
            if again and recompute and recompute_tokens + prompt > self.max_prefill_tokens:
                break
            if not state.can_admit(request):
                break
            waiting.popleft()
            state.admit(request)
            if math.isnan(self.admitted_s[request]):
                self.admitted_s[request] = now
            if again:
                recompute.append(request)
                recompute_tokens += prompt
            else:  # its KV (prompt) arrived by the link: it decodes now, its context the prompt
                state.prefilled[request] = state.prompt_tokens[request]
                joined.append(request)
        if joined:
            ids = np.asarray(joined, dtype=np.int64)
            decodes = np.concatenate([decodes, ids])
            context += int(state.input_tokens[ids].sum() + state.generated[ids].sum()) - ids.size
        if not decodes.size and not recompute:
            return None
        pre = np.asarray(recompute, dtype=np.int64)
        return Iteration(decodes, context, pre, state.prompt_tokens[pre].copy(), np.zeros(pre.size, np.int64))


@dataclass(frozen=True)
class _Link:
    """The KV link: effective bandwidth per lane (B/s), latency (s), energy (J/B), name."""

    name: str
    bandwidth_bytes_per_s: float
    latency_s: float
    energy_per_byte_j: float


def _inter_node_link(spec: SystemSpec) -> LinkSpec:
    """A system's inter-node link (its intra-node one if it declares none)."""
    name = spec.interconnect.inter_node_link or spec.interconnect.intra_node_link
    links = spec.primary_device.links
    if name is None or name not in links:
        raise ArgumentError(f"link: system {spec.name!r} declares no inter-node link; pass link=")
    return links[name]


def _resolve_link(link: LinkArg, prefill: list[SystemSpec], decode: list[SystemSpec]) -> _Link:
    """The KV link from ``link`` (module doc of :func:`serve_disaggregated`)."""
    if link is None or isinstance(link, str):
        found: list[LinkSpec] = []
        for spec in prefill + decode:
            if link is None:
                found.append(_inter_node_link(spec))
            elif link in spec.primary_device.links:
                found.append(spec.primary_device.links[link])
            else:
                raise ArgumentError(f"link: device {spec.primary_device.name!r} of system {spec.name!r} has no "
                                    f"link {link!r} (it has {', '.join(spec.primary_device.links) or 'none'})")
        slow = min(found, key=lambda s: (s.effective_bandwidth, -s.latency_s))
        return _Link(slow.name, slow.effective_bandwidth, max(s.latency_s for s in found), slow.energy_per_byte_j)
    if isinstance(link, LinkSpec):
        return _Link(link.name, link.effective_bandwidth, link.latency_s, link.energy_per_byte_j)
    if is_number(link) or (isinstance(link, float) and link == math.inf):
        if not link > 0:  # type: ignore[operator]
            raise ArgumentError(f"link: a bandwidth must be > 0 B/s, got {link!r}")
        return _Link(f"{float(link):.3g} B/s", float(link), 0.0, 0.0)
    raise ArgumentError(f"link: must be a link name, a LinkSpec, a bandwidth in B/s or None; got {link!r:.80}")


def _systems(name: str, systems: object) -> list[SystemArg]:
    """One pool's systems: one system or a sequence of them (one instance each)."""
    if isinstance(systems, SystemArg):
        return [systems]
    if (not isinstance(systems, Sequence) or not systems or len(systems) > MAX_REPLICAS
            or not all(isinstance(s, SystemArg) for s in systems)):
        raise ArgumentError(f"{name}: must be a system (name, path or SystemSpec) or 1 to {MAX_REPLICAS} of "
                            f"them; got {systems!r:.80}")
    return list(systems)


def serve_disaggregated(model: str | Path | ModelConfig, prefill_systems: SystemArg | Sequence[SystemArg],
                        decode_systems: SystemArg | Sequence[SystemArg], workload: Workload, *,
                        link: LinkArg = None, layerwise_overlap: bool = True, prefill_router: str = "round-robin",
                        decode_router: str = "least-kv", requests: int | None = None, scheduler: str | None = None,
                        chunk: int | None = None, max_batch: int | None = None,
                        max_prefill_tokens: int | None = None, block_size: int | None = None,
                        memory_utilization: float | None = None, kv_blocks: int | None = None,
                        decode_kv_blocks: int | None = None,
                        software: str | Path | ServingSoftware = DEFAULT_SOFTWARE, precision: str | Precision = "bf16",
                        parallelism: Parallelism | None = None, seed: int = 0,
                        slo_ttft_s: float = DEFAULT_SLO_TTFT_S, slo_tpot_s: float = DEFAULT_SLO_TPOT_S,
                        bucket_width: float = 0.01, routing: Routing | None = None,
                        time_limit_s: float | None = None, max_memory_bytes: float | str | None = None,
                        progress: bool = False, speculation: Speculation | None = None) -> DisaggResult:
    """Simulate ``model`` served by prefill instances ``prefill_systems`` and decode instances
    ``decode_systems`` (each: one system -- catalog name, path or :class:`SystemSpec` -- or a
    sequence, one instance each), the KV cache of every request sent between them (module doc).

    ``link``: the KV link: None (the slowest inter-node link of the systems involved, e.g. the
    400 Gb/s ``nic`` of an H100; latency the largest of them), a device link name (``"nic"``,
    ``"nvlink"``; the slowest of that link over the systems), a :class:`LinkSpec`, or a
    bandwidth in B/s (latency 0; ``math.inf``: transfers take no time).
    ``layerwise_overlap``: send each layer's KV while the next layer is prefilled.
    ``prefill_router``/``decode_router``: a name of ``cluster.ROUTERS`` for each pool (the decode
    router is asked at the end of each prefill, with the decode instances' state then).
    ``scheduler``: the prefill instances' scheduler (the software's by default); the decode
    instances run :class:`DecodeScheduler`. ``kv_blocks``: KV blocks of each prefill instance,
    ``decode_kv_blocks``: of each decode instance (None: sized from memory). ``max_memory_bytes``:
    as for :func:`serve`, with both pools' per-request records and each instance's request
    arrays counted (:data:`DISAGG_REQUEST_BYTES`). ``speculation``: the decode instances speculate
    (each its own seeded draws); a draft model is refused, since its own prompt KV cache would be
    prefilled and sent too, which is not modelled. Every other argument is as for :func:`serve`
    and applies to both pools.

    Returns a :class:`DisaggResult` (times in s, bytes in B, energy in J, lengths in tokens).
    Raises ArgumentError for an argument out of range, before any simulation;
    :class:`core.run_limits.LimitError` for a run refused or stopped by ``max_memory_bytes`` or
    ``time_limit_s``.
    """
    engine_sw = load_software(software)
    scheduler, chunk, max_batch, block_size, memory_utilization = engine_sw.settings(
        scheduler, chunk, max_batch, block_size, memory_utilization)
    pre_args, dec_args = _systems("prefill_systems", prefill_systems), _systems("decode_systems", decode_systems)
    for name, value in (("prefill_router", prefill_router), ("decode_router", decode_router)):
        if not isinstance(value, str) or value not in ROUTERS:
            raise ArgumentError(f"{name}: {value!r:.80} not one of {', '.join(ROUTERS)}")
    check_bool("layerwise_overlap", layerwise_overlap)
    check_bool("progress", progress)
    lookahead = speculation_lookahead(speculation)
    if speculation is not None and speculation.draft.kind == "model":
        raise ArgumentError("speculation: a draft model keeps its own prompt KV cache, which a disaggregated run "
                            "would prefill and send too (not modelled); use a self-draft, decoding heads or a free "
                            "draft")
    _check_arguments(workload, requests, scheduler, chunk, max_batch, max_prefill_tokens, block_size,
                     memory_utilization, kv_blocks, parallelism, seed, bucket_width, routing)
    if decode_kv_blocks is not None:
        check_int("decode_kv_blocks", decode_kv_blocks, 1, MAX_KV_BLOCKS)
    time_limit = check_time_limit(time_limit_s)
    limit = memory_limit(max_memory_bytes)
    instances = len(pre_args) + len(dec_args)
    per_request = 2 * REQUEST_BYTES + (instances - 2) * REPLICA_REQUEST_BYTES + DISAGG_REQUEST_BYTES
    count_guess = requests or 1000
    _check_memory(instances * RUN_BASE_BYTES + count_guess * per_request, limit, count_guess)
    slo_ttft = _positive_float("slo_ttft_s", slo_ttft_s)
    slo_tpot = _positive_float("slo_tpot_s", slo_tpot_s)
    model_cfg = load_model(model)
    loaded: dict[object, SystemSpec] = {}
    for arg in pre_args + dec_args:
        loaded.setdefault(arg if isinstance(arg, str | Path) else id(arg), load_system(arg))
    pre_specs = [loaded[a if isinstance(a, str | Path) else id(a)] for a in pre_args]
    dec_specs = [loaded[a if isinstance(a, str | Path) else id(a)] for a in dec_args]
    kv_link = _resolve_link(link, pre_specs, dec_specs)
    prec = Precision.parse(precision)
    par = parallelism or Parallelism()
    context_window = model_cfg.context_window or MAX_TOKENS
    prefill_cap = max(model_cfg.max_position_embeddings, 2048) if max_prefill_tokens is None else max_prefill_tokens
    arrivals = workload.generate(requests, seed, max_total_tokens=context_window - lookahead)
    n = int(arrivals.arrival_s.size)
    held = (instances * RUN_BASE_BYTES + n * (per_request + len(dec_args) * 8)
            + float(arrivals.output_tokens.sum()) * (TOKEN_BYTES + DISAGG_TOKEN_BYTES))
    _check_memory(held, limit, n)
    ones = np.ones(n, dtype=np.int64)
    prefill_arrivals = RequestArrays(arrivals.arrival_s, arrivals.input_tokens, ones)
    reserve = engine_sw.reserves_output
    sequence = itertools.count(1)
    info: dict[tuple[int, bool], tuple[KVCapacity, float, int]] = {}  # (id(spec), decode) -> kv, idle W, devices

    def build(spec: SystemSpec, decode: bool, index: int) -> ServingEngine:
        ahead = lookahead if decode else 0  # the decode instances speculate
        if decode:
            sched: Scheduler = DecodeScheduler(max_batch=max_batch, chunk=chunk, max_prefill_tokens=prefill_cap,
                                               num_requests=n)
            outputs, blocks = arrivals.output_tokens, decode_kv_blocks
            longest = int((arrivals.input_tokens + arrivals.output_tokens - (0 if reserve else 1)).max()) + ahead
        else:
            sched = get_scheduler(scheduler)(max_batch=max_batch, chunk=chunk, max_prefill_tokens=prefill_cap)
            outputs, blocks = ones, kv_blocks
            longest = int((arrivals.input_tokens + (1 if reserve else 0)).max())
        key = (id(spec), decode)
        if key not in info:
            capacity = kv_capacity(model_cfg, spec, precision=prec, parallelism=par, block_size=block_size,
                                   memory_utilization=memory_utilization,
                                   workspace_tokens=sched.max_step_tokens_ahead(ahead),
                                   total_blocks=blocks, memory_basis=engine_sw.kv_memory_basis)
            if decode:  # decoding heads sit beside the target on the decode instances
                capacity = share_capacity(capacity, speculation, spec, model_cfg, prec, par, blocks)
            if -(-longest // capacity.block_size) > capacity.total_blocks:
                what = ("decode_kv_blocks" if decode else "kv_blocks") if blocks is not None else "memory_utilization"
                raise ArgumentError(f"{what}: the KV cache of a {spec.name} {'decode' if decode else 'prefill'} "
                                    f"instance holds {capacity.total_tokens} tokens; the longest request needs "
                                    f"{longest}; raise {what}")
            probe = estimate(model_cfg, spec, Batch.decode(1, 1), precision=prec, parallelism=par)
            info[key] = (capacity, spec.primary_device.power.idle_w * probe.devices, probe.devices)
        capacity, idle_power, _ = info[key]
        blocks_manager = BlockManager(capacity.total_blocks, capacity.block_size, n)
        state = ReplicaState(arrivals.input_tokens, outputs, blocks_manager, reserve_output=reserve, lookahead=ahead)
        spec_here = speculation if decode else None
        step_times = _step_times(None, model_cfg, spec, prec, par, bucket_width, routing, spec_here)
        return ServingEngine(arrivals.arrival_s, state, sched, step_times,
                             host_overhead_s=engine_sw.iteration_host_overhead_s,
                             request_overhead_s=engine_sw.request_host_overhead_s, host_power_w=idle_power,
                             sequence=sequence, speculation=None if spec_here is None else spec_here.draws(seed, index))

    pre_engines = [build(spec, False, i) for i, spec in enumerate(pre_specs)]
    dec_engines = [build(spec, True, j) for j, spec in enumerate(dec_specs)]
    for group in (pre_engines, dec_engines):  # a pool writes one set of per-request records
        for engine in group[1:]:
            engine.scheduled_s, engine.first_token_s, engine.finish_s = (group[0].scheduled_s, group[0].first_token_s,
                                                                         group[0].finish_s)
            engine.token_time_s = group[0].token_time_s
    kv_bytes = arrivals.input_tokens * model_cfg.kv_cache_bytes_per_token(prec.kv_cache)
    lanes = np.array([[min(info[(id(p), False)][2], info[(id(d), True)][2]) for d in dec_specs] for p in pre_specs])
    loop = _Loop(pre_engines, dec_engines, arrivals, kv_bytes, kv_link, lanes, model_cfg.num_layers,
                 layerwise_overlap, ROUTERS[prefill_router], ROUTERS[decode_router], sequence)
    watch = RunWatch("serving run", "requests", n, time_limit_s=time_limit, memory_limit_bytes=limit,
                     progress=progress, advice="; lower --requests or raise the limit")
    everyone = pre_engines + dec_engines
    try:
        loop.run(lambda done: watch.tick(done, held + sum(len(e.it_start) for e in everyone) * ITERATION_BYTES))
    finally:
        watch.close()
    common = (model_cfg.name, prec.name, par.label, engine_sw.name)
    pre_results = tuple(
        _replica_result(e, prefill_arrivals, loop.prefill_instance == i, common[0], s.name, *common[1:],
                        *info[(id(s), False)], slo_ttft, slo_tpot)
        for i, (e, s) in enumerate(zip(pre_engines, pre_specs, strict=True)))
    dec_results = tuple(
        _replica_result(e, arrivals, loop.decode_instance == j, common[0], s.name, *common[1:],
                        *info[(id(s), True)], slo_ttft, slo_tpot)
        for j, (e, s) in enumerate(zip(dec_engines, dec_specs, strict=True)))
    admitted = np.full(n, np.nan)
    for engine in dec_engines:
        mine = ~np.isnan(engine.scheduler.admitted_s)  # type: ignore[attr-defined]
        admitted[mine] = engine.scheduler.admitted_s[mine]  # type: ignore[attr-defined]
    pre0, dec0 = pre_engines[0], dec_engines[0]
    dec0.scheduled_s[:] = admitted  # a decode instance's "scheduled" time: its admission of the request
    one = arrivals.output_tokens == 1
    finish = np.where(one, pre0.finish_s, dec0.finish_s)
    preemptions = (np.sum([e.state.preemptions for e in pre_engines], axis=0)
                   + np.sum([e.state.preemptions for e in dec_engines], axis=0))
    return DisaggResult(
        model=model_cfg.name, prefill_router=prefill_router, decode_router=decode_router,
        prefill_systems=tuple(s.name for s in pre_specs), decode_systems=tuple(s.name for s in dec_specs),
        link=kv_link.name, link_bandwidth_bytes_per_s=kv_link.bandwidth_bytes_per_s, link_latency_s=kv_link.latency_s,
        layerwise_overlap=layerwise_overlap, prefill_instance=loop.prefill_instance,
        decode_instance=loop.decode_instance, arrival_s=arrivals.arrival_s, prefill_start_s=pre0.scheduled_s,
        prefill_end_s=pre0.finish_s, transfer_start_s=loop.transfer_start_s, transfer_end_s=loop.transfer_end_s,
        decode_admit_s=admitted, first_token_s=dec0.first_token_s, finish_s=finish,
        input_tokens=arrivals.input_tokens, output_tokens=arrivals.output_tokens, kv_transfer_bytes=kv_bytes,
        preemptions_per_request=preemptions, token_time_s=dec0.token_time_s, token_offsets=dec0.token_offsets,
        prefill_results=pre_results, decode_results=dec_results,
        prefill_usd_per_hour=tuple(s.primary_device.usd_per_hour * info[(id(s), False)][2] for s in pre_specs),
        decode_usd_per_hour=tuple(s.primary_device.usd_per_hour * info[(id(s), True)][2] for s in dec_specs),
        link_energy_per_byte_j=kv_link.energy_per_byte_j, slo_ttft_s=slo_ttft, slo_tpot_s=slo_tpot)


class _Loop:
    """The event loop of a disaggregated run: arrivals, every instance's iteration completions and
    KV transfers on one heap (module doc). Heap entries: ``(time, sequence, kind, engine,
    payload)``; ``engine`` indexes the prefill engines then the decode engines."""

    def __init__(self, pre: list[ServingEngine], dec: list[ServingEngine], arrivals: RequestArrays,
                 kv_bytes: np.ndarray, link: _Link, lanes: np.ndarray, layers: int, overlap: bool,
                 pre_route: Router, dec_route: Router, sequence: itertools.count[int]) -> None:
        self.pre, self.dec, self.engines = pre, dec, pre + dec
        self.arrivals, self.kv_bytes, self.link, self.lanes = arrivals, kv_bytes, link, lanes
        self.layers, self.overlap, self.pre_route, self.dec_route = layers, overlap, pre_route, dec_route
        self.sequence = sequence
        n = arrivals.arrival_s.size
        self.prefill_instance = np.full(n, -1, dtype=np.int64)
        self.decode_instance = np.full(n, -1, dtype=np.int64)
        self.transfer_start_s = np.full(n, np.nan)
        self.transfer_end_s = np.full(n, np.nan)
        self.link_free_s = [-math.inf] * len(pre)
        self.routed = [0] * len(self.engines)
        self.finished = 0
        self.heap: list[tuple[float, int, int, int, object]] = []

    def _push(self, time: float, kind: int, engine: int, payload: object) -> None:
        heapq.heappush(self.heap, (time, next(self.sequence), kind, engine, payload))

    def _route(self, route: Router, group: list[ServingEngine], offset: int, request: int) -> int:
        outstanding = [self.routed[offset + r] - e.finished for r, e in enumerate(group)]
        kv_used = [e.state.kv.used_blocks / e.state.kv.total_blocks for e in group]
        return route(outstanding, kv_used, request)

    def _send(self, time: float, start_it: float, requests: np.ndarray, source: int) -> None:
        """Route the requests whose prefill ended at ``time`` on prefill instance ``source`` (its
        iteration started at ``start_it``) to decode instances and queue their transfers."""
        out, link, n_pre = self.arrivals.output_tokens, self.link, len(self.pre)
        for request in requests.tolist():
            if out[request] == 1:  # done at its prefill: first token = last token, nothing to send
                self.finished += 1
                self.dec[0].first_token_s[request] = time
                self.dec[0].token_time_s[self.dec[0].token_offsets[request]] = time
                continue
            target = self._route(self.dec_route, self.dec, n_pre, request)
            self.decode_instance[request] = target
            self.routed[n_pre + target] += 1
            bw = link.bandwidth_bytes_per_s * float(self.lanes[source, target])
            wire = float(self.kv_bytes[request]) / bw
            free = self.link_free_s[source]
            if self.overlap:
                start = max(free, start_it)
                end = max(time + link.latency_s + wire / self.layers, start + link.latency_s + wire)
            else:
                start = max(free, time)
                end = start + link.latency_s + wire
            self.link_free_s[source] = end
            self.transfer_start_s[request], self.transfer_end_s[request] = start, end
            self._push(end, TRANSFER_END, n_pre + target, request)

    def run(self, watch: Callable[[int], None]) -> None:
        """Process every event; ``watch(finished requests)`` every WATCH_EVENTS events."""
        arrival_s, n, n_pre = self.arrivals.arrival_s, self.arrivals.arrival_s.size, len(self.pre)
        if n:
            self._push(float(arrival_s[0]), ARRIVAL, -1, 0)
        touched: set[int] = set()
        heap, events = self.heap, 0
        while heap:
            time, _, kind, index, payload = heapq.heappop(heap)
            if kind == ARRIVAL:
                request = int(payload)  # type: ignore[call-overload]
                target = self._route(self.pre_route, self.pre, 0, request)
                self.prefill_instance[request] = target
                self.routed[target] += 1
                self.pre[target].enqueue(request)
                touched.add(target)
                if request + 1 < n:
                    self._push(float(arrival_s[request + 1]), ARRIVAL, -1, request + 1)
            elif kind == TRANSFER_END:
                request = int(payload)  # type: ignore[call-overload]
                engine = self.engines[index]
                engine.first_token_s[request] = time
                engine.token_time_s[engine.token_offsets[request]] = time
                engine.state.generated[request] = 1
                engine.enqueue(request)
                touched.add(index)
            else:
                assert kind == ITERATION_END and isinstance(payload, Iteration)
                engine = self.engines[index]
                started = engine.it_start[-1]
                before = engine.finished
                for at, seq, what, it in engine.end_iteration(time, payload):
                    heapq.heappush(heap, (at, seq, what, index, it))
                if index < n_pre:
                    ids = payload.prefill_ids
                    if ids.size:
                        self._send(time, started, ids[engine.finish_s[ids] == time], index)
                else:
                    self.finished += engine.finished - before
            if not heap or heap[0][0] > time:  # the instant is over: idle instances plan their next iteration
                for r in sorted(touched):
                    for at, seq, what, it in self.engines[r].start(time):
                        heapq.heappush(heap, (at, seq, what, r, it))
                touched.clear()
            events += 1
            if events % WATCH_EVENTS == 0:
                watch(self.finished)
        if self.finished != n:
            raise RuntimeError(f"serving loop stalled: {self.finished} of {n} requests finished")
