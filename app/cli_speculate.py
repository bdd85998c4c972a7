"""``decodex speculate``: a speculative decode step against plain decode, for several draft lengths."""

from __future__ import annotations

import argparse
from typing import Any

from decodex.app.cli_args import (
    add_model_system_options,
    bounded_float,
    bounded_int,
    number_list,
    positive_int,
    print_json,
)


def draft_spec(text: str) -> dict[str, Any]:
    """argparse type: ``free``, ``self:LAYERS``, ``heads:HEADS`` or ``model:NAME`` /
    ``model:NAME@SYSTEM`` (the draft model on another system,
    :meth:`~decodex.sim.speculative_draft.Draft.parse`), as Draft fields."""
    from decodex.core.errors import ArgumentError
    from decodex.sim.speculative import Draft

    try:
        draft = Draft.parse(text)
    except ArgumentError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    fields: dict[str, Any] = {"kind": draft.kind}
    if draft.kind == "self":
        fields["layers"] = draft.layers
        if draft.adapter:
            fields["adapter"] = True
    if draft.kind == "heads":
        fields["heads"] = draft.heads
    if draft.kind == "model":
        fields.update(model=draft.model, system=draft.system)
    return fields


def add_speculation_options(p: argparse.ArgumentParser) -> None:
    """``--speculate DRAFT``, ``--draft-length K`` and ``--acceptance P,...`` of a serving command
    (:func:`speculation_from_args` reads them)."""
    p.add_argument("--speculate", type=draft_spec, default=None, metavar="DRAFT",
                   help="speculative decoding: every decode drafts with DRAFT (free, self:LAYERS, heads:HEADS or "
                        "model:NAME[@SYSTEM]) and verifies (with --prefill-systems/--decode-systems: the decode "
                        "instances, a draft model refused)")
    p.add_argument("--draft-length", type=bounded_int(1, 64), default=4, metavar="K",
                   help="tokens drafted per decode with --speculate (default 4; the start of --draft-schedule "
                        "heuristic)")
    p.add_argument("--draft-schedule", choices=("fixed", "heuristic"), default="fixed",
                   help="fixed: K every step; heuristic: each request's length moves as Hugging Face's assisted "
                        "generation moves it (+2 after a whole chain accepted, -1 otherwise) (default fixed)")
    p.add_argument("--max-draft-length", type=bounded_int(1, 64), default=None, metavar="K",
                   help="the heuristic schedule's longest draft (default max(16, --draft-length))")
    p.add_argument("--acceptance", type=number_list(bounded_float(0.0, 1.0)), default=[0.7],
                   help="acceptance probability per drafted position with --speculate, comma-separated; the last "
                        "repeats (default 0.7)")


def speculation_from_args(args: argparse.Namespace) -> Any:
    """The run's Speculation from ``--speculate``/``--draft-length``/``--acceptance`` (None without
    ``--speculate``)."""
    if args.speculate is None:
        return None
    from decodex.sim.serving.speculation import Speculation
    from decodex.sim.speculative import Draft
    from decodex.workloads.acceptance import ChainAcceptance

    return Speculation(Draft(**args.speculate), args.draft_length, ChainAcceptance(tuple(args.acceptance)),
                       schedule=args.draft_schedule, max_draft_length=args.max_draft_length)


def speculation_rows(summary: dict[str, Any]) -> list[list[str]]:
    """The speculative-decoding row of a serving report (none without speculation)."""
    if not summary.get("speculation"):
        return []
    return [["speculation", f"{summary['speculation']}: {summary['tokens_per_decode_step']:.2f} tokens per decode "
                            f"step, {100 * summary['acceptance_rate']:.1f}% of drafted tokens accepted"]]


def cmd_speculate(args: argparse.Namespace) -> int:
    """Print (or write as JSON) one speculative step per draft length, with the plain step's time."""
    from decodex.app.formatting import table
    from decodex.core.errors import ArgumentError
    from decodex.sim.speculative import Draft, estimate_speculative, interleaved_speculative, speculative_parts
    from decodex.workloads.acceptance import ChainAcceptance
    from decodex.workloads.parallelism import Parallelism
    from decodex.workloads.token_tree import TokenTree

    acceptance = ChainAcceptance(tuple(args.acceptance))
    engine = "simulate" if args.simulate else "estimate"
    draft, parallelism, lengths = Draft(**args.draft), Parallelism(tp=args.tp), sorted(set(args.lengths))
    if args.interleave and (args.tree_width != 1 or args.simulate):
        raise ArgumentError("--interleave: a chain (--tree-width 1), estimated (not --simulate)")
    chain = not args.interleave and args.tree_width == 1
    # the chain's steps come from these parts; the other forms take only the plain step from them
    parts = speculative_parts(args.model, args.system, args.batch, context=args.context, draft=draft,
                              lengths=lengths if chain else [0], precision=args.precision, parallelism=parallelism,
                              engine=engine)
    common = dict(context=args.context, draft=draft, precision=args.precision, parallelism=parallelism)
    if chain:
        steps = [parts.step(k, acceptance.expected_accepted(k)) for k in lengths]
    elif args.interleave:  # two sub-batches: one drafts on the other system while the other verifies
        steps = [interleaved_speculative(args.model, args.system, args.batch, draft_length=k, acceptance=acceptance,
                                         **common) if k else parts.step(0, 0.0) for k in lengths]
    else:  # a spine tree per length: k positions, tree_width ranked candidates each
        steps = [estimate_speculative(args.model, args.system, args.batch, draft_length=k * args.tree_width,
                                      acceptance=acceptance.for_ranked_tree(TokenTree.spine(k, args.tree_width)),
                                      engine=engine, **common) if k else parts.step(0, 0.0) for k in lengths]
    rows = [{"draft_length": s.draft_length, "positions": k, "tokens_per_step": s.tokens_per_step,
             "draft_s": s.draft_time_s,
             "verify_s": s.verify.step_time_s, "step_s": s.step_time_s, "time_per_token_s": s.time_per_token_s,
             "tokens_per_s": s.tokens_per_s, "speedup": s.speedup, "verify_op_per_byte": s.verify_intensity,
             "fits": s.fits, "reason": s.reason} for k, s in zip(lengths, steps, strict=True)]
    if args.json:
        print_json({"model": parts.plain.model, "system": parts.plain.system, "batch": args.batch,
                    "engine": engine,
                    "context": args.context, "draft": args.draft, "acceptance": list(acceptance.probs),
                    "tree_width": args.tree_width, "interleave": args.interleave,
                    "plain_step_s": parts.plain.step_time_s, "steps": rows})
        return 0
    how = "simulated" if args.simulate else "estimated"
    print(f"{parts.plain.model} on {parts.plain.system}, batch {args.batch}, context {args.context}: "
          f"plain decode {parts.plain.step_time_s * 1e3:.3f} ms per step ({how})")
    header = ["k" if args.tree_width == 1 else f"k (x {args.tree_width} candidates)", "tokens/step", "draft ms",
              "verify ms", "ms/token", "tokens/s", "speedup", "verify Op/B", "fits"]
    cells = [[r["positions"], f"{r['tokens_per_step']:.2f}", f"{r['draft_s'] * 1e3:.3f}",
              f"{r['verify_s'] * 1e3:.3f}", f"{r['time_per_token_s'] * 1e3:.3f}", f"{r['tokens_per_s']:.4g}",
              f"{r['speedup']:.2f}x", f"{r['verify_op_per_byte']:.1f}", "yes" if r["fits"] else r["reason"]]
             for r in rows]
    print(table(header, cells))
    return 0


def add_speculate_parser(sub: Any) -> None:
    """Add ``speculate`` to the ``decodex`` sub-commands (``sub``: argparse sub-parsers)."""
    p = sub.add_parser("speculate", help="speculative decoding: draft + verify against plain decode, by draft length")
    add_model_system_options(p)
    p.add_argument("--batch", type=bounded_int(1, 1 << 21), default=1, help="requests in the batch (default 1)")
    p.add_argument("--context", type=bounded_int(1, 1 << 22), default=1024,
                   help="cached tokens per request (default 1024)")
    p.add_argument("--precision", default="bf16", help="the target's precision preset (default bf16)")
    p.add_argument("--tp", type=positive_int, default=1, help="the target's tensor-parallel degree (default 1)")
    p.add_argument("--draft", type=draft_spec, default={"kind": "free"},
                   help="free (default), self:LAYERS (the target's first layers; self:LAYERS+adapter with Kangaroo's "
                        "adapter), heads:HEADS (Medusa-style decoding heads) or model:NAME[@SYSTEM]")
    p.add_argument("--lengths", type=number_list(bounded_int(0, 64)), default=[0, 1, 2, 3, 4, 6, 8],
                   help="draft lengths k, comma-separated (default 0,1,2,3,4,6,8)")
    p.add_argument("--acceptance", type=number_list(bounded_float(0.0, 1.0)), default=[0.7],
                   help="acceptance probability per drafted position, comma-separated; the last repeats "
                        "(default 0.7)")
    p.add_argument("--tree-width", type=bounded_int(1, 16), default=1, metavar="W",
                   help="candidates per drafted position: 1 (default) drafts a chain of k; W a tree, the top-1 "
                        "chain of k with W - 1 ranked alternatives at each position (k x W tokens verified)")
    p.add_argument("--interleave", action="store_true",
                   help="with a draft model on another system (model:NAME@SYSTEM): two sub-batches alternate, one "
                        "drafting there while the target verifies the other")
    p.add_argument("--simulate", action="store_true",
                   help="price every step with the discrete-event engine (overlap and contention) instead of the "
                        "analytical estimate")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_speculate)
