"""Request-level serving: requests arrive over time, a scheduler batches them, the step model
prices every iteration.

``serve(model, system, workload, scheduler=..., speculation=...)`` returns a :class:`ServingResult` (TTFT, TPOT,
E2E, time between tokens, throughput, goodput, utilisation, energy per token, preemptions);
``serve_cluster`` runs replicas behind a router on one clock (:class:`ClusterResult`),
``serve_disaggregated`` prefill and decode instances with the KV cache sent between them
(:class:`DisaggResult`);
``load_trace`` replays shipped production traces (``TRACES``); ``capacity.capacity`` finds the
highest request rate that meets latency SLOs (``capacity.CapacityResult``).
Modules: ``workload`` (arrivals and lengths), ``kv_cache`` (block manager), ``schedulers``
(static, continuous, chunked), ``step_times`` (cached iteration latency), ``engine`` (the
event loop), ``metrics`` and ``result``. Units: seconds, bytes, tokens, joules.
"""

from decodex.sim.serving.api import DEFAULT_SLO_TPOT_S, DEFAULT_SLO_TTFT_S, serve
from decodex.sim.serving.cluster import ROUTERS, serve_cluster
from decodex.sim.serving.cluster_result import ClusterResult
from decodex.sim.serving.disagg import serve_disaggregated
from decodex.sim.serving.disagg_result import DisaggResult
from decodex.sim.serving.kv_cache import BlockManager, KVCapacity, kv_capacity
from decodex.sim.serving.result import ServingResult
from decodex.sim.serving.schedulers import SCHEDULERS, Scheduler, get_scheduler, register_scheduler
from decodex.sim.serving.speculation import Speculation
from decodex.sim.serving.step_times import StepTimes
from decodex.sim.serving.traces import TRACES, load_trace
from decodex.sim.serving.workload import PRESET_NAMES, Lengths, RequestArrays, Workload

__all__ = ["DEFAULT_SLO_TPOT_S", "DEFAULT_SLO_TTFT_S", "PRESET_NAMES", "ROUTERS", "SCHEDULERS", "TRACES",
           "BlockManager", "ClusterResult", "DisaggResult", "KVCapacity", "Lengths", "RequestArrays", "Scheduler",
           "ServingResult", "Speculation", "StepTimes", "Workload", "get_scheduler", "kv_capacity", "load_trace",
           "register_scheduler", "serve", "serve_cluster", "serve_disaggregated"]
