"""Example files shipped with Decodex: sweep spaces (``sweeps/*.toml``).

``decodex examples`` lists them and copies one to a path; the dashboard's Sweep explorer offers
them. They are data inside the package, so an installed Decodex has them without a checkout.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from decodex.core.errors import ArgumentError

EXAMPLES_DIR = Path(__file__).resolve().parent
SWEEPS_DIR = EXAMPLES_DIR / "sweeps"


def list_examples(directory: Path = SWEEPS_DIR) -> dict[str, Path]:
    """The example sweep spaces, name (file stem) -> path, sorted by name; {} when there are none."""
    if not directory.is_dir():
        return {}
    return {p.stem: p for p in sorted(directory.glob("*.toml"))}


def example_description(path: Path) -> str:
    """The first comment line of an example file, without the ``#`` ('' when it has none)."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
        if line.strip():
            break
    return ""


def example_path(name: str) -> Path:
    """The file of the example ``name`` (a stem such as ``h100-batch-context``, ``.toml`` optional);
    raises ArgumentError naming the examples that exist."""
    examples = list_examples()
    stem = name.removesuffix(".toml")
    if stem not in examples:
        raise ArgumentError(f"example: no example {name!r}; known: {', '.join(examples) or 'none'}")
    return examples[stem]


def copy_example(name: str, dest: str | Path, overwrite: bool = False) -> Path:
    """Copy the example ``name`` to ``dest`` (a file path, or a folder to copy it into, kept
    under its own file name); returns the path written. An existing file is kept unless
    ``overwrite``: ArgumentError instead."""
    source = example_path(name)
    target = Path(dest)
    if target.is_dir():
        target = target / source.name
    if target.exists() and not overwrite:
        raise ArgumentError(f"example: {target} exists (pass overwrite / --force to replace it)")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target
