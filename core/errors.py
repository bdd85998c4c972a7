"""Error types shared by every Decodex package.

Every error a user can cause (a bad spec file, a bad argument) is a :class:`DecodexError`, whose
message names the file, the field and the allowed range, so that the CLI can print it as one line.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class DecodexError(Exception):
    """Base class for errors caused by input: spec files, model configs, arguments."""


class SpecError(DecodexError):
    """A spec or config file (or an equivalent mapping) holds an invalid field.

    ``source`` is the file path (or a short label such as ``"<dict>"``), ``field`` the dotted
    field path, and ``message`` what is wrong and what is allowed.
    """

    def __init__(self, source: str, field: str, message: str) -> None:
        self.source = source
        self.field = field
        self.message = message
        where = f"{source}: {field}" if field else source
        super().__init__(f"{where}: {message}")


class ArgumentError(DecodexError):
    """A function or CLI argument is outside its allowed range."""


class InfeasibleError(DecodexError):
    """A design point cannot run (e.g. a parallel split that does not divide the model)."""


def did_you_mean(name: object, known: Iterable[object], n: int = 1) -> str:
    """``"did you mean 'a'?"`` (``'a' or 'b'`` for up to ``n`` names) for the known names closest
    to ``name`` (difflib, cutoff 0.6), else ``""``: the hint of every "unknown name" message."""
    close = difflib.get_close_matches(str(name), [str(k) for k in known], n=n, cutoff=0.6)
    return f"did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
