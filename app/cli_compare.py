"""``decodex compare``: several systems on one decode step, the dashboard's Systems-compared table
in the terminal (text, ``--json`` or ``--csv FILE``)."""

from __future__ import annotations

import argparse
import math
from typing import Any

from decodex.app.cli_args import output_file, positive_int, print_json, tp_degree
from decodex.app.cli_serve import system_list
from decodex.app.formatting import si, table

DEFAULT_MODEL = "llama2-7b"  # every seed system has the memory and datapaths for it in fp16
DEFAULT_PRECISION = "fp16"  # the datapath every seed system has (NeuPIMs' PIM is fp16 only)
# one per seed system: GPU baseline, NeuPIMs, Duplex, FlightLLM's U280, Step-3's attention-FFN disaggregation
DEFAULT_SYSTEMS = ("h100-sxm", "neupims", "4x-duplex", "alveo-u280", "step3-2a2f-h800")
REASON_WIDTH = 40  # characters of a row's reason shown in the text table (the JSON and CSV hold it whole)


def add_compare_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``compare`` sub-command to ``subparsers`` and return it."""
    p = subparsers.add_parser("compare", help="several systems on one decode step, side by side")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"catalog name or path to a Hugging Face config.json (default {DEFAULT_MODEL})")
    p.add_argument("--systems", type=system_list, default=list(DEFAULT_SYSTEMS), metavar="A,B,...",
                   help="systems or device cards to compare (default: one per seed system, "
                        f"{','.join(DEFAULT_SYSTEMS)})")
    p.add_argument("--batch", type=positive_int, default=32, help="requests in the decode step (default 32)")
    p.add_argument("--context", type=positive_int, default=1024, help="cached tokens per request (default 1024)")
    p.add_argument("--precision", default=DEFAULT_PRECISION,
                   help=f"precision of every system (default {DEFAULT_PRECISION}: the datapath all seed systems have)")
    p.add_argument("--tp", type=tp_degree, default="auto",
                   help="tensor-parallel degree, or auto (default): the smallest power of two that fits")
    p.add_argument("--json", action="store_true", help="one JSON list: a row per system (SI units)")
    p.add_argument("--csv", type=output_file, default=None, metavar="FILE", help="also write the rows as CSV")
    p.set_defaults(func=cmd_compare)
    return p


def _value(value: float, unit: str, scale: float = 1.0) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else si(value * scale, unit)


def compare_report(rows: list[dict[str, Any]]) -> str:
    """The text table of ``decodex compare`` (SI prefixes, the reason cut to REASON_WIDTH)."""
    body = [[r["system"], r["status"], r["parallelism"] or "-", r["devices"] or "-", r["path"] or "-",
             _value(r["step_time_s"], "s"), _value(r["tokens_per_s"], "tok/s"),
             _value(r["tokens_per_s_per_device"], "tok/s"), _value(r["energy_per_token_j"], "J"),
             "-" if math.isnan(r["usd_per_mtok"]) else f"${r['usd_per_mtok']:.3g}",
             (r["reason"] or "fits")[:REASON_WIDTH]] for r in rows]
    return table(["system", "status", "layout", "devices", "path", "step time", "throughput", "per device",
                  "energy/token", "$/Mtok", "memory fit / reason"], body)


def cmd_compare(args: argparse.Namespace) -> int:
    """Run every system on the step and print the table (or ``--json``); rows that cannot run say why."""
    from decodex.sim.system_comparison import comparison_frame, run_system

    rows = [run_system(args.model, system, args.batch, args.context, args.precision, args.tp)
            for system in args.systems]
    frame = comparison_frame(rows)
    if args.csv is not None:
        frame.to_csv(args.csv, index=False)
    records = frame.to_dict("records")
    if args.json:
        print_json(records)
    else:
        print(f"{args.model}, {args.precision}, batch {args.batch}, context {args.context} tokens; each system with "
              "its default mapper")
        print(compare_report(records))
    return 0
