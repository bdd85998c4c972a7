"""Example files shipped with Decodex: sweep spaces (``sweeps/*.toml``), a device what-if
(``devices/*.toml``) and a Hugging Face model config (``models/*.json``).

``decodex examples`` lists them and prints or copies one; the dashboard's Sweep explorer offers
the sweeps. They are data inside the package, so an installed Decodex has them without a checkout.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from decodex.core.errors import ArgumentError

EXAMPLES_DIR = Path(__file__).resolve().parent
SWEEPS_DIR = EXAMPLES_DIR / "sweeps"
# kind -> file pattern under EXAMPLES_DIR
KINDS = {"sweep": "sweeps/*.toml", "device": "devices/*.toml", "model": "models/*.json"}


def list_examples(kind: str | None = "sweep") -> dict[str, Path]:
    """The examples of ``kind`` (``sweep``, ``device``, ``model``; None: all), name (file stem)
    -> path, sorted by name; {} when there are none."""
    if kind is not None and kind not in KINDS:
        raise ArgumentError(f"example kind: {kind!r} not one of {', '.join(KINDS)}")
    patterns = KINDS.values() if kind is None else [KINDS[kind]]
    return dict(sorted((p.stem, p) for pattern in patterns for p in EXAMPLES_DIR.glob(pattern)))


def example_kind(path: Path) -> str:
    """The kind of an example file (``sweep``, ``device`` or ``model``)."""
    return next(kind for kind, pattern in KINDS.items() if path.match(pattern))


def example_description(path: Path) -> str:
    """What an example is: its first comment line (TOML) or its ``_source`` (JSON); '' if none."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        import json

        return str(json.loads(text).get("_source", ""))
    for line in text.splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
        if line.strip():
            break
    return ""


def example_path(name: str) -> Path:
    """The file of the example ``name`` (a stem such as ``h100-batch-context``; the file suffix
    is optional); raises ArgumentError naming the examples that exist."""
    examples = list_examples(None)
    stem = Path(name).stem if name.endswith((".toml", ".json")) else name
    if stem not in examples:
        raise ArgumentError(f"example: no example {name!r}; known: {', '.join(examples) or 'none'}")
    return examples[stem]


def copy_example(name: str, dest: str | Path, overwrite: bool = False) -> Path:
    """Copy the example ``name`` to ``dest`` (a file path, or a folder to copy it into under its
    own file name, which a device file needs: its name must equal its stem); returns the path
    written. An existing file is kept unless ``overwrite`` (ArgumentError instead)."""
    source = example_path(name)
    target = Path(dest)
    if target.is_dir():
        target = target / source.name
    if target.exists() and not overwrite:
        raise ArgumentError(f"example: {target} exists (pass overwrite / --force to replace it)")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target
