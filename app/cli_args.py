"""Argument types and option groups shared by the ``decodex`` sub-commands, and JSON output."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from decodex.core.errors import ArgumentError
from decodex.workloads.batch import Routing
from decodex.workloads.precision import PRECISION_PRESETS


def bounded_int(lo: int, hi: int) -> Callable[[str], int]:
    """argparse type factory: an integer in [lo, hi]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{value} outside [{lo}, {hi}]")
        return value

    return parse


positive_int = bounded_int(1, 2**63 - 1)  # argparse type: an integer >= 1


def bounded_float(lo: float, hi: float) -> Callable[[str], float]:
    """argparse type factory: a finite number in [lo, hi]."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not (math.isfinite(value) and lo <= value <= hi):
            raise argparse.ArgumentTypeError(f"{value:g} outside [{lo:g}, {hi:g}]")
        return value

    return parse


def number_list(parse_one: Callable[[str], Any]) -> Callable[[str], list[Any]]:
    """argparse type factory: a comma-separated list, each item parsed (and bounded) by ``parse_one``
    (e.g. ``number_list(bounded_int(1, 64))``: ``1,8,32``)."""

    def parse(text: str) -> list[Any]:
        items = [item.strip() for item in text.split(",")]
        if not text.strip() or any(not item for item in items):
            raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers")
        return [parse_one(item) for item in items]

    return parse


SEED = bounded_int(0, 2**63 - 1)  # numpy.random.default_rng takes non-negative seeds


def port_number(text: str) -> int:
    """argparse type: a TCP port, 1-65535."""
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port (1-65535)")
    return value


def output_file(text: str) -> Path:
    """argparse type: a file to write: not a folder, in a folder that exists (checked before the
    run, so that a long run does not end in a failed write)."""
    path = Path(text)
    if not text or path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder; give a file name")
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r}: the folder {str(path.parent)!r} does not exist")
    return path


def output_folder(text: str) -> Path:
    """argparse type: a folder to write into (created if missing): not an existing file, not
    empty, its parent existing or creatable."""
    path = Path(text)
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path; give a folder name")
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a file, not a folder")
    return path


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{value} must be > 0")
    return value


def fraction(text: str) -> float:
    """argparse type: a number in (0, 1]."""
    value = positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"{value} must be in (0, 1]")
    return value


def byte_size(text: str) -> float:
    """argparse type of ``--max-memory``: bytes with an optional unit (8G, 512M, 1.5GiB)."""
    from decodex.core.run_limits import parse_bytes

    try:
        return parse_bytes(text, "")
    except ArgumentError as err:
        raise argparse.ArgumentTypeError(str(err).strip()) from None


def context_lengths(text: str) -> int | list[int]:
    """argparse type: one context length (tokens cached before the decode step) or a comma-separated
    list, each >= 1 (a decode follows a prompt of at least one token)."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer or a comma-separated list") from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: context lengths must be >= 1 (tokens cached before the decode "
                                         "step; a decode follows a prompt of at least one token)")
    return values[0] if len(values) == 1 else values


def add_model_system_options(p: argparse.ArgumentParser) -> None:
    """``--model`` and ``--system``."""
    p.add_argument("--model", required=True, help="catalog name or path to a Hugging Face config.json")
    p.add_argument("--system", required=True, help="catalog name or path to a system/device TOML file")


def _what_if(text: str) -> tuple[str, object]:
    from decodex.app.cli_layout import what_if_value  # the layout module imports this one

    return what_if_value(text)


def tp_degree(text: str) -> int | str:
    """argparse type: ``auto`` or a tensor-parallel degree (an integer >= 1)."""
    if text.strip().lower() == "auto":
        return "auto"
    return positive_int(text)


def add_deployment_options(p: argparse.ArgumentParser) -> None:
    """``--precision``, ``--tp``, ``--pp``, ``--ep``, ``--routing``, ``--skew``, ``--routing-seed``."""
    p.add_argument("--precision", default="bf16",
                   help=f"preset ({', '.join(PRECISION_PRESETS)}) or w=..,a=..,kv=..[,sparsity=N:M]")
    p.add_argument("--tp", type=tp_degree, default="auto",
                   help="tensor-parallel degree, or auto (default): the smallest layout (tp, then tp x pp) at which "
                        "the model fits, at most the system's devices")
    p.add_argument("--pp", type=positive_int, default=None, help="pipeline stages (default 1, or chosen by --tp auto)")
    p.add_argument("--ep", type=positive_int, default=1, help="expert-parallel degree (divides tp)")
    p.add_argument("--routing", choices=("uniform", "zipf"), default="uniform",
                   help="how MoE tokens pick experts: uniform, or Zipf-skewed popularity (default uniform)")
    p.add_argument("--skew", type=bounded_float(0.0, 10.0), default=1.0,
                   help="Zipf exponent of --routing zipf (0..10, default 1.0)")
    p.add_argument("--routing-seed", type=SEED, default=0, help="seed of the routing draws (default 0)")
    p.add_argument("--set", action="append", type=_what_if, default=None, metavar="FIELD=VALUE",
                   help="a what-if edit of the system's spec files, as a sweep's spec.FIELD: e.g. "
                        "hbm.bandwidth@scale=2, tensor.peak_flops.bf16=2e15, system.devices[0].count=4 (repeatable)")


def routing_from_args(args: argparse.Namespace) -> Routing:
    """The :class:`Routing` of ``--routing``, ``--skew`` and ``--routing-seed``."""
    return Routing(args.routing, skew=args.skew, seed=args.routing_seed)


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def _clean(value: Any) -> Any:
    """Replace NaN/inf by None so that the output is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def print_json(data: Any) -> None:
    """Print ``data`` as indented strict JSON (NaN and inf become null)."""
    print(json.dumps(_clean(data), indent=2, default=_json_default))
