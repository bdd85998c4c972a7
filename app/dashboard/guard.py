"""One place that turns whatever a page raises into one message, never a traceback.

Every page body runs inside :func:`page_errors` (each view opens with it, so that it holds both
when ``main.py``'s navigation runs the page and when a test runs the view file alone):

- a :class:`DecodexError` (bad input, a point that cannot run, a refused path) is shown as
  ``st.error(message)``, the message naming the field and the allowed range;
- any other exception is a bug: it is shown as ``Internal error: TypeName: message`` plus a line
  asking to report it, and its traceback goes to the server's log only.

Both messages have the server's paths scrubbed (:func:`scrub_paths`): the package directory,
site-packages and the Python installation, the home directory, the working directory, the
sweeps root and the temporary directory are written as short labels; an internal error's
message loses every other absolute path too (down to its last part). Streamlit's own control
flow (``st.stop``, ``st.rerun``, ``st.switch_page``) raises exceptions that are not caught here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import site
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import streamlit as st

from decodex.app.dashboard.untrusted import SWEEPS_ROOT_ENV
from decodex.core.errors import DecodexError

try:  # Streamlit's control-flow exceptions (BaseException in the versions we know; re-raised in any case)
    from streamlit.runtime.scriptrunner_utils.exceptions import ScriptControlException as _Control
except ImportError:  # pragma: no cover - an older layout
    class _Control(BaseException):  # type: ignore[no-redef]
        """Stands in for Streamlit's control-flow exceptions where they cannot be imported."""

PACKAGE_DIR = Path(__file__).resolve().parents[2]
"""The directory of the ``decodex`` package (the repository root)."""
REPORT_HINT = ("This is a bug in Decodex, not a problem with your input: please report it with the steps that "
               "led here (the server's log holds the details).")
MAX_MESSAGE = 500
"""Most characters of an exception's message shown (longer ones are cut)."""
_LOG = logging.getLogger("decodex.dashboard")
_ABSOLUTE = re.compile(r"(?<![\w.:/~<>-])(?:/[^\s/'\"`,;:()\[\]{}<>|]+){2,}/?|\b[A-Za-z]:\\[^\s'\"`,;()<>|]+")


def _roots() -> list[tuple[str, str]]:
    """(server directory, label) pairs to scrub, longest directory first; both the path as given
    and with symlinks resolved. The file system root itself is never one."""
    pairs: list[tuple[str | None, str]] = [(str(PACKAGE_DIR), "<decodex>")]
    with contextlib.suppress(AttributeError):  # a virtualenv without site.getsitepackages
        pairs += [(p, "<python>") for p in site.getsitepackages()]
    pairs += [(site.getusersitepackages(), "<python>")]
    pairs += [(sysconfig.get_paths().get(k), "<python>") for k in ("purelib", "platlib", "stdlib", "platstdlib")]
    pairs += [(sys.prefix, "<python>"), (sys.base_prefix, "<python>"), (sys.exec_prefix, "<python>")]
    pairs += [(os.environ.get(SWEEPS_ROOT_ENV), "<sweeps>")]
    with contextlib.suppress(OSError):
        pairs.append((os.getcwd(), "."))
    pairs += [(tempfile.gettempdir(), "<tmp>"), (str(Path.home()), "~")]
    out: dict[str, str] = {}
    for path, label in pairs:
        if not path:
            continue
        for form in (os.path.abspath(path), os.path.realpath(path)):
            if form not in ("/", "") and len(Path(form).parts) > 1:
                out.setdefault(form.rstrip("/\\"), label)
    return sorted(out.items(), key=lambda item: -len(item[0]))


def scrub_paths(text: str, *, every_absolute: bool = False) -> str:
    """``text`` with the server's directories (module docstring) written as labels (``<decodex>``,
    ``<python>``, ``~``, ``.``, ``<sweeps>``, ``<tmp>``); with ``every_absolute``, any other absolute
    path (two parts or more) is cut to ``.../last-part``."""
    for root, label in _roots():
        text = re.sub(re.escape(root) + r"(?=[/\\\s'\"`,;:)\]}>]|$)", lambda _m, lab=label: lab, text)
    if every_absolute:
        text = _ABSOLUTE.sub(lambda m: ".../" + re.split(r"[/\\]", m.group(0).rstrip("/\\"))[-1], text)
    return text


def _cut(text: str) -> str:
    text = " ".join(text.split())  # one line
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE] + "..."


def user_message(err: BaseException) -> str:
    """What the page shows for a DecodexError (or another error about the user's input): its
    message on one line, server paths scrubbed."""
    return _cut(scrub_paths(str(err)))


def report(err: BaseException, prefix: str = "") -> None:
    """Show an error about the user's input that a page caught itself: ``prefix`` then
    :func:`user_message`, in one ``st.error``."""
    st.error(prefix + user_message(err))


def internal_message(err: BaseException) -> str:
    """What the page shows for an unexpected exception: ``Internal error: TypeName: message``
    (message on one line, every absolute path scrubbed), no traceback."""
    try:
        text = str(err)
    except Exception:  # an exception whose __str__ fails
        text = ""
    text = _cut(scrub_paths(text, every_absolute=True))
    return f"Internal error: {type(err).__name__}" + (f": {text}" if text else "")


def show_error(err: Exception) -> None:
    """Show ``err`` as one message on the page (module docstring); an unexpected one is logged on
    the server with its traceback."""
    if isinstance(err, DecodexError):
        st.error(user_message(err))
        return
    _LOG.error("dashboard page failed", exc_info=err)
    st.error(f"{internal_message(err)}\n\n{REPORT_HINT}")


@contextlib.contextmanager
def page_errors() -> Iterator[None]:
    """Run the block (a page body); an exception it raises ends the page with one message
    (:func:`show_error`) instead of a traceback. Streamlit's control flow passes through."""
    try:
        yield
    except _Control:
        raise
    except Exception as err:  # every error of a page ends in a message; the traceback goes to the log
        if isinstance(err, _Control):  # pragma: no cover - a Streamlit whose control flow is an Exception
            raise
        show_error(err)
