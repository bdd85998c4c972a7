"""``decodex serve``: simulate a replica serving a stream of requests and print its metrics;
``decodex traces``: list the shipped production traces.

``app.cli.build_parser`` calls :func:`add_serve_parser` and :func:`add_traces_parser`; shared
option groups live in ``app.cli_args``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from decodex.app.cli_args import (
    SEED,
    add_deployment_options,
    add_model_system_options,
    bounded_float,
    bounded_int,
    byte_size,
    fraction,
    positive_int,
    print_json,
    routing_from_args,
)
from decodex.app.cli_layout import serving_parallelism, system_with_edits
from decodex.app.cli_speculate import add_speculation_options, speculation_from_args, speculation_rows
from decodex.app.formatting import si, table
from decodex.core.errors import ArgumentError
from decodex.sim.serving import PRESET_NAMES, SCHEDULERS, Workload, serve
from decodex.sim.serving.api import DEFAULT_SLO_TPOT_S, DEFAULT_SLO_TTFT_S
from decodex.sim.serving.cluster import MAX_REPLICAS, ROUTERS, serve_cluster
from decodex.sim.serving.disagg import serve_disaggregated
from decodex.sim.serving.software import DEFAULT_SOFTWARE, list_software
from decodex.sim.serving.traces import RATE_SCALE_RANGE, list_traces, trace_summary

MAX_REQUESTS = 10_000_000  # requests in one run (about 10 minutes of simulation; the limit keeps a typo bounded)
RATE_RANGE = (1e-6, 1e9)  # requests/s: one request per ~12 days .. far beyond any cluster
SLO_SECONDS = bounded_float(1e-9, 3600.0)  # an SLO between a nanosecond and an hour
WINDOW_SECONDS = bounded_float(0.0, 1e9)  # s; start and length of a --trace-window


def rate_scale(text: str) -> float:
    """argparse type: a replay speed-up factor, a finite number in (0, 1e6]."""
    value = bounded_float(*RATE_SCALE_RANGE)(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value:g} outside ({RATE_SCALE_RANGE[0]:g}, {RATE_SCALE_RANGE[1]:g}]")
    return value


def trace_window(text: str) -> tuple[float, float | None]:
    """argparse type: ``START:DURATION`` seconds of a trace (``START:`` to its end), DURATION > 0."""
    start, sep, duration = text.partition(":")
    if not sep or not start.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not START:DURATION (seconds, e.g. 600:300 or 600:)")
    if not duration.strip():
        return WINDOW_SECONDS(start), None
    length = WINDOW_SECONDS(duration)
    if length <= 0:
        raise argparse.ArgumentTypeError(f"duration {length:g} s: must be > 0")
    return WINDOW_SECONDS(start), length


def system_list(text: str) -> list[str]:
    """argparse type: comma-separated system names or files, at least one, none empty."""
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"{text!r}: give system names or files separated by commas, e.g. "
                                         "h100-sxm,h100-sxm,h200")
    return names


def add_serve_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``serve`` sub-command to ``subparsers`` (from ``add_subparsers``) and return it."""
    p = subparsers.add_parser("serve", help="simulate serving a stream of requests (TTFT, TPOT, throughput)")
    add_model_system_options(p)
    for action in p._actions:  # --systems may replace --system
        if action.dest == "system":
            action.required = False
            action.help = f"{action.help} (required unless --systems)"
    p.add_argument("--systems", type=system_list, default=None, metavar="A,B,...",
                   help="one replica per listed system behind the --router (heterogeneous cluster, e.g. "
                        "h100-sxm,h100-sxm,h200; replaces --system and --replicas)")
    p.add_argument("--replicas", type=bounded_int(1, MAX_REPLICAS), default=None, metavar="N",
                   help=f"N replicas of --system behind the --router, one simulation clock (1 to {MAX_REPLICAS}; "
                        "default: one replica, no router)")
    p.add_argument("--router", choices=tuple(ROUTERS), default=None,
                   help="global router of --replicas/--systems: round-robin, least-outstanding (fewest requests "
                        "routed and not finished) or least-kv (lowest KV cache use) (default round-robin)")
    p.add_argument("--decode-router", choices=tuple(ROUTERS), default=None,
                   help="router of the decode pool with --decode-systems (default least-kv; --router sets the "
                        "prefill pool's)")
    p.add_argument("--prefill-systems", type=system_list, default=None, metavar="A,B,...",
                   help="prefill-decode disaggregation: one prefill instance per listed system (with "
                        "--decode-systems; replaces --system, --systems and --replicas)")
    p.add_argument("--decode-systems", type=system_list, default=None, metavar="C,D,...",
                   help="prefill-decode disaggregation: one decode instance per listed system (e.g. h20)")
    p.add_argument("--kv-link", default=None, metavar="LINK",
                   help="device link that carries the KV cache from prefill to decode instances (nic, nvlink, "
                        "pcie; default: the slowest inter-node link of the systems)")
    p.add_argument("--no-layerwise-overlap", action="store_true",
                   help="send the KV cache after the prefill ends instead of layer by layer during it")
    p.add_argument("--requests", type=bounded_int(1, MAX_REQUESTS), default=None,
                   help="requests to simulate (default 1000; all rows of a --trace's window, else its first N)")
    p.add_argument("--rate", type=bounded_float(*RATE_RANGE), default=None,
                   help=f"arrival rate, requests/s, {RATE_RANGE[0]:g} to {RATE_RANGE[1]:g} (required unless --trace)")
    p.add_argument("--arrival", choices=("poisson", "fixed", "all-at-once"), default="poisson",
                   help="arrival process: poisson, evenly spaced, or every request at 0 s (max-throughput "
                        "benchmarking; no --rate needed) (default poisson)")
    p.add_argument("--dataset", choices=PRESET_NAMES, default="sharegpt",
                   help="length distribution: sharegpt (80/296 tokens), sharegpt-long (1730/415), alpaca (12/56), "
                        "fixed (--input-len/--output-len) (default sharegpt)")
    p.add_argument("--input-len", type=positive_int, default=None,
                   help="prompt tokens (fixed), or the mean prompt length of a lognormal dataset")
    p.add_argument("--output-len", type=positive_int, default=None,
                   help="output tokens (fixed), or the mean output length of a lognormal dataset")
    p.add_argument("--trace", default=None,
                   help=f"a shipped production trace ({', '.join(list_traces())}; see 'decodex traces') or a CSV "
                        "file with columns arrival_s,input_tokens,output_tokens or TIMESTAMP,ContextTokens,"
                        "GeneratedTokens; replayed as recorded (replaces --rate/--dataset)")
    p.add_argument("--rate-scale", type=rate_scale, default=None, metavar="X",
                   help="replay the --trace at X times its recorded rate (every gap divided by X; default 1)")
    p.add_argument("--trace-window", type=trace_window, default=None, metavar="START:DURATION",
                   help="only the --trace's requests arriving in [START, START+DURATION) s of its timeline, "
                        "shifted to start at 0 s (START: to the end)")
    p.add_argument("--trace-repeat", type=positive_int, default=None, metavar="N",
                   help="play the --trace (or its window) N times back to back, each copy one mean gap after the "
                        "last (a long run from a short trace; default 1)")
    p.add_argument("--software", default=DEFAULT_SOFTWARE,
                   help=f"serving software: {', '.join(list_software())} or a TOML file (default {DEFAULT_SOFTWARE}); "
                        "its host time per iteration, admission and KV sizing apply, and it gives the defaults of "
                        "the next five options")
    p.add_argument("--scheduler", choices=sorted(SCHEDULERS), default=None,
                   help="batching policy (default: the software's; vllm: continuous)")
    p.add_argument("--chunk", type=positive_int, default=None,
                   help="token budget per iteration of chunked/inflight (default: the software's; vllm 512)")
    p.add_argument("--max-batch", type=positive_int, default=None,
                   help="most running requests (default: the software's; vllm 256)")
    p.add_argument("--block-size", type=positive_int, default=None,
                   help="KV block size, tokens (default: the software's; vllm 16)")
    p.add_argument("--memory-utilization", type=fraction, default=None,
                   help="fraction of device memory for weights, workspace and KV cache, or of what weights leave "
                        "for the KV cache (the software's basis; default: the software's; vllm 0.9 of all)")
    p.add_argument("--seed", type=SEED, default=0, help="seed of the workload draws (default 0)")
    add_deployment_options(p)
    add_speculation_options(p)
    p.add_argument("--slo-ttft", type=SLO_SECONDS, default=DEFAULT_SLO_TTFT_S,
                   help=f"TTFT SLO for goodput, s (default {DEFAULT_SLO_TTFT_S:g})")
    p.add_argument("--slo-tpot", type=SLO_SECONDS, default=DEFAULT_SLO_TPOT_S,
                   help=f"TPOT SLO for goodput, s (default {DEFAULT_SLO_TPOT_S:g})")
    p.add_argument("--json", action="store_true", help="one JSON object: the summary of the run")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="also write the run's tables to DIR as Parquet (requests, and iterations, replicas or "
                        "instances) with summary.json")
    p.add_argument("--time-limit", type=bounded_float(0.0, 1e9), default=None, metavar="SECONDS",
                   help="stop with an error after SECONDS of wall time (default: none)")
    p.add_argument("--max-memory", type=byte_size, default=None, metavar="BYTES",
                   help="refuse or stop a run needing more memory than BYTES (e.g. 8G, 512M; default: half the "
                        "physical memory)")
    p.add_argument("--quiet", "-q", action="store_true",
                   help="no progress line on stderr (shown by default when stderr is a terminal)")
    p.set_defaults(func=cmd_serve)
    return p


def _workload(args: argparse.Namespace) -> Workload:
    if args.trace is not None:
        start, duration = args.trace_window or (0.0, None)
        return Workload.from_trace(args.trace, rate_scale=args.rate_scale or 1.0, start_s=start, duration_s=duration,
                                   repeat=args.trace_repeat or 1)
    for flag, value in (("--rate-scale", args.rate_scale), ("--trace-window", args.trace_window),
                        ("--trace-repeat", args.trace_repeat)):
        if value is not None:
            raise ArgumentError(f"{flag}: only with --trace")
    if args.rate is None and args.arrival != "all-at-once":
        raise ArgumentError("--rate: required (requests/s, > 0) unless --trace or --arrival all-at-once is given")
    rate = 1.0 if args.rate is None else args.rate  # all-at-once ignores the rate
    return Workload.preset(args.dataset, rate, arrival=args.arrival, input_len=args.input_len,
                           output_len=args.output_len)


LATENCIES = (("TTFT", "ttft_s"), ("TPOT", "tpot_s"), ("E2E", "e2e_s"), ("TBT", "tbt_s"))


def latency_table(summary: dict[str, Any], extra: tuple[tuple[str, str], ...] = ()) -> str:
    """Percentiles (s) of TTFT, TPOT, E2E and TBT, and of the ``extra`` (label, key) metrics, from a
    serving summary."""
    return table(["latency", "p50", "p90", "p99", "mean"], [
        [label, *(si(summary[key][q], "s") for q in ("p50", "p90", "p99", "mean"))]
        for label, key in (*LATENCIES, *extra)])


def goodput_row(summary: dict[str, Any]) -> list[str]:
    """The goodput row of a serving summary's table: requests/s within both SLOs and the share met."""
    slos = f"TTFT <= {si(summary['slo_ttft_s'], 's')}, TPOT <= {si(summary['slo_tpot_s'], 's')}"
    return ["goodput", f"{summary['goodput_requests_per_s']:,.3f} requests/s ({slos}; "
                       f"{100 * summary['slo_attainment']:.1f}% met)"]


def serve_report(summary: dict[str, Any]) -> str:
    """The readable report of ``decodex serve`` from ``ServingResult.summary()``."""
    head = (f"{summary['model']} on {summary['system']} ({summary['devices']} device"
            f"{'s' if summary['devices'] > 1 else ''}, {summary['parallelism']}), {summary['precision']}, "
            f"software {summary.get('software', '')}, scheduler {summary['scheduler']}, "
            f"{summary['requests']} requests")
    latency = latency_table(summary)
    system = table(["metric", "value"], [
        ["throughput", f"{summary['throughput_tokens_per_s']:,.1f} tokens/s"],
        ["requests/s", f"{summary['request_throughput_per_s']:,.3f}"],
        goodput_row(summary),
        ["busy (an iteration running)", f"{100 * summary['utilization']:.1f}% of the makespan"],
        ["energy per token", si(summary["energy_per_token_j"], "J")],
        ["preemptions", summary["preemptions"]],
        ["iterations", f"{summary['iterations']} (mean batch {summary['mean_batch_size']:.1f})"],
        ["output tokens", summary["output_tokens"]],
        ["makespan", si(summary["makespan_s"], "s")],
        ["KV cache", f"{summary['kv_blocks']} blocks of {summary['block_size']} tokens, "
                     f"peak {summary['peak_kv_blocks_used']} used"],
        *speculation_rows(summary),
    ])
    return "\n".join([head, "", latency, "", system, "", BUSY_NOTE])


BUSY_NOTE = ("busy: the share of the time with an iteration running. A continuous-batching replica runs one "
             "whenever a request is in the system,\nso it is near 100% at any load that keeps it fed; the mean batch "
             "says how much work each iteration carries.")


def cluster_report(summary: dict[str, Any]) -> str:
    """The readable report of ``decodex serve --replicas/--systems`` from ``ClusterResult.summary()``:
    the cluster's latency and system tables, then one row per replica."""
    systems = ", ".join(f"{count} x {name}" for name, count in
                        {s: summary["systems"].count(s) for s in summary["systems"]}.items())
    head = (f"{summary['model']} on {summary['replicas']} replica{'s' if summary['replicas'] > 1 else ''} ({systems}; "
            f"{summary['parallelism']} each) behind a {summary['router']} router, {summary['precision']}, software "
            f"{summary['software']}, scheduler {summary['scheduler']}, {summary['requests']} requests")
    latency = latency_table(summary)
    system = table(["cluster", "value"], [
        ["throughput", f"{summary['throughput_tokens_per_s']:,.1f} tokens/s"],
        ["requests/s", f"{summary['request_throughput_per_s']:,.3f}"],
        goodput_row(summary),
        ["busy (an iteration running)", f"{100 * summary['utilization']:.1f}% (mean of replicas)"],
        ["energy per token", si(summary["energy_per_token_j"], "J")],
        ["preemptions", summary["preemptions"]],
        ["output tokens", summary["output_tokens"]],
        ["makespan", si(summary["makespan_s"], "s")],
        *speculation_rows(summary),
    ])
    replicas = table(["replica", "system", "requests", "output tokens", "busy", "tokens/s", "TTFT p99",
                      "TPOT p99", "preemptions", "peak KV blocks"], [
        [r["replica"], r["system"], r["requests"], r["output_tokens"], f"{100 * r['utilization']:.1f}%",
         f"{r['throughput_tokens_per_s']:,.1f}", si(r["ttft_p99_s"], "s"), si(r["tpot_p99_s"], "s"),
         r["preemptions"], f"{r['peak_kv_blocks_used']} of {r['kv_blocks']}"] for r in summary["per_replica"]])
    return "\n".join([head, "", latency, "", system, "", replicas, "", BUSY_NOTE])


def _cluster_systems(args: argparse.Namespace) -> list[str] | None:
    """The system of every replica for a cluster run (None: a plain one-replica ``serve``)."""
    if args.systems is not None:
        for flag, value in (("--system", args.system), ("--replicas", args.replicas)):
            if value is not None:
                raise ArgumentError(f"{flag}: not with --systems (one replica per listed system)")
        return list(args.systems)
    if args.system is None:
        raise ArgumentError("--system: required (a catalog name or system TOML file) unless --systems is given")
    if args.replicas is None and args.router is None:
        return None
    return [args.system] * (args.replicas or 1)


def cmd_serve(args: argparse.Namespace) -> int:
    """Run ``serve`` (or ``serve_cluster`` with ``--replicas``/``--systems``/``--router``) with the
    parsed arguments and print the report (or ``--json``); returns 0."""
    if args.prefill_systems is not None or args.decode_systems is not None:
        return _cmd_serve_disaggregated(args)
    if args.decode_router is not None:
        raise ArgumentError("--decode-router: only with --prefill-systems/--decode-systems")
    systems = _cluster_systems(args)
    edited = [system_with_edits(args, one) for one in (systems or [args.system])]
    common: dict[str, Any] = dict(
        requests=args.requests, scheduler=args.scheduler, chunk=args.chunk, max_batch=args.max_batch,
        block_size=args.block_size, memory_utilization=args.memory_utilization, software=args.software,
        precision=args.precision, parallelism=serving_parallelism(args, args.model, edited)[0],
        seed=args.seed,
        slo_ttft_s=args.slo_ttft, slo_tpot_s=args.slo_tpot, routing=routing_from_args(args),
        time_limit_s=args.time_limit, max_memory_bytes=args.max_memory, progress=not args.quiet and sys.stderr.isatty())
    if systems is not None:
        cluster = serve_cluster(args.model, edited, _workload(args), router=args.router or "round-robin",
                                speculation=speculation_from_args(args), **common)
        _write_out(args, {"requests": cluster.requests, "replicas": cluster.replicas}, cluster.summary())
        if args.json:
            print_json(cluster.summary())
        else:
            print(cluster_report(cluster.summary()))
        return 0
    result = serve(args.model, edited[0], _workload(args), speculation=speculation_from_args(args), **common)
    summary = result.summary()
    _write_out(args, {"requests": result.requests, "iterations": result.iterations}, summary)
    if args.json:
        print_json(summary)
    else:
        print(serve_report(summary))
    return 0


def disagg_report(summary: dict[str, Any]) -> str:
    """The readable report of ``decodex serve --prefill-systems/--decode-systems`` from
    ``DisaggResult.summary()``."""
    head = (f"{summary['model']}: prefill on {', '.join(summary['prefill_systems'])}, decode on "
            f"{', '.join(summary['decode_systems'])}, KV over {summary['link']} "
            f"({si(summary['link_bandwidth_bytes_per_s'], 'B/s')}, "
            f"{'layer-wise overlap' if summary['layerwise_overlap'] else 'after the prefill'}), "
            f"{summary['requests']} requests")
    latency = latency_table(summary, (("KV transfer", "transfer_s"), ("decode queue", "decode_queue_s")))
    system = table(["run", "value"], [
        ["throughput", f"{summary['throughput_tokens_per_s']:,.1f} tokens/s"],
        goodput_row(summary),
        ["price", f"{summary['usd_per_hour']:.2f} USD/h "
                  f"({summary['tokens_per_s_per_usd_hour']:,.1f} tokens/s per USD/h)"],
        ["energy", f"{si(summary['energy_per_token_j'], 'J')} per token, mean {si(summary['mean_power_w'], 'W')}"],
        ["KV sent", si(summary["kv_bytes_sent"], "B")],
        ["preemptions", summary["preemptions"]],
        ["makespan", si(summary["makespan_s"], "s")],
        *speculation_rows(summary),
    ])
    instances = table(["role", "instance", "system", "requests", "busy", "peak KV blocks", "USD/h"], [
        [r["role"], r["instance"], r["system"], r["requests"], f"{100 * r['utilization']:.1f}%",
         f"{r['peak_kv_blocks_used']} of {r['kv_blocks']}", f"{r['usd_per_hour']:.2f}"]
        for r in summary["per_instance"]])
    return "\n".join([head, "", latency, "", system, "", instances, "", BUSY_NOTE])


def _cmd_serve_disaggregated(args: argparse.Namespace) -> int:
    """``decodex serve --prefill-systems ... --decode-systems ...``: run ``serve_disaggregated``."""
    for flag, value in (("--prefill-systems", args.prefill_systems), ("--decode-systems", args.decode_systems)):
        if value is None:
            raise ArgumentError(f"{flag}: required with --prefill-systems/--decode-systems (both pools)")
    for flag, value in (("--system", args.system), ("--systems", args.systems), ("--replicas", args.replicas)):
        if value is not None:
            raise ArgumentError(f"{flag}: not with --prefill-systems/--decode-systems")
    prefill = [system_with_edits(args, one) for one in args.prefill_systems]
    decode = [system_with_edits(args, one) for one in args.decode_systems]
    result = serve_disaggregated(
        args.model, prefill, decode, _workload(args), link=args.kv_link,
        layerwise_overlap=not args.no_layerwise_overlap, prefill_router=args.router or "round-robin",
        decode_router=args.decode_router or "least-kv",
        requests=args.requests, scheduler=args.scheduler, chunk=args.chunk, max_batch=args.max_batch,
        block_size=args.block_size, memory_utilization=args.memory_utilization, software=args.software,
        precision=args.precision, parallelism=serving_parallelism(args, args.model, [*prefill, *decode])[0],
        seed=args.seed,
        slo_ttft_s=args.slo_ttft, slo_tpot_s=args.slo_tpot, routing=routing_from_args(args),
        time_limit_s=args.time_limit, max_memory_bytes=args.max_memory, progress=not args.quiet and sys.stderr.isatty(),
        speculation=speculation_from_args(args))
    _write_out(args, {"requests": result.requests, "instances": result.instances_table}, result.summary())
    if args.json:
        print_json(result.summary())
    else:
        print(disagg_report(result.summary()))
    return 0


def _write_out(args: argparse.Namespace, tables: dict[str, Any], summary: dict[str, Any]) -> None:
    """With ``--out DIR``, write ``tables`` and ``summary`` there and name the files on stderr."""
    if args.out is None:
        return
    from decodex.sim.serving.tables_out import write_tables

    for path in write_tables(args.out, tables, summary):
        print(f"wrote {path}", file=sys.stderr)


def add_traces_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``traces`` sub-command (list the shipped traces) to ``subparsers`` and return it."""
    p = subparsers.add_parser("traces", help="list the shipped production request traces (serve --trace NAME)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_traces)
    return p


def cmd_traces(args: argparse.Namespace) -> int:
    """Print every shipped trace with its size, rate, length percentiles and license; returns 0."""
    rows = [trace_summary(name) for name in list_traces()]
    if args.json:
        print_json(rows)
        return 0
    print(table(["trace", "requests", "hours", "requests/s", "input mean/p50/p99", "output mean/p50/p99", "license"],
                [[r["trace"], f"{r['requests']:,}", f"{r['duration_s'] / 3600:.2f}", f"{r['mean_rate_per_s']:.2f}",
                  *(f"{r[f'{k}_mean']:.0f}/{r[f'{k}_p50']:.0f}/{r[f'{k}_p99']:.0f}"
                    for k in ("input_tokens", "output_tokens")), r["license"]] for r in rows]))
    print("\nLengths in tokens; replay with 'decodex serve --trace NAME [--rate-scale X] [--trace-window S:D]'.")
    for r in rows:
        print(f"{r['trace']}: {r['description']}.")
    for source, citation in dict.fromkeys((r["source_url"], r["citation"]) for r in rows):
        print(f"source: {source}\ncite: {citation}")
    return 0
