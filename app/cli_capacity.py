"""``decodex capacity``: the highest request rate a replica serves within latency SLOs, and the
curve of latency percentiles against the rate.

``app.cli.build_parser`` calls :func:`add_capacity_parser`; shared option groups live in
``app.cli_args``, the serving limits in ``app.cli_serve``.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import Any

from decodex.app.cli_args import (
    SEED,
    add_deployment_options,
    add_model_system_options,
    bounded_float,
    bounded_int,
    output_folder,
    positive_int,
    print_json,
    routing_from_args,
)
from decodex.app.cli_layout import serving_parallelism, system_with_edits
from decodex.app.cli_serve import MAX_REQUESTS, RATE_RANGE, system_list
from decodex.app.cli_speculate import add_speculation_options, speculation_from_args
from decodex.app.formatting import si, table
from decodex.core.errors import ArgumentError
from decodex.sim.serving import PRESET_NAMES, SCHEDULERS
from decodex.sim.serving.capacity import DEFAULT_MAX_RUNS, CapacityResult, capacity
from decodex.sim.serving.capacity_runs import SLO_KEYS, parse_slo_text
from decodex.sim.serving.cluster import MAX_REPLICAS, ROUTERS
from decodex.sim.serving.software import DEFAULT_SOFTWARE, list_software
from decodex.sim.serving.traces import list_traces

DEFAULT_CAPACITY_REQUESTS = 1000  # requests per run (a trace's first N)


def slo_spec(text: str) -> dict[str, float]:
    """argparse type: ``KEY=SECONDS[,KEY=SECONDS...]`` with keys from ``SLO_KEYS``."""
    try:
        return parse_slo_text(text)
    except ArgumentError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_capacity_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``capacity`` sub-command to ``subparsers`` (from ``add_subparsers``) and return it."""
    p = subparsers.add_parser("capacity", help="highest request rate that meets latency SLOs (searched by runs)")
    add_model_system_options(p)
    p.add_argument("--slo", type=slo_spec, required=True, metavar="KEY=SECONDS,...",
                   help=f"SLOs in seconds, e.g. ttft_p99=2,tpot_p99=0.1; keys: {', '.join(SLO_KEYS)} "
                        "(sched_delay_p50: the scheduling-delay bound of Sarathi-Serve's capacity search)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--preset", choices=PRESET_NAMES, default=None,
                        help="Poisson arrivals at the searched rate with this length distribution (default sharegpt)")
    source.add_argument("--trace", default=None,
                        help=f"a shipped trace ({', '.join(list_traces())}) or CSV file, replayed at rate_scale = "
                             "rate / its mean rate")
    p.add_argument("--requests", type=bounded_int(1, MAX_REQUESTS), default=DEFAULT_CAPACITY_REQUESTS,
                   help=f"requests per run (a trace's first N; default {DEFAULT_CAPACITY_REQUESTS}); more make runs "
                        "reach steady state at higher rates")
    p.add_argument("--software", default=DEFAULT_SOFTWARE,
                   help=f"serving software: {', '.join(list_software())} or a TOML file (default {DEFAULT_SOFTWARE})")
    p.add_argument("--scheduler", choices=sorted(SCHEDULERS), default=None, help="batching policy (default: "
                                                                                  "the software's)")
    p.add_argument("--max-batch", type=positive_int, default=None, help="most running requests (default: the "
                                                                         "software's)")
    p.add_argument("--chunk", type=positive_int, default=None, help="token budget per iteration of chunked/inflight")
    p.add_argument("--seed", type=SEED, default=0, help="seed of the workload draws, the same for every run "
                                                        "(default 0)")
    add_deployment_options(p)
    p.add_argument("--replicas", type=bounded_int(1, MAX_REPLICAS), default=1, metavar="N",
                   help="N replicas of --system behind --router (default 1)")
    p.add_argument("--router", choices=tuple(ROUTERS), default=None,
                   help="router of --replicas, or of the prefill pool with --decode-systems (default round-robin)")
    p.add_argument("--decode-systems", type=system_list, default=None, metavar="C,D,...",
                   help="prefill-decode disaggregation: --system prefills, one decode instance per listed system")
    p.add_argument("--rate-lo", type=bounded_float(*RATE_RANGE), default=None,
                   help="lower end of the searched rates, requests/s (default: found)")
    p.add_argument("--rate-hi", type=bounded_float(*RATE_RANGE), default=None,
                   help="upper end of the searched rates, requests/s (default: found)")
    p.add_argument("--rel-tol", type=bounded_float(1e-4, 1.0), default=0.02,
                   help="stop when the passing and failing rates are within this fraction (default 0.02)")
    p.add_argument("--max-runs", type=bounded_int(2, 200), default=DEFAULT_MAX_RUNS,
                   help=f"most serving runs (default {DEFAULT_MAX_RUNS})")
    add_speculation_options(p)
    p.add_argument("--out", type=output_folder, default=None, metavar="DIR",
                   help="write curve.csv (and curve.parquet when pyarrow is installed) and capacity.html there")
    p.add_argument("--json", action="store_true", help="one JSON object: the summary and the curve")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress line on stderr")
    p.set_defaults(func=cmd_capacity)
    return p


CURVE_COLUMNS = [("rate", "rate_per_s", ""), ("TTFT p99", "ttft_p99_s", "s"), ("TPOT p99", "tpot_p99_s", "s"),
                 ("E2E p99", "e2e_p99_s", "s"), ("sched p99", "sched_delay_p99_s", "s"),
                 ("tokens/s", "throughput_tokens_per_s", "")]


def capacity_report(result: CapacityResult) -> str:
    """The readable report of ``decodex capacity``: the capacity, the binding SLO, notes, the curve."""
    slo = ", ".join(f"{key} <= {si(value, 's')}" for key, value in result.slo.items())
    head = f"{result.model} on {result.system}, software {result.software}, workload {result.workload}; SLOs {slo}"
    line = f"capacity: {result.capacity_per_s:.4g} requests/s"
    if result.rate_scale is not None and result.trace_mean_rate_per_s is not None:
        line += (f" (trace replayed at {result.rate_scale:.3g}x its mean rate of "
                 f"{result.trace_mean_rate_per_s:.3g} requests/s)")
    if result.binding:
        line += f"; binding: {result.binding}"
    if result.devices and result.capacity_per_s > 0:
        line += f"\nper device: {result.capacity_per_device:.4g} requests/s ({result.devices} devices)"
        if result.usd_per_hour > 0:
            line += (f"; per price: {result.capacity_per_usd_hour:.4g} requests/s per USD/h "
                     f"({result.usd_per_hour:.4g} USD/h)")
    rows = [[f"{r['rate_per_s']:.4g}", *(si(r[c], u) if u else f"{r[c]:,.1f}" for _, c, u in CURVE_COLUMNS[1:]),
             "yes" if r["passes"] else "no", r["steady_reason"]] for r in result.curve.to_dict("records")]
    curve = table([h for h, _, _ in CURVE_COLUMNS] + ["passes", "steady state"], rows)
    notes = [f"note: {n}" for n in result.notes]
    return "\n".join([head, line, *notes, "", curve])


def write_outputs(result: CapacityResult, out: Path) -> list[Path]:
    """Write ``curve.csv``, ``curve.parquet`` (when pyarrow is installed) and ``capacity.html``
    into ``out`` (created); returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "curve.csv"]
    result.curve.to_csv(written[0], index=False)
    if importlib.util.find_spec("pyarrow") is not None:
        written.append(out / "curve.parquet")
        result.curve.to_parquet(written[-1], index=False)
    written.append(out / "capacity.html")
    result.figure().write_html(written[-1], include_plotlyjs="directory")
    return written


def _router(args: argparse.Namespace) -> dict[str, str]:
    """The router argument of the deployment ``--router`` applies to (none for one replica)."""
    if args.router is None:
        return {}
    if args.decode_systems is not None:
        return {"prefill_router": args.router}
    if args.replicas == 1:
        raise ArgumentError("--router: only with --replicas N > 1 or --decode-systems")
    return {"router": args.router}


def _speculation(args: argparse.Namespace) -> dict[str, object]:
    """``speculation=`` for ``capacity`` when ``--speculate`` is given (else nothing)."""
    speculation = speculation_from_args(args)
    return {} if speculation is None else {"speculation": speculation}


def cmd_capacity(args: argparse.Namespace) -> int:
    """Run ``capacity`` with the parsed arguments and print the report (or ``--json``); returns 0."""
    workload = args.trace if args.trace is not None else (args.preset or "sharegpt")
    system = system_with_edits(args, args.system)
    decode = None if args.decode_systems is None else [system_with_edits(args, one) for one in args.decode_systems]
    result = capacity(args.model, system, slo=args.slo, workload=workload, requests=args.requests,
                      software=args.software, seed=args.seed, rate_lo=args.rate_lo, rate_hi=args.rate_hi,
                      rel_tol=args.rel_tol, max_runs=args.max_runs,
                      progress=not (args.quiet or args.json) and sys.stderr.isatty(),
                      scheduler=args.scheduler, max_batch=args.max_batch, chunk=args.chunk, precision=args.precision,
                      parallelism=serving_parallelism(args, args.model, [system, *(decode or [])])[0],
                      routing=routing_from_args(args),
                      replicas=args.replicas, decode_systems=decode, **_router(args), **_speculation(args))
    written = write_outputs(result, args.out) if args.out is not None else []
    if args.json:
        print_json({**result.summary(), "files": [str(p) for p in written],
                    "curve": result.curve.to_dict("records")})
    else:
        print(capacity_report(result))
        if written:
            print(f"\nwritten: {', '.join(str(p) for p in written)}")
    return 0
