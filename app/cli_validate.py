"""``decodex calibrate``, ``decodex validate`` and ``decodex reproduce``."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from decodex.app.cli_args import output_file, print_json
from decodex.app.formatting import table
from decodex.core.errors import DecodexError

SUMMARY_JSON_HELP = "{device: {op_kind: {mape, max_error, n}}}"


def cmd_reproduce_list(args: argparse.Namespace) -> int:
    """``reproduce --list``: the shipped targets (name, group, value, tolerance, source), none run."""
    from decodex.validation.reproduce import load_targets

    targets = load_targets()
    if args.json:
        print_json([{"name": t.name, "group": t.group, "description": t.description, "value": t.value,
                     "unit": t.unit, "tolerance": t.tolerance, "absolute": t.absolute, "kind": t.kind,
                     "reason": t.reason, "source": t.source} for t in targets])
    else:
        print(table(["target", "group", "paper/measured", "tolerance", "kind"],
                    [[t.name, t.group, f"{t.value:.4g} {t.unit}",
                      f"±{t.tolerance:g} {t.unit}" if t.absolute else f"±{100 * t.tolerance:.0f}%", t.kind]
                     for t in targets]))
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    if args.list:
        return cmd_reproduce_list(args)
    from decodex.core.run_limits import RunWatch
    from decodex.validation.reproduce import load_targets, reproduce

    total = sum(args.name in ("all", t.name, t.group) for t in load_targets())
    watch = RunWatch("reproduce", "targets", total, progress=not (args.quiet or args.json) and sys.stderr.isatty())
    try:
        results = reproduce(args.name, on_target=lambda done, _: watch.tick(done))
    finally:
        watch.close()
    if args.json:
        print_json([r.to_dict() for r in results])
    else:
        rows = [[r.name, f"{r.target:.4g} {r.unit}", f"{r.simulated:.4g} {r.unit}",
                 f"{r.error:+.3g} {r.unit}" if r.absolute else f"{100 * r.error:+.1f}%",
                 f"±{r.tolerance:g} {r.unit}" if r.absolute else f"±{100 * r.tolerance:.0f}%",
                 r.verdict] for r in results]
        print(table(["target", "paper/measured", "simulated", "error", "tolerance", "result"], rows))
        for r in results:
            if r.reported:
                print(f"reported, not a target: {r.name}: {r.reason}")
    return 0 if all(r.ok for r in results) else 1


def cmd_calibrate_host(args: argparse.Namespace) -> int:
    from decodex.validation.host import calibrate_host, host_spec_toml

    spec = calibrate_host(quick=args.quick)
    text = host_spec_toml(spec)
    out = Path(args.out) if args.out else None
    if out is None:
        print(text, end="")
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out}", file=sys.stderr)
    return 0


def _report(summary: dict[str, Any], as_json: bool, written: Iterable[Path | None] = ()) -> int:
    """Name each written record on stderr, print the error summary (a table, or JSON); returns 0."""
    for path in written:
        if path is not None:
            print(f"wrote {path}", file=sys.stderr)
    if as_json:
        print_json(summary)
        return 0
    rows = [[device, kind, f"{100 * s['mape']:.1f}%", f"{100 * s['max_error']:.1f}%", s["n"]]
            for device, kinds in summary.items() for kind, s in kinds.items()]
    print(table(["device", "op kind", "MAPE", "max error", "n"], rows))
    return 0


def cmd_validate_external(args: argparse.Namespace) -> int:
    from decodex.validation.external import data_available, fit_gpu_efficiency, run_external, write_external_records

    if not data_available(args.data):
        print("decodex: error: validation data not found (set DECODEX_VALIDATION_DATA or --data to the "
              "vidur-profiling folder)", file=sys.stderr)
        return 2
    if args.fit:
        fit = fit_gpu_efficiency(args.data, write=True)
        print(f"fitted on the A100 rows; wrote the GPU specs and validation/fits/gpu_efficiency.json "
              f"(objective {fit.get('objective', 'n/a')})", file=sys.stderr)
    if not (args.quiet or args.json) and sys.stderr.isatty():  # one vectorized pass: a line, not a bar
        print("validate external: pricing Vidur's operator and NCCL rows with the catalog specs ...", file=sys.stderr,
              flush=True)
    frame, summary = run_external(args.data, sample=args.sample)
    return _report(summary, args.json, write_external_records(frame) if args.write else ())


def _published_rows(title: str, summary: Mapping[str, Any], groups: Sequence[str]) -> str:
    rows = [[group, key, f"{s['mape']:.1%}", f"{s['median_error']:+.1%}", f"{s['max_abs_error']:.0%}", s["n"]]
            for group in ("all", *groups)
            for key, s in ({"": summary["all"]} if group == "all" else summary[group]).items()]
    return title + "\n" + table(["group", "", "MAPE", "median error", "max |error|", "n"], rows)


def cmd_validate_published(args: argparse.Namespace) -> int:
    """Compare predictions with the published GPU measurements shipped with Decodex."""
    from decodex.validation.published_gpu import (
        PUBLISHED_GROUPS,
        fit_decode_attention,
        load_attention_rows,
        validate_published,
    )

    groups = tuple(args.only.split(",")) if args.only else PUBLISHED_GROUPS
    if args.fit:
        from decodex.validation.published_decode import fit_decode_fields, load_gpt_fast_rows

        rows = load_attention_rows()
        fitted = fit_decode_attention(rows[rows["split"] == "fit"])
        print("a100-80g [units.tensor.decode_attention] fitted on the fit rows (odd batch): "
              + ", ".join(f"{k} = {v:.4g}" for k, v in fitted.items()), file=sys.stderr)
        factors = fit_decode_fields(load_gpt_fast_rows())
        print("a100-80g [units.tensor.weight_only_efficiency] fitted on the gpt-fast Llama-2-7B rows: "
              + ", ".join(f"{k} = {v:.4g}" for k, v in factors.items()), file=sys.stderr)
    quiet = args.json or args.quiet
    tables, summary = validate_published(groups=groups, progress=None if quiet else (
        lambda group: print(f"validate published: {group} ...", file=sys.stderr)))
    if args.fit and "serving" in groups:
        from decodex.validation.published_serving import fit_host_overhead

        host = fit_host_overhead(tables["serving"])
        print("trtllm iteration_host_overhead_s / request_host_overhead_s fitted on the fit rows: "
              + ", ".join(f"{k} = {v:.4g}" for k, v in host.items()), file=sys.stderr)
    if args.json:
        print_json(summary)
        return 0
    blocks = []
    if "attention" in summary:
        blocks.append(_published_rows("A100 decode attention (Vidur profiles; error = predicted / measured - 1; fit "
                                      "rows: odd batch)", summary["attention"], ("by_split", "by_band", "by_model")))
    if "decode" in summary:
        blocks.append(_published_rows("Batch-1 decode tokens/s (gpt-fast, A100; fit rows: Llama-2-7B int8/int4)",
                                      summary["decode"], ("by_split", "by_gpus", "by_precision", "by_allreduce")))
    if "serving" in summary:
        blocks.append(_published_rows("Serving throughput (TensorRT-LLM 0.17 table; fit rows: alternate length pairs)",
                                      summary["serving"], ("by_split", "by_gpu", "by_model", "by_memory_tight")))
        for row in summary["serving"]["not_run"]:
            blocks.append(f"not run: {row}")
    print("\n\n".join(blocks))
    return 0


def cmd_validate_neupims_artifact(args: argparse.Namespace) -> int:
    """Compare NeuPIMs' four configurations with the artifact's own per-layer cycles."""
    from decodex.validation.neupims_artifact import artifact_summary, compare_artifact

    compared = compare_artifact()
    if args.json:
        print_json({"rows": compared.to_dict(orient="records"), "summary": artifact_summary(compared)})
        return 0
    rows = [[r.config, r.batch, f"{r.artifact_cycles:,.0f}", f"{r.decodex_cycles:,.0f}", f"{r.error:+.0%}",
             *(f"{getattr(r, key + '_error'):+.0%}" for key in ("QKVgen", "proj", "fc1", "fc2", "attention"))]
            for r in compared.itertuples(index=False)]
    print("GPT3-7B TP4, one decoder layer, cycles at 1 GHz (casys-kaist/NeuPIMs artifact runs; error = Decodex / "
          "artifact - 1)")
    print(table(["configuration", "batch", "artifact", "Decodex", "error", "QKV", "proj", "fc1", "fc2", "attention"],
                rows))
    return 0


def cmd_validate_cpu(args: argparse.Namespace) -> int:
    from decodex.hw_models.device import device_from_dict, read_device_toml
    from decodex.validation.kernel_validation import validate_cpu
    from decodex.validation.kernels import CPU_CASES

    device = device_from_dict(read_device_toml(args.spec), args.spec) if args.spec else None
    cases = CPU_CASES[: args.cases] if args.cases else CPU_CASES
    with _case_watch("validate cpu", len(cases), args) as on_row:
        _, summary, path = validate_cpu(device, cases, quick=args.quick, write=not args.no_write, on_row=on_row)
    return _report(summary, args.json, [path])


@contextlib.contextmanager
def _case_watch(what: str, total: int, args: argparse.Namespace) -> Iterator[Callable[[dict[str, Any]], None]]:
    """A per-case callback drawing a progress line on stderr (on a terminal; not with --quiet or --json)."""
    from decodex.core.run_limits import RunWatch

    watch = RunWatch(what, "kernel cases", total, progress=not (args.quiet or args.json) and sys.stderr.isatty())
    try:
        yield lambda row: watch.advance()
    finally:
        watch.close()


def cmd_validate_gpu(args: argparse.Namespace) -> int:
    if args.fit:
        return _fit_vector_unit(args)
    from decodex.validation.kernel_validation import validate_gpu
    from decodex.validation.kernels import GPU_CASES

    # without numba-cuda or a GPU this raises NoGpuError, a DecodexError: main prints one line, status 2
    with _case_watch("validate gpu", len(GPU_CASES), args) as on_row:
        _, summary, path = validate_gpu(args.spec, write=not args.no_write, on_row=on_row)
    copy = None if args.json else next(iter(summary.values())).pop("copy_bandwidth_bytes_per_s", None)
    _report(summary, args.json, [path])
    if copy:
        print(f"device-to-device copy: {copy / 1e9:.0f} GB/s (read + write)")
    return 0


def _fit_vector_unit(args: argparse.Namespace) -> int:
    """``validate gpu --fit RECORD``: refit the vector unit on a committed kernel record (no GPU)."""
    from decodex.validation.vector_fit import fit_vector_unit, write_vector_fit

    result = fit_vector_unit(args.fit, args.spec)
    path = write_vector_fit(result) if args.write else None
    if args.json:
        print_json({**result, "written": str(path) if path else None})
        return 0
    print(f"{result['device']} {result['unit']} unit fitted on the fit half of {result['record']} "
          f"({result['fit']['fitted']['rows']} rows; {result['check']['fitted']['rows']} checked), spec -> fitted:")
    for label in ("fit", "check"):
        before, after = result[label]["spec"], result[label]["fitted"]
        print(f"  {label:<5} half: MAPE {before['mape']:.1%} -> {after['mape']:.1%}, worst "
              f"{before['worst_error']:+.0%} -> {after['worst_error']:+.0%}")
    values = ", ".join(f"{v:.3g}" for v in result["curve"]["values"])
    sizes = ", ".join(f"{s:.0e}" for s in result["curve"]["sizes"])
    print(f"  efficiency at {sizes} FLOP: {values}; op overhead {result['overhead_s'] * 1e6:.2f} us")
    print(f"  written to {path}" if path else "  (no file changed; --write writes the device TOML)")
    return 0


def cmd_validate_e2e(args: argparse.Namespace) -> int:
    """Compare the committed end-to-end GPU decode steps with ``estimate``."""
    from decodex.validation.e2e_decode import attention_fit_trial, compare_e2e, e2e_summary, load_e2e_records

    records = load_e2e_records(device=args.device)
    if records.empty:
        raise DecodexError(f"no end-to-end records{' for ' + args.device if args.device else ''} under "
                           "validation/records/; a GPU session writes them (python -m decodex.validation.gpu_session)")
    compared = compare_e2e(records)
    summary = e2e_summary(compared)
    trial = attention_fit_trial(records, device=str(records["device"].iloc[0])) if args.fit_trial else None
    if args.csv:
        compared.to_csv(args.csv, index=False)
    if args.write_docs:
        from decodex.validation.e2e_report import write_docs

        write_docs(compared)
    if args.json:
        print_json({"rows": compared.to_dict(orient="records"), "summary": summary,
                    "skipped": records.loc[records["skipped"] != "", ["model", "batch", "context", "skipped"]]
                    .to_dict(orient="records"), **({"attention_fit_trial": trial} if trial else {})})
        return 0
    rows = [[r.model, r.batch, f"{r.context:,}", f"{r.measured_s * 1e3:.2f}", f"{r.predicted_s * 1e3:.2f}",
             f"{r.error:+.1%}", f"{r.attention_error:+.0%}", f"{r.projections_error:+.0%}",
             f"{r.measured_rest_s * 1e3:.2f} / {r.predicted_rest_s * 1e3:.2f}"] for r in compared.itertuples()]
    gpu = records["gpu_name"].iloc[0] or records["device"].iloc[0]
    print(f"One decode step on {gpu} (PyTorch, bf16, CUDA graph) against estimate on {records['device'].iloc[0]}; "
          "error = predicted / measured - 1; no field was fitted on these rows")
    print(table(["model", "batch", "context", "measured ms", "predicted ms", "error", "attention", "projections",
                 "rest ms meas./pred."], rows))
    step, attention, projections = summary["step"], summary["attention"], summary["projections"]
    print(f"\nstep: MAPE {step['mape']:.1%}, worst {step['max_error']:.1%} over {step['n']} points; attention part "
          f"MAPE {attention['mape']:.1%}; projections part MAPE {projections['mape']:.1%}")
    for r in records[records["skipped"] != ""].itertuples():
        print(f"not run: {r.model} batch {r.batch} context {r.context}: {r.skipped}")
    if trial:
        print("\ndecode-attention kernel fields fitted on the attention part (fit half -> check half):")
        for name, fit in trial.items():
            print(f"  {name}: fit MAPE {fit['fit_mape']:.1%}, check MAPE {fit['check_mape']:.1%}")
    return 0


def add_validation_parsers(sub: Any) -> None:
    """Add ``calibrate``, ``validate`` and ``reproduce`` to the ``decodex`` sub-commands."""
    p = sub.add_parser("reproduce", help="re-derive the seed papers' headline results and compare")
    p.add_argument("name", nargs="?", default="all", help="a target or group name (default: all)")
    p.add_argument("--list", action="store_true", help="list the shipped targets and their sources; run none")
    p.add_argument("--json", action="store_true", help="a list of {name, target, simulated, unit, error, "
                                                       "tolerance, passed}")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress line on stderr (shown on a terminal)")
    p.set_defaults(func=cmd_reproduce)
    p = sub.add_parser("calibrate", help="measure a machine's spec with microbenchmarks")
    what = p.add_subparsers(dest="what", required=True)
    host = what.add_parser("host", help="this CPU: BLAS peak, copy bandwidth, kernel overhead")
    host.add_argument("--out", type=output_file, default=None, help="write the device TOML here (default: print it)")
    host.add_argument("--quick", action="store_true", help="smaller, faster microbenchmarks")
    host.set_defaults(func=cmd_calibrate_host)
    p = sub.add_parser("validate", help="compare predictions with measurements")
    which = p.add_subparsers(dest="which", required=True)
    ext = which.add_parser("external", help="GPU specs against Vidur's measured operator and NCCL timings")
    ext.add_argument("--data", default=None, help="the vidur-profiling folder (default: $DECODEX_VALIDATION_DATA, "
                                                  "else the Vidur data shipped with Decodex)")
    ext.add_argument("--sample", type=int, default=None, help="rows per (GPU, kind), seeded (default: all)")
    ext.add_argument("--fit", action="store_true", help="refit the GPU efficiency fields on the A100 rows first")
    ext.add_argument("--write", action="store_true", help="write the comparison as records (validation/records/)")
    ext.add_argument("--json", action="store_true", help=SUMMARY_JSON_HELP)
    ext.add_argument("--quiet", "-q", action="store_true", help="no status line on stderr (shown on a terminal)")
    ext.set_defaults(func=cmd_validate_external)
    published = which.add_parser("published", help="GPU predictions against published measurements (A100 decode "
                                                   "attention kernels, gpt-fast batch-1 decode, TensorRT-LLM "
                                                   "serving throughput)")
    published.add_argument("--fit", action="store_true", help="also refit, on the fit rows only, the A100 decode-"
                                                              "attention kernel and weight-only fields and the "
                                                              "trtllm host times, and print them (no file is changed)")
    published.add_argument("--only", default=None, help="comma-separated groups: attention, decode, serving "
                                                        "(default: all; serving runs for minutes)")
    published.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    published.add_argument("--json", action="store_true", help=SUMMARY_JSON_HELP)
    published.set_defaults(func=cmd_validate_published)
    neupims = which.add_parser("neupims-artifact", help="NeuPIMs' four configurations against the per-layer cycles "
                                                        "of its own artifact (GPT3-7B TP4, batch 64/256/512)")
    neupims.add_argument("--json", action="store_true", help="the rows and the summary as JSON")
    neupims.set_defaults(func=cmd_validate_neupims_artifact)
    cpu = which.add_parser("cpu", help="time the Numba CPU kernels here and compare with the host spec")
    cpu.add_argument("--spec", default=None, help="host device TOML (default: calibrate this host now)")
    cpu.add_argument("--quick", action="store_true", help="quick calibration")
    cpu.add_argument("--cases", type=int, default=None, help="run only the first N cases")
    _add_record_options(cpu)
    cpu.set_defaults(func=cmd_validate_cpu)
    e2e = which.add_parser("e2e", help="the committed end-to-end GPU decode steps (PyTorch, records/<gpu>/e2e-*) "
                                       "against estimate")
    e2e.add_argument("--device", default=None, help="only this device's records (default: all)")
    e2e.add_argument("--csv", type=output_file, default=None, help="also write the compared rows here")
    e2e.add_argument("--fit-trial", action="store_true", help="also fit the decode-attention kernel fields on "
                                                              "half the rows and check them on the other (no file "
                                                              "is changed)")
    e2e.add_argument("--write-docs", action="store_true", help="rewrite docs/validation-gpu.md's table and "
                                                               "docs/validation-gpu.svg (from a checkout)")
    e2e.add_argument("--json", action="store_true", help="the rows, the summary and the points not run as JSON")
    e2e.set_defaults(func=cmd_validate_e2e)
    gpu = which.add_parser("gpu", help="time the Numba CUDA kernels on this GPU and compare with its spec")
    gpu.add_argument("--spec", default=None, help="catalog device (default: picked from the GPU's name)")
    gpu.add_argument("--fit", default=None, metavar="RECORD",
                     help="time nothing: refit the vector unit on this committed kernel record "
                          "(validation/records/<device>/gpu-*.csv), fit half / check half")
    gpu.add_argument("--write", action="store_true", help="with --fit: write the fitted fields into the device TOML")
    _add_record_options(gpu)
    gpu.set_defaults(func=cmd_validate_gpu)


def _add_record_options(parser: argparse.ArgumentParser) -> None:
    """The options every kernel-timing validation shares: --no-write and --json."""
    parser.add_argument("--no-write", action="store_true", help="do not write a record")
    parser.add_argument("--json", action="store_true", help=SUMMARY_JSON_HELP)
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress line on stderr (shown on a terminal)")
