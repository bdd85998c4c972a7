"""``decodex examples``: list the example files shipped with Decodex (sweep spaces, a device
what-if, a model config), print or copy one."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from decodex.app.cli_args import print_json
from decodex.app.formatting import table
from decodex.examples import copy_example, example_description, example_kind, example_path, list_examples


def cmd_examples(args: argparse.Namespace) -> int:
    """No name: list the examples. A name: print its text, or copy it to ``--to`` (a file or a
    folder). Returns the exit status."""
    if args.name is None:
        rows = [{"name": name, "kind": example_kind(path), "file": path.name,
                 "description": example_description(path)} for name, path in list_examples(None).items()]
        if args.json:
            print_json(rows)
        else:
            print(table(["example", "kind", "description"],
                        [[r["name"], r["kind"], r["description"][:90]] for r in rows]))
            print("\nprint one: decodex examples NAME; copy one: decodex examples NAME --to PATH")
        return 0
    if args.to is None:
        sys.stdout.write(example_path(args.name).read_text(encoding="utf-8"))
        return 0
    written = copy_example(args.name, args.to, overwrite=args.force)
    print_json({"example": args.name, "path": str(written)}) if args.json else print(f"wrote {written}")
    return 0


def add_examples_parser(sub: Any) -> None:
    """Register ``decodex examples``."""
    p = sub.add_parser("examples",
                       help="list the example files (sweeps, a device what-if, a model config); print or copy one")
    p.add_argument("name", nargs="?", default=None, help="an example's name (omit to list them)")
    p.add_argument("--to", default=None, help="copy the example to this file or folder instead of printing it")
    p.add_argument("--force", action="store_true", help="with --to: replace an existing file")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_examples)
