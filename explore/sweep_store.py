"""A sweep's output directory: its identity, Parquet part files written as points finish, and a summary.

Files (every one written to a temporary name and renamed, so each is whole or absent):

- ``DIR/sweep.json``: the manifest, written before the first part. It holds the directory's
  identity (:func:`explore.sweep_identity.sweep_identity`: the space's content, i.e. fixed settings, axes, sampling with
  its sample count and seed; the mode; the Decodex version) and the current constraints;
- ``DIR/space.json``: the declared space (what ``load_space`` reads);
- ``DIR/parts/part-NNNNNN-XXXXXXXX.parquet``: the rows;
- ``DIR/summary.json``: what was run and how far it got.

Rerunning a sweep into the same directory skips the points whose ``point_id`` is already in a part,
but only when the directory's identity equals the run's (:meth:`SweepStore.prepare`): an
interrupted sweep loses at most the points in flight and never duplicates one, and rows of
another mode, space or Decodex version are never reused. A mismatch raises
:class:`SweepDirError` saying what differs, unless the run asks to start fresh, which removes
only the files listed above.

Constraints are not part of the identity (:mod:`explore.sweep_identity`): :meth:`SweepStore.read`
applies the manifest's constraints to the raw rows, so a rerun with other constraints reuses every
row. A directory written before the manifest existed is readable but refused for runs (``--fresh``).

Faults (docs/explore.md, "Faults, locks and limits"):

- a run holds ``DIR/.lock`` (:meth:`SweepStore.lock`: ``flock``, released by the kernel even when
  the holder crashes; the holder's pid written in it); a second run into the same directory is
  refused at once naming that pid. Reading never locks and never writes;
- a part that cannot be read as Parquet (truncated, garbage), lacks ``point_id`` or holds points
  of another space is skipped and reported (a :class:`SweepPartWarning`, and
  :attr:`SweepStore.problems`); a run holding the lock moves it to ``parts/corrupt/`` and
  recomputes its points;
- a write that fails (full disk, read-only or forbidden directory) removes its temporary file and
  raises :class:`SweepDirError` naming the directory and the system's reason; a locked run also
  removes temporaries left by a killed run;
- rows whose ``reason`` starts with :data:`RETRY_REASON` (a worker process that died, a chunk
  whose result never came back) are written but not counted as finished, so a rerun retries
  them; the rerun's row replaces the old one.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import re
import uuid
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from decodex.core.errors import DecodexError
from decodex.explore.optimize import Constraint
from decodex.explore.sweep_identity import (
    apply_constraints,
    constraints_from_data,
    constraints_to_data,
    identity_difference,
    jsonable,
    plain,
)

PARTS = "parts"
MANIFEST = "sweep.json"
MANIFEST_FORMAT = 1
OWN_FILES = (MANIFEST, "space.json", "summary.json")  # besides the parts: what ``clear`` may remove
LOCK = ".lock"  # held (flock) by the run writing the directory; holds its pid
CORRUPT = "corrupt"  # parts/corrupt/: parts a locked run set aside (unreadable or of another space)
RETRY_REASON = "worker failure: "  # rows with this reason are rerun on resume (not finished)
_PART_NAME = re.compile(r"part-(\d+)-")
_NOT_WRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)

try:
    import fcntl
except ImportError:  # not POSIX: runs are not locked
    fcntl = None  # type: ignore[assignment]


class SweepDirError(DecodexError, ValueError):
    """A sweep directory holds another sweep, old rows or a bad manifest, is locked, or cannot be written."""


class SweepDirReadOnlyError(SweepDirError):
    """A sweep directory cannot be written (read-only file system, no permission): it can only be
    read. ``reason``: the system's words (:func:`os_reason`)."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


class SweepPartWarning(UserWarning):
    """A part file was skipped (unreadable, no ``point_id``, another space's)."""


def os_reason(err: OSError) -> str:
    """An OSError in words, e.g. 'No space left on device [ENOSPC]'."""
    name = errno.errorcode.get(err.errno or 0, "")
    text = err.strerror or str(err) or type(err).__name__
    return f"{text} [{name}]" if name else text


def _write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (the one place the store writes file content)."""
    with open(path, "wb") as handle:
        handle.write(data)


class SweepStore:
    """The files of one sweep directory (module docstring)."""

    def __init__(self, directory: str | Path) -> None:
        """The sweep directory ``directory``; nothing is created or written until a run takes the
        lock (:meth:`lock`) and writes."""
        self.directory = Path(directory)
        self.parts = self.directory / PARTS
        self.problems: list[str] = []  # one line per part skipped or set aside (SweepPartWarning)
        self._lock_fd: int | None = None
        self._reported: set[str] = set()

    @property
    def locked(self) -> bool:
        """Whether this store holds the directory's lock (then bad parts are moved aside)."""
        return self._lock_fd is not None

    def part_files(self) -> list[Path]:
        """The finished part files, in the order they were written."""
        try:
            return sorted(self.parts.glob("part-*.parquet"), key=_part_order)
        except OSError:
            return []

    def _error(self, action: str, err: OSError) -> SweepDirError:
        """One line naming the directory, what failed and the system's reason."""
        reason = os_reason(err)
        if err.errno == errno.ENOSPC or err.errno == errno.EDQUOT:
            fix = "free some space and rerun to resume, or use another --out"
        elif err.errno in _NOT_WRITABLE:
            fix = "make it writable or use another --out"
        else:
            fix = "check the directory or use another --out"
        message = f"{self.directory}: cannot {action} ({reason}): {fix}"
        if err.errno in _NOT_WRITABLE:
            return SweepDirReadOnlyError(message, reason)
        return SweepDirError(message)

    def _mkdir(self, path: Path) -> None:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise SweepDirError(f"{self.directory}: {path} is a file, not a folder: use another --out") from None
        except OSError as err:
            raise self._error(f"create {path}", err) from None

    @contextlib.contextmanager
    def lock(self) -> Iterator[SweepStore]:
        """Hold ``DIR/.lock`` while writing (creates the directory). Raises :class:`SweepDirError`
        at once when another run (named by its pid) holds it, :class:`SweepDirReadOnlyError` when the
        directory cannot be written. Temporaries left by a killed run are removed once held. The
        kernel releases the lock when the holder exits, even when it crashes."""
        self._mkdir(self.directory)
        path = self.directory / LOCK
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as err:
            raise self._error(f"create the lock file {LOCK}", err) from None
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                holder = _read_pid(fd)
                os.close(fd)
                if err.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                    raise self._error(f"lock {LOCK}", err) from None
                raise SweepDirError(f"{self.directory} is in use: another run (pid {holder}) holds {path}; "
                                    "wait for it to end or use another --out") from None
        with contextlib.suppress(OSError):  # the pid is for the message of a refused run only
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd
        try:
            self._remove_temporaries()
            yield self
        finally:
            self._lock_fd = None
            with contextlib.suppress(OSError):
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _temporaries(self) -> list[Path]:
        own = [*self.parts.glob("part-*.tmp")] if self.parts.is_dir() else []
        return own + [(self.directory / name).with_suffix(".tmp") for name in OWN_FILES]

    def _remove_temporaries(self) -> None:
        for path in self._temporaries():
            if path.is_file() and not path.is_symlink():
                with contextlib.suppress(OSError):
                    path.unlink()

    def manifest(self) -> dict[str, Any]:
        """The manifest ``DIR/sweep.json`` ({} when absent: a new directory or an older Decodex's;
        ValueError when it is not JSON)."""
        return self.read_json(MANIFEST)

    def constraints(self) -> tuple[Constraint, ...]:
        """The constraints the manifest says to apply to the rows (none without a manifest);
        SweepDirError when the manifest cannot be read."""
        try:
            manifest = self.manifest()
            return constraints_from_data(manifest.get("constraints", []) if isinstance(manifest, dict) else [])
        except (KeyError, TypeError, ValueError) as err:
            raise SweepDirError(f"{self.directory / MANIFEST} is unreadable ({err}): rerun the sweep with "
                                "--fresh (fresh=True)") from None

    def prepare(self, identity: Mapping[str, Any], constraints: Sequence[Constraint], *,
                fresh: bool = False, name: str = "") -> None:
        """Make the directory hold the sweep ``identity`` (:func:`sweep_identity`) with ``constraints``.

        With ``fresh`` the sweep's own files are removed first (:meth:`clear`). Otherwise finished
        parts are kept when the manifest's identity equals ``identity``; a different identity, or
        parts without a manifest (an older Decodex), raise :class:`SweepDirError` naming the
        difference. A directory without finished parts is simply (re)started. The manifest is
        then written (atomically) with ``constraints``, which :meth:`read` applies.
        """
        if fresh:
            self.clear()
        self._mkdir(self.parts)
        if self.part_files():
            fix = "use another --out or --fresh (fresh=True) to start over"
            try:
                held: Any = self.manifest()
            except (OSError, ValueError):
                held = None
            if held == {}:
                raise SweepDirError(f"{self.directory} holds parts written by an older Decodex (no {MANIFEST}), "
                                    f"so their mode and constraints are unknown: {fix}")
            if (not isinstance(held, dict) or held.get("format") != MANIFEST_FORMAT
                    or not isinstance(held.get("identity"), dict)):
                raise SweepDirError(f"{self.directory}: {MANIFEST} is not a manifest this Decodex reads "
                                    f"(format {MANIFEST_FORMAT}): {fix}")
            difference = identity_difference(held["identity"], identity)
            if difference:
                raise SweepDirError(f"{self.directory} {difference}: {fix}")
        self.write_json(MANIFEST, {"format": MANIFEST_FORMAT, "name": name,
                                   "identity": plain(dict(identity)),
                                   "constraints": constraints_to_data(constraints)})

    def clear(self) -> list[Path]:
        """Remove the files this sweep writes (parts, their temporaries, the manifest, space and
        summary, and their temporaries); anything else in the directory is left. Returns the
        removed paths."""
        removed: list[Path] = []
        own = [*self.part_files(), *self._temporaries(), *(self.directory / name for name in OWN_FILES)]
        for path in own:
            if path.is_file() and not path.is_symlink():
                try:
                    path.unlink()
                except OSError as err:
                    raise self._error(f"remove {path.name}", err) from None
                removed.append(path)
        return removed

    def _report(self, path: Path, problem: str) -> None:
        """Skip the part ``path``, saying why (once per store): one line in :attr:`problems` and a
        :class:`SweepPartWarning`. A run holding the lock moves it to ``parts/corrupt/``."""
        if str(path) in self._reported:
            return
        self._reported.add(str(path))
        if self.locked:
            target = self.parts / CORRUPT / path.name
            try:
                target.parent.mkdir(exist_ok=True)
                os.replace(path, target)
                outcome = f"moved to {PARTS}/{CORRUPT}/; its points are recomputed"
            except OSError as err:
                outcome = f"skipped (not moved aside: {os_reason(err)}); its points are recomputed"
        else:
            outcome = "skipped; a run into this directory recomputes its points"
        message = f"{path}: {problem}; {outcome}"
        self.problems.append(message)
        warnings.warn(message, SweepPartWarning, stacklevel=3)

    def _part_ids(self, path: Path, ids: Mapping[str, Any] | None) -> list[str] | None:
        """The part's ``point_id`` values; None (reported) when it cannot be read, has no
        ``point_id`` or, with ``ids``, holds a point not in ``ids``."""
        try:
            if "point_id" not in pq.read_schema(path).names:
                self._report(path, "has no point_id column")
                return None
            values = pq.read_table(path, columns=["point_id"]).column("point_id").to_pylist()
        except Exception as err:  # ArrowInvalid, OSError...: any unreadable part is reported
            self._report(path, _unreadable(err))
            return None
        if not all(isinstance(v, str) for v in values):
            self._report(path, "has no point_id column of text")
            return None
        if ids is not None and any(v not in ids for v in values):
            self._report(path, "holds points of another space (a point_id not in this sweep)")
            return None
        return values

    def finished_ids(self, ids: Iterable[str] | None = None) -> set[str]:
        """``point_id`` of every point already written (rows whose reason starts with
        :data:`RETRY_REASON` excepted: a rerun retries them). Parts that cannot be read, lack
        ``point_id`` or (with ``ids``, the space's point ids) hold another space's points are
        skipped and reported (moved aside when this store holds the lock)."""
        known = dict.fromkeys(ids) if ids is not None else None
        done: set[str] = set()
        for path in self.part_files():
            values = self._part_ids(path, known)
            if values is None:
                continue
            try:
                schema = pq.read_schema(path)
                reasons = (pq.read_table(path, columns=["reason"]).column("reason").to_pylist()
                           if "reason" in schema.names else [None] * len(values))
            except Exception as err:  # any unreadable part is reported, not fatal
                self._report(path, _unreadable(err))
                continue
            done.update(v for v, r in zip(values, reasons, strict=False)
                        if not (isinstance(r, str) and r.startswith(RETRY_REASON)))
        return done

    def _next_number(self) -> int:
        numbers = [int(m.group(1)) for p in self.part_files() if (m := _PART_NAME.match(p.name))]
        return max(numbers, default=-1) + 1

    def write_part(self, rows: Sequence[Mapping[str, Any]]) -> Path | None:
        """Write ``rows`` as one part file (atomically); None when there are none. SweepDirError
        (no temporary left behind) when it cannot be written."""
        if not rows:
            return None
        self._mkdir(self.parts)
        final = self.parts / f"part-{self._next_number():06d}-{uuid.uuid4().hex[:8]}.parquet"
        frame = pd.DataFrame(list(rows))
        for column in frame.columns:  # mixed-type inputs (e.g. a spec value) as text
            if frame[column].dtype == object and frame[column].map(type).nunique() > 1:
                frame[column] = frame[column].astype(str)
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        self._write_atomically(final, buffer.getvalue())
        return final

    def _write_atomically(self, path: Path, data: bytes) -> None:
        """``data`` to a temporary file renamed to ``path``: the file is whole or absent; on an
        OSError the temporary is removed and SweepDirError names the directory and the reason."""
        temporary = path.with_suffix(".tmp")
        try:
            _write_bytes(temporary, data)
            os.replace(temporary, path)
        except OSError as err:
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)
            raise self._error(f"write {path.relative_to(self.directory)}", err) from None

    def read(self, ids: Iterable[str] | None = None,
             constraints: Sequence[Constraint] | None = None) -> pd.DataFrame:
        """All rows written (only those whose ``point_id`` is in ``ids``, in that order, when given),
        with ``constraints`` applied (default: the manifest's; rows of a directory without a
        manifest are returned as written). Writes nothing unless this store holds the lock; parts
        that cannot be read are skipped and reported (:attr:`problems`, :class:`SweepPartWarning`).
        A point written twice (a retried failure) reads as its latest row."""
        order = {pid: i for i, pid in enumerate(ids)} if ids is not None else None
        frames = []
        for path in self.part_files():
            if self._part_ids(path, order) is None:
                continue
            try:
                frame = pd.read_parquet(path)
            except Exception as err:  # any unreadable part is reported, not fatal
                self._report(path, _unreadable(err))
                continue
            if not frame.empty:
                frames.append(frame)
        if not frames:
            return pd.DataFrame()
        frame = pd.concat(frames, ignore_index=True).drop_duplicates("point_id", keep="last")
        if order is not None:
            frame = frame[frame["point_id"].isin(order)]
            frame = (frame.assign(_order=frame["point_id"].map(order)).sort_values("_order", kind="stable")
                     .drop(columns="_order"))
        frame = frame.reset_index(drop=True)
        return apply_constraints(frame, self.constraints() if constraints is None else constraints)

    def read_json(self, name: str) -> dict[str, Any]:
        """The JSON file ``DIR/name`` ({} when absent)."""
        path = self.directory / name
        return json.loads(path.read_text()) if path.is_file() else {}

    def write_json(self, name: str, data: Mapping[str, Any]) -> Path:
        """Write ``data`` as ``DIR/name`` (atomically)."""
        path = self.directory / name
        self._write_atomically(path, (json.dumps(data, indent=2, default=jsonable) + "\n").encode())
        return path


def _unreadable(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"is not a readable Parquet file ({type(err).__name__}: {text[:200]})"


def _part_order(path: Path) -> tuple[int, str]:
    """Parts in the order they were written: by their number, then name."""
    match = _PART_NAME.match(path.name)
    return (int(match.group(1)) if match else -1, path.name)


def _read_pid(fd: int) -> str:
    """The pid written in a lock file ('unknown' when it cannot be read)."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return "unknown"
    return text if text.isdigit() else "unknown"
