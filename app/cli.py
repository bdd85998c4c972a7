"""The ``decodex`` command line: list the catalogs, estimate a step."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from decodex._version import __version__
from decodex.api import estimate, simulate
from decodex.app.cli_args import (
    add_deployment_options,
    add_model_system_options,
    context_lengths,
    output_file,
    positive_int,
    print_json,
    routing_from_args,
)
from decodex.app.cli_layout import EXIT_DOES_NOT_FIT, resolve_parallelism, system_with_edits
from decodex.app.formatting import si, step_report, table, utilization_report
from decodex.core.dtypes import DType
from decodex.core.errors import DecodexError
from decodex.hw_models.system import list_systems, load_system
from decodex.workloads.catalog import list_models, load_model


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument as one line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.split()[1:]  # "decodex estimate" -> ["estimate"]; "decodex" -> []
        hint = " ".join(["decodex", *command, "--help"])
        self.exit(2, f"decodex: error: {message} (see '{hint}')\n")


def cmd_models(args: argparse.Namespace) -> int:
    rows = []
    for name in list_models():
        m = load_model(name)
        rows.append({"name": name, "model_type": m.model_type, "family": m.family, "layers": m.num_layers,
                     "hidden_size": m.hidden_size, "parameters": m.parameter_count(),
                     "active_parameters": m.parameter_count(active=True),
                     "max_position_embeddings": m.max_position_embeddings})
    if args.json:
        print_json(rows)
    else:
        print(table(["model", "type", "family", "layers", "hidden", "params", "active", "max ctx"],
                    [[r["name"], r["model_type"], r["family"], r["layers"], r["hidden_size"],
                      si(r["parameters"], ""), si(r["active_parameters"], ""), r["max_position_embeddings"]]
                     for r in rows]))
    return 0


DESCRIPTION_WIDTH = 40  # characters of a description in `decodex systems` (--wide: all of it)


def _cut(text: str, width: int | None) -> str:
    """``text`` cut to ``width`` characters with an ellipsis (whole when ``width`` is None)."""
    return text if width is None or len(text) <= width else text[:width - 1] + "…"


def cmd_systems(args: argparse.Namespace) -> int:
    rows = []
    for name in list_systems():
        s = load_system(name)
        d = s.primary_device
        matrix = d.unit_for_role("matrix")
        peak = matrix[0].peak_flops(DType.BF16) if matrix and matrix[0].supports(DType.BF16) else 0.0
        rows.append({"name": name, "description": s.description, "devices": s.device_count,
                     "device": d.name, "default_mapper": s.default_mapper, "bf16_peak_flops": peak,
                     "memory_bandwidth_bytes_per_s": d.main_memory.bandwidth_bytes_per_s,
                     "memory_capacity_bytes": d.capacity_bytes, "usd_per_hour": d.usd_per_hour})
    if args.json:
        print_json(rows)
    else:
        print(table(["system", "devices", "mapper", "bf16 peak", "bandwidth", "memory", "$/h", "description"],
                    [[r["name"], r["devices"], r["default_mapper"],
                      si(r["bf16_peak_flops"], "FLOP/s") if r["bf16_peak_flops"] else "-",
                      si(r["memory_bandwidth_bytes_per_s"], "B/s"), si(r["memory_capacity_bytes"], "B"),
                      f"{r['usd_per_hour']:.2f}", _cut(r["description"], None if args.wide else DESCRIPTION_WIDTH)]
                     for r in rows]))
    return 0


def _step_kwargs(args: argparse.Namespace) -> tuple[Any, dict[str, Any], str]:
    """The system (with the ``--set`` edits), the keyword arguments of ``estimate``/``simulate``
    and the line saying how the layout was chosen (``--tp auto``: :func:`app.cli_layout.resolve_parallelism`)."""
    system = system_with_edits(args, args.system)
    options: dict[str, Any] = {"mapper": args.mapper, "routing": routing_from_args(args)}
    if getattr(args, "microbatches", None):
        options["microbatches"] = args.microbatches
    layout, note = resolve_parallelism(args, args.model, system, args.batch, context=args.context, **options)
    return system, {"context": args.context, "precision": args.precision, "parallelism": layout, **options}, note


def _refused(args: argparse.Namespace, result: Any, note: str) -> int | None:
    """EXIT_DOES_NOT_FIT (the reason on stderr) when the step does not fit and ``--report-unfit``
    was not given; None otherwise."""
    if result.fits or args.report_unfit:
        return None
    print(f"decodex: error: does not fit: {result.reason}; layout {note} (--report-unfit shows its numbers anyway)",
          file=sys.stderr)
    return EXIT_DOES_NOT_FIT


def cmd_estimate(args: argparse.Namespace) -> int:
    system, kwargs, note = _step_kwargs(args)
    result = estimate(args.model, system, args.batch, **kwargs)
    refused = _refused(args, result, note)
    if refused is not None:
        return refused
    if args.json:
        print_json({**result.to_dict(), "layout": note})
    else:
        print(step_report(result, show_ops=args.ops))
        print(f"layout: {note}")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    system, kwargs, note = _step_kwargs(args)
    result = simulate(args.model, system, args.batch, fold=not args.no_fold, **kwargs)
    refused = _refused(args, result, note)
    if refused is not None:
        return refused
    if args.trace:
        result.write_trace(args.trace)
    if args.json:
        print_json({**result.to_dict(), "layout": note})
    else:
        print(step_report(result, show_ops=args.ops))
        print(f"layout: {note}")
        print("\n" + utilization_report(result))
        if args.trace:
            print(f"\ntrace written to {args.trace} (open it in https://ui.perfetto.dev)")
    return 0


def _add_step_options(p: argparse.ArgumentParser) -> None:
    add_model_system_options(p)
    p.add_argument("--batch", type=positive_int, default=1, help="requests in the batch (default 1)")
    p.add_argument("--context", type=context_lengths, default=1024,
                   help="cached tokens per request, or a comma-separated list, one per request (default 1024)")
    add_deployment_options(p)
    p.add_argument("--microbatches", type=positive_int, default=None,
                   help="pipeline micro-batches (gpu mapper; default: pp)")
    p.add_argument("--mapper", default=None, help="mapper (default: the system's)")
    p.add_argument("--ops", action="store_true", help="also list every op")
    p.add_argument("--json", action="store_true", help="one JSON object: summary keys and an 'ops' list")
    p.add_argument("--report-unfit", action="store_true",
                   help=f"show the numbers of a step that does not fit in memory and exit 0 (default: exit "
                        f"{EXIT_DOES_NOT_FIT} with the reason)")


# the sub-commands defined in other modules: (module, function adding their parsers, their names);
# a module is imported only when its parsers are built, so `decodex estimate` does not load serving,
# sweeps or the dashboard's launcher (tests/test_cli_imports.py checks the names against the parser)
ADDERS = (
    ("decodex.app.cli_compare", "add_compare_parser", ("compare",)),
    ("decodex.app.cli_serve", "add_serve_parser", ("serve",)),
    ("decodex.app.cli_serve", "add_traces_parser", ("traces",)),
    ("decodex.app.cli_capacity", "add_capacity_parser", ("capacity",)),
    ("decodex.app.cli_validate", "add_validation_parsers", ("reproduce", "calibrate", "validate")),
    ("decodex.app.cli_study", "add_study_parsers", ("study",)),
    ("decodex.app.cli_speculate", "add_speculate_parser", ("speculate",)),
    ("decodex.app.cli_explore", "add_explore_parsers", ("sweep", "pareto", "sensitivity", "optimize")),
    ("decodex.app.cli_examples", "add_examples_parser", ("examples",)),
    ("decodex.app.cli_app", "add_app_parser", ("app",)),
)
CORE_COMMANDS = ("models", "systems", "estimate", "simulate")
"""The sub-commands defined here."""


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``decodex`` parser with every sub-command, or only with ``command``'s (and the ones
    defined here) when it is given: the other sub-commands' modules are then not imported."""
    parser = _Parser(prog="decodex", description="Decodex: hardware simulator and co-design explorer for LLM decoding.")
    parser.add_argument("--version", action="version", version=f"decodex {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = sub.add_parser("models", help="list the model catalog")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_models)
    p = sub.add_parser("systems", help="list the system catalog")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--wide", action="store_true", help=f"whole descriptions (default: cut at {DESCRIPTION_WIDTH})")
    p.set_defaults(func=cmd_systems)
    p = sub.add_parser("estimate", help="analytical estimate of one decode step")
    _add_step_options(p)
    p.set_defaults(func=cmd_estimate)
    p = sub.add_parser("simulate", help="discrete-event simulation of one decode step")
    _add_step_options(p)
    p.add_argument("--trace", type=output_file, default=None, help="write a Chrome trace-event JSON file (Perfetto)")
    p.add_argument("--no-fold", action="store_true", help="simulate every repetition of repeated layers")
    p.set_defaults(func=cmd_simulate)
    for module, adder, names in ADDERS:
        if command is None or command in names:
            getattr(importlib.import_module(module), adder)(sub)
    return parser


def _known_command(argv: Sequence[str]) -> str | None:
    """The sub-command ``argv`` starts with when it is a known one (None: build the whole parser,
    for ``--help``, ``--version`` or a mistyped command, whose error lists every choice)."""
    if not argv or argv[0] not in CORE_COMMANDS + tuple(n for _, _, names in ADDERS for n in names):
        return None
    return argv[0]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``decodex`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(_known_command(argv)).parse_args(argv)
    if isinstance(getattr(args, "context", None), list) and args.batch not in (1, len(args.context)):
        print(f"decodex: error: --context lists {len(args.context)} lengths but --batch is {args.batch}",
              file=sys.stderr)
        return 2
    if isinstance(getattr(args, "context", None), list):
        args.batch = len(args.context)
    try:
        status = int(args.func(args))
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return status
    except DecodexError as err:
        print(f"decodex: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `decodex ... | head`: the reader left; end quietly
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        print("decodex: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a command whose reader closed the pipe
EXIT_INTERRUPTED = 130  # 128 + SIGINT


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's last flush does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a real file (captured by a test)
        pass
    finally:
        os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
