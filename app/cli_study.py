"""``decodex study``: simulator studies that write figures (HTML) and tables (CSV)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from decodex.app.cli_args import bounded_float, bounded_int, number_list, output_folder, positive_float, positive_int
from decodex.app.cli_capacity import slo_spec

STUDY_BATCHES = (32, 64, 128, 256, 512)  # requests per decode batch of the interleaving/row-buffer studies


def cmd_study_neupims(args: argparse.Namespace) -> int:
    """Run the NeuPIMs interleaving, row-buffer and design-sweep studies on a small grid (gpt3-7b,
    ShareGPT requests, seed 0) and write ``*.csv`` and ``*.html`` into ``args.out``."""
    from decodex.explore.studies.neupims import (
        interleaving_figure,
        interleaving_gain,
        neupims_sweep,
        row_buffer_figure,
        row_buffer_gain,
        sweep_figure,
    )
    from decodex.workloads.parallelism import Parallelism

    model = args.model
    _status(args, f"study neupims: interleaving and row buffers at {len(STUDY_BATCHES)} batches, an 18-point design "
                  "sweep ...")
    interleave = interleaving_gain(model, STUDY_BATCHES)
    row_buffers = row_buffer_gain(model, STUDY_BATCHES)
    sweep = neupims_sweep(model, multipliers=(4, 8, 16), channels=(16, 32, 64), array_sizes=(64, 128),
                          parallelism=Parallelism(tp=4))
    outputs = {"neupims_interleaving": (interleave, interleaving_figure(interleave)),
               "neupims_row_buffers": (row_buffers, row_buffer_figure(row_buffers)),
               "neupims_sweep": (sweep, sweep_figure(sweep))}
    _write(Path(args.out), outputs)
    return 0


def cmd_study_duplex(args: argparse.Namespace) -> int:
    """Write the Duplex Op/B studies (PIM kinds' speedup over the xPU by Op/B; the Logic-PIM
    bandwidth x MACs window) as ``*.csv`` and ``*.html`` into ``args.out``."""
    from decodex.explore.studies.duplex import opb_curves, opb_figure, opb_window, window_figure

    _status(args, "study duplex: PIM kinds against the xPU by Op/B, and the Logic-PIM window ...")
    curves = opb_curves()
    window = opb_window()
    _write(Path(args.out), {"duplex_opb": (curves, opb_figure(curves)),
                            "duplex_window": (window, window_figure(window))})
    return 0


def cmd_study_flightllm(args: argparse.Namespace) -> int:
    """Write the FlightLLM studies (FPGA vs GPU efficiency sweep, prefill/decode crossover,
    instruction storage with and without length buckets) into ``args.out``."""
    from decodex.explore.studies.flightllm import (
        crossover_figure,
        efficiency_figure,
        efficiency_sweep,
        prefill_decode_crossover,
        storage_table,
    )

    _status(args, "study flightllm: FPGA against GPU by sparsity, bits and DSPs; prefill-decode crossover; "
                  "instruction storage ...")
    sweep = efficiency_sweep()
    crossover = prefill_decode_crossover()
    out = Path(args.out)
    _write(out, {"flightllm_efficiency": (sweep, efficiency_figure(sweep)),
                 "flightllm_crossover": (crossover, crossover_figure(crossover))})
    storage = storage_table()
    storage.to_csv(out / "flightllm_storage.csv", index=False)
    print(f"wrote {out / 'flightllm_storage.csv'}", file=sys.stderr)
    return 0


def cmd_study_afd(args: argparse.Namespace) -> int:
    """Write the attention-FFN disaggregation studies (best AFD layout vs colocated against context;
    against NIC bandwidth, with the break-even; the planner's table for an H800/H20 mix per $)
    into ``args.out``."""
    from decodex.core.run_limits import RunWatch
    from decodex.explore.studies.afd import (
        CONTEXTS,
        NIC_SCALES,
        break_even_scale,
        context_figure,
        context_study,
        nic_figure,
        nic_study,
    )
    from decodex.sim.afd_solver import candidate_layouts, solve_afd

    tpot = args.tpot_ms / 1e3
    watch = RunWatch("study afd", "layout solves", len(CONTEXTS) + len(NIC_SCALES) + 1,
                     progress=not args.quiet and sys.stderr.isatty())
    watch.tick(0)
    try:
        context = context_study(args.model, CONTEXTS, tpot_s=tpot, on_solved=watch.advance)
        nic = nic_study(args.model, NIC_SCALES, tpot_s=tpot, on_solved=watch.advance)
        out = Path(args.out)
        _write(out, {"afd_context": (context, context_figure(context)), "afd_nic": (nic, nic_figure(nic))})
        mix = solve_afd(args.model, context=8192, tpot_s=tpot, objective="tokens_per_usd",
                        layouts=candidate_layouts(devices=("h800", "h20"), attention_instances=(1, 2, 3),
                                                  ffn_instances=(1, 2), microbatches=(2, 3)))
        watch.advance()
    finally:
        watch.close()
    mix.to_csv(out / "afd_mix_per_usd.csv", index=False)
    print(f"wrote {out / 'afd_mix_per_usd.csv'}; NIC break-even: {break_even_scale(nic):.3g}x", file=sys.stderr)
    return 0


def cmd_study_serving(args: argparse.Namespace) -> int:
    """Write the serving capacity study (each deployment's capacity under the SLOs on a trace,
    per device and per USD/hour) as ``serving_capacity.csv`` and ``.html`` into ``args.out`` and
    print the table."""
    from decodex.explore.studies.serving import capacity_figure, capacity_study

    frame = capacity_study(args.model, args.trace, slo=args.slo, requests=args.requests, scheduler=args.scheduler,
                           progress=not args.quiet and sys.stderr.isatty())
    _write(Path(args.out), {"serving_capacity": (frame, capacity_figure(frame))})
    shown = frame[["deployment", "devices", "capacity_per_s", "capacity_per_device", "capacity_per_usd_hour",
                   "binding", "reason"]]
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    return 0


def cmd_study_specdec(args: argparse.Namespace) -> int:
    """Write the speculative decoding study (speedup over plain decode against draft length and
    acceptance on the GPU, Duplex, NeuPIMs and the U280; the best draft length of each; where the
    near-memory and FPGA advantage over the GPU vanishes, by the verify step's Op/B) into ``args.out``
    and print the best draft lengths."""
    from decodex.core.run_limits import RunWatch
    from decodex.explore.studies.specdec import (
        advantage_crossover,
        best_lengths,
        crossover_figure,
        deployments,
        speedup_figure,
        speedup_study,
    )
    from decodex.sim.speculative_draft import Draft

    points = sum(len(deployments(m)) for m in args.models) * len(args.batches) * len(args.contexts)
    watch = RunWatch("study specdec", "points", points, progress=not args.quiet and sys.stderr.isatty())
    watch.tick(0)
    try:
        kwargs = {} if args.draft is None else {"draft": lambda _model: Draft.parse(args.draft)}
        frame = speedup_study(args.models, args.batches, args.contexts, args.lengths, args.acceptances,
                              on_point=watch.advance, **kwargs)
    finally:
        watch.close()
    best, crossover = best_lengths(frame), advantage_crossover(frame)
    out = Path(args.out)
    first_model, batch, context = args.models[0], args.batches[min(1, len(args.batches) - 1)], args.contexts[0]
    acceptance = args.acceptances[len(args.acceptances) // 2]
    _write(out, {"specdec_speedup": (frame, speedup_figure(frame, first_model, batch, context)),
                 "specdec_crossover": (crossover, crossover_figure(frame, first_model, context, acceptance))})
    best.to_csv(out / "specdec_best.csv", index=False)
    print(f"wrote {out / 'specdec_best.csv'}", file=sys.stderr)
    print(best.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    return 0


def _write(out: Path, outputs: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, (frame, figure) in outputs.items():
        frame.to_csv(out / f"{name}.csv", index=False)
        # plotly.min.js is written beside the pages, so they open without internet
        figure.write_html(out / f"{name}.html", include_plotlyjs="directory")
        print(f"wrote {out / name}.csv, {out / name}.html", file=sys.stderr)


def _add_out(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("--out", type=output_folder, default=default, help=f"output folder (default: {default})")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress line on stderr (shown on a terminal)")


def _status(args: argparse.Namespace, text: str) -> None:
    """One line on stderr saying what a study of a few seconds is running (a terminal, not --quiet)."""
    if not args.quiet and sys.stderr.isatty():
        print(text, file=sys.stderr, flush=True)


def add_study_parsers(sub: Any) -> None:
    """Add ``study neupims``, ``duplex``, ``flightllm``, ``afd``, ``serving`` and ``specdec`` to the
    ``decodex`` sub-commands (``sub``: argparse sub-parsers)."""
    p = sub.add_parser("study", help="run a simulator study and write its figures and tables")
    which = p.add_subparsers(dest="study", required=True)
    neupims = which.add_parser("neupims", help="NeuPIMs: sub-batch interleaving, row buffers, PIM/NPU design sweep")
    _add_out(neupims, "study-neupims")
    neupims.add_argument("--model", default="gpt3-7b", help="model (default gpt3-7b)")
    neupims.set_defaults(func=cmd_study_neupims)
    duplex = which.add_parser("duplex", help="Duplex: the Op/B window where each PIM kind beats the xPU")
    _add_out(duplex, "study-duplex")
    duplex.set_defaults(func=cmd_study_duplex)
    flight = which.add_parser("flightllm", help="FlightLLM: FPGA vs GPU by sparsity, bits and DSPs; prefill vs decode; "
                                                "instruction storage")
    _add_out(flight, "study-flightllm")
    flight.set_defaults(func=cmd_study_flightllm)
    afd = which.add_parser("afd", help="AFD: best layout vs colocated by context and NIC bandwidth; H800/H20 mix per $")
    _add_out(afd, "study-afd")
    afd.add_argument("--model", default="step3", help="model (default step3)")
    afd.add_argument("--tpot-ms", type=positive_float, default=50.0, help="TPOT target in ms (default 50)")
    afd.set_defaults(func=cmd_study_afd)
    serving = which.add_parser("serving", help="serving capacity under SLOs on a production trace: H100, H200, "
                                               "Duplex replicas; H100 prefill + H20 or Duplex decode; per GPU and $")
    _add_out(serving, "study-serving")
    serving.add_argument("--model", default="llama3-70b", help="model (default llama3-70b; tp 8 on every instance)")
    serving.add_argument("--trace", default="azure-conv-2023", help="trace name or CSV file (default azure-conv-2023)")
    serving.add_argument("--slo", type=slo_spec, default=None, metavar="KEY=S,...",
                         help="SLOs in seconds (default ttft_p99=2,tpot_p99=0.1)")
    serving.add_argument("--requests", type=positive_int, default=4000, help="requests per run (default 4000)")
    serving.add_argument("--scheduler", default=None, help="batching policy (default: vllm's, continuous)")
    serving.set_defaults(func=cmd_study_serving)
    from decodex.explore.studies.specdec import ACCEPTANCES, BATCHES, CONTEXTS, LENGTHS, MODELS

    spec = which.add_parser("specdec", help="speculative decoding: speedup by draft length and acceptance on the GPU, "
                                            "Duplex, NeuPIMs and the U280; where their advantage vanishes")
    _add_out(spec, "study-specdec")
    spec.add_argument("--models", type=lambda t: [m.strip() for m in t.split(",") if m.strip()],
                      default=list(MODELS), help=f"models, comma-separated (default {','.join(MODELS)})")
    spec.add_argument("--batches", type=number_list(bounded_int(1, 4096)), default=list(BATCHES),
                      help=f"batch sizes (default {','.join(map(str, BATCHES))})")
    spec.add_argument("--contexts", type=number_list(bounded_int(1, 1 << 20)), default=list(CONTEXTS),
                      help=f"context lengths (default {','.join(map(str, CONTEXTS))})")
    spec.add_argument("--lengths", type=number_list(bounded_int(0, 64)), default=list(LENGTHS),
                      help=f"draft lengths k (default {','.join(map(str, LENGTHS))})")
    spec.add_argument("--acceptances", type=number_list(bounded_float(0.0, 1.0)), default=list(ACCEPTANCES),
                      help=f"acceptance rates per drafted token (default {','.join(map(str, ACCEPTANCES))})")
    spec.add_argument("--draft", type=_draft_text, default=None, metavar="DRAFT",
                      help="the draft of every model: free, self:LAYERS[+adapter], heads:HEADS or model:NAME[@SYSTEM] "
                           "(default: a self-draft of each model's first eighth of layers)")
    spec.set_defaults(func=cmd_study_specdec)


def _draft_text(text: str) -> str:
    """argparse type: a draft as ``Draft.parse`` reads it, kept as text (checked here)."""
    from decodex.app.cli_speculate import draft_spec

    draft_spec(text)
    return text

