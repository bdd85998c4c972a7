"""Error bands: how far a prediction may be from a measurement, from the committed records.

For each (device, op kind) the records give the signed relative errors e = predicted/measured
- 1 of the validated cases. An op predicted at t was then measured in [t / (1 + e95), t / (1 +
e5)] for 90 % of the validated cases; a step's band adds its ops' bands (errors assumed to go
the same way: a conservative band). A device without records of its own borrows those of the
devices of its kind (flagged); an op kind without records, a dtype or a size outside what was
validated adds a warning.

An op kind without records is never given a zero-width band: it takes the widest band of the
kinds that are validated there (the lowest 5 % and the highest 95 % error quantile among them),
and with no records at all :data:`UNVALIDATED_ERROR` (measured within a factor 2 of the
prediction either way); the warning says which.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from decodex.sim.results import StepResult

if TYPE_CHECKING:
    import pandas as pd
from decodex.validation import records as _records  # its write count, read at every band
from decodex.validation.records import RECORDS_DIR, load_band_columns, relative_errors

# records that are not bands of estimate's ops: `decodex validate gpu` times Numba kernels on a
# GPU's CUDA cores and predicts them on its vector unit, whereas estimate prices a GPU's matmuls and
# attention on the tensor unit (cuBLAS, FlashAttention); those records are read by the Validation
# page and `validate gpu` alone. (A CPU's kernel records stay: there estimate uses the same unit.)
NOT_FOR_BANDS = ("gpu",)
# external records name their kinds after the measured operators
KIND_ALIASES = {"gemm": "matmul", "all_reduce": "collective", "send_recv": "collective", "all_gather": "collective"}
# an op kind priced like another when it has no records of its own
FALLBACK_KIND = {"moe_experts": "matmul"}
LOW_Q, HIGH_Q = 0.05, 0.95
# (e_low, e_high) of an op with no records anywhere: an assumption, not a measurement: a roofline
# model unchecked on a device is taken to be within a factor 2 either way (measured in [t/2, 2t]);
# for comparison, the A100 decode-attention roofline before its kernel model erred by -72 %..+28 %
# (docs/validation-published.md)
UNVALIDATED_ERROR = (-0.5, 1.0)


@dataclass(frozen=True)
class KindBand:
    """Error quantiles and validated ranges of one (device, op kind)."""

    e_low: float
    e_high: float
    mape: float
    n: int
    dtypes: frozenset[str]
    flops_range: tuple[float, float]
    bytes_range: tuple[float, float]


class ErrorBand(NamedTuple):
    """A step's band: the measured step time should lie in [low_s, high_s]; ``covered`` is the
    share of the predicted time whose op kinds have records; ``source`` the records used (a named
    tuple, as :class:`OpForBand`: one per estimate)."""

    low_s: float
    high_s: float
    covered: float
    source: str
    warnings: tuple[str, ...]


class OpForBand(NamedTuple):
    """What the band needs of one op: kind, dtype, size and its predicted time per step (a named
    tuple: one per op of every estimate, built several times faster than a frozen dataclass)."""

    kind: str
    dtype: str
    flops: float
    bytes: float
    time_s: float


def _bands(cases: Mapping[str, np.ndarray]) -> dict[str, KindBand]:
    """The band of each op kind among ``cases`` (columns ``op_kind``, ``dtype``, ``flops``,
    ``bytes``, ``measured_s``, ``predicted_s``)."""
    out: dict[str, KindBand] = {}
    for kind in sorted(set(cases["op_kind"])):
        mask = cases["op_kind"] == kind
        errors = relative_errors(cases["measured_s"][mask], cases["predicted_s"][mask])
        errors = errors[np.isfinite(errors)]
        if errors.size == 0:
            continue
        flops, nbytes = cases["flops"][mask], cases["bytes"][mask]
        out[str(kind)] = KindBand(
            e_low=float(np.quantile(errors, LOW_Q)), e_high=float(np.quantile(errors, HIGH_Q)),
            mape=float(np.mean(np.abs(errors))), n=int(errors.size),
            dtypes=frozenset(str(d) for d in cases["dtype"][mask] if d),
            flops_range=(float(np.nanmin(flops)), float(np.nanmax(flops))),
            bytes_range=(float(np.nanmin(nbytes)), float(np.nanmax(nbytes))))
    return out


def _columns(records: pd.DataFrame | Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The band columns of a records frame or of :func:`validation.records.load_band_columns`'s
    columns: op kinds under their estimate names, a missing dtype as ``""``, a missing device kind
    as ``gpu``, the cases of ``NOT_FOR_BANDS`` records left out."""
    n = len(records["op_kind"])

    def column(key: str, default: Any) -> np.ndarray:
        values = records[key] if key in records else [default] * n
        return np.array([default if v is None or (isinstance(v, float) and v != v) or v == "" else v
                         for v in values], dtype=object)

    kinds = np.array([KIND_ALIASES.get(str(k), str(k)) for k in records["op_kind"]], dtype=object)
    out = {"op_kind": kinds, "dtype": column("dtype", ""), "device": column("device", ""),
           "device_kind": column("device_kind", "gpu"), "kind": column("kind", ""),
           **{key: np.asarray(records[key], dtype=float) for key in ("flops", "bytes", "measured_s", "predicted_s")}}
    keep = ~np.isin(out["kind"], NOT_FOR_BANDS)  # SIMT kernel records check the vector unit, not estimate's
    return {key: values[keep] for key, values in out.items()}


class BandTable:
    """Bands per device (and per device kind, pooled) from the record cases: a records frame
    (:func:`validation.records.load_records`) or columns (:func:`validation.records.load_band_columns`,
    no pandas); both give the same table."""

    def __init__(self, records: pd.DataFrame | Mapping[str, Any]) -> None:
        cases = _columns(records)

        def part(key: str, value: str) -> dict[str, np.ndarray]:
            mask = cases[key] == value
            return {name: values[mask] for name, values in cases.items()}

        devices, device_kinds = sorted(set(cases["device"])), sorted(set(cases["device_kind"]))
        self.by_device = {str(d): _bands(part("device", d)) for d in devices}
        self.by_kind = {str(k): _bands(part("device_kind", k)) for k in device_kinds}
        self.devices_of_kind = {str(k): sorted(map(str, set(part("device_kind", k)["device"]))) for k in device_kinds}
        self._widest = {id(bands): (min(b.e_low for b in bands.values()), max(b.e_high for b in bands.values()))
                        for bands in (*self.by_device.values(), *self.by_kind.values()) if bands}
        self._lookup = {id(bands): _lookup(bands) for bands in (*self.by_device.values(), *self.by_kind.values())}

    def step_band(self, device: str, device_kind: str, ops: Iterable[OpForBand | tuple[str, str, float, float, float]]
                  ) -> ErrorBand:
        """The band of a step made of ``ops`` on ``device`` (see module docstring): OpForBands or
        plain tuples of their fields (kind, dtype, FLOP, B, s per step)."""
        warnings: list[str] = []
        bands = self.by_device.get(device)
        source = f"records of {device}"
        if not bands:
            bands = self.by_kind.get(device_kind, {})
            others = self.devices_of_kind.get(device_kind, [])
            source = f"records of other {device_kind} devices ({', '.join(others)})" if others else "no records"
            warnings.append(f"no validation records for {device}; band from {source}" if others
                            else f"no validation records for {device} or any {device_kind}")
        low = high = covered = total = 0.0
        unvalidated: dict[str, float] = {}
        if bands:  # an unvalidated kind is no better than the worst validated one
            wide_low, wide_high = self._widest[id(bands)]
            wide_why = "band: the widest of the validated kinds"
        else:
            (wide_low, wide_high), wide_why = UNVALIDATED_ERROR, "band: a factor 2 either way, nothing validated"
        lookup = self._lookup[id(bands)] if bands else {}
        for op_kind, dtype, flops, nbytes, time_s in ops:
            total += time_s
            found = lookup.get(op_kind)
            if found is None:
                low += time_s / (1.0 + wide_high)
                high += time_s / (1.0 + wide_low)
                unvalidated[op_kind] = unvalidated.get(op_kind, 0.0) + time_s
                continue
            covered += time_s
            to_low, to_high, dtypes, flops_low, flops_high, bytes_low, bytes_high = found
            low += time_s / to_low
            high += time_s / to_high
            if op_kind != "collective" and dtype not in dtypes:
                warnings.append(f"{op_kind} in {dtype}: validated only in {', '.join(sorted(dtypes))}")
            if flops > 0 and not flops_low <= flops <= flops_high:
                warnings.append(f"{op_kind} of {flops:.3g} FLOP outside the validated "
                                f"{flops_low:.3g}-{flops_high:.3g} FLOP")
            if nbytes > 0 and not bytes_low <= nbytes <= bytes_high:
                warnings.append(f"{op_kind} of {nbytes:.3g} B outside the validated "
                                f"{bytes_low:.3g}-{bytes_high:.3g} B")
        for kind, seconds in unvalidated.items():
            share = seconds / total if total > 0 else 0.0
            warnings.append(f"{kind} unvalidated on {device} ({100 * share:.0f}% of the step time; {wide_why})")
        return ErrorBand(low, high, covered / total if total > 0 else 0.0, source,
                         tuple(dict.fromkeys(warnings)))


BandLookup = tuple[float, float, frozenset[str], float, float, float, float]


def _lookup(bands: Mapping[str, KindBand]) -> dict[str, BandLookup]:
    """What :meth:`BandTable.step_band` reads of the band of each op kind it may meet, fallback
    kinds (:data:`FALLBACK_KIND`) resolved: the divisors of the step time for the low and high ends
    (1 + e_high, 1 + e_low), the validated dtypes and the FLOP and byte ranges."""
    kinds = {**{kind: bands[base] for kind, base in FALLBACK_KIND.items() if kind not in bands and base in bands},
             **bands}
    return {kind: (1.0 + band.e_high, 1.0 + band.e_low, band.dtypes, *band.flops_range, *band.bytes_range)
            for kind, band in kinds.items()}


@lru_cache(maxsize=4)
def _table(root: str, stamp: tuple[int, ...]) -> BandTable:
    del stamp  # part of the cache key only: new records are read again
    return BandTable(load_band_columns(Path(root)))


RECORDS_RECHECK_S = 1.0  # s; how often band_table reads the records' folder times again (no stat in between)


def records_stamp(root: Path) -> tuple[int, ...]:
    """Modification times (ns) of ``root`` and of its device folders: a record written, renamed
    or removed changes its folder's (records are written by an atomic rename,
    :func:`validation.records.write_record`); a few stat calls, no listing of the files (the
    device folders are listed again only when the root's own time changes)."""
    key = str(root)
    try:
        root_mtime = os.stat(key).st_mtime_ns
        listed = _DEVICE_FOLDERS.get(key)
        if listed is None or listed[0] != root_mtime:  # a folder added, renamed or removed: list again
            with os.scandir(key) as entries:
                listed = (root_mtime, tuple(e.path for e in entries if e.is_dir()))
            _DEVICE_FOLDERS[key] = listed
        return (root_mtime, *sorted(os.stat(folder).st_mtime_ns for folder in listed[1]))
    except FileNotFoundError:
        return ()


_DEVICE_FOLDERS: dict[str, tuple[int, tuple[str, ...]]] = {}  # root -> (its mtime, its device folders)
_CHECKED: dict[str, tuple[int, float, BandTable]] = {}  # root -> (records written then, when checked, its table)


def band_table(root: Path = RECORDS_DIR) -> BandTable:
    """The band table of the records under ``root``, read again only when a record is added,
    replaced or removed (:func:`records_stamp`). A record written by this process
    (:func:`validation.records.write_record`, ``decodex validate``) is seen at once; one written by
    another process, or copied in by hand, within :data:`RECORDS_RECHECK_S`: between two checks
    no file is looked at (a cached estimate takes about 0.07 ms; the folders' stat calls were a
    tenth of it, and more after other work has cooled the CPU's caches)."""
    key = str(root)
    written, now = _records.records_written, time.monotonic()
    checked = _CHECKED.get(key)
    if checked is not None and checked[0] == written and now - checked[1] < RECORDS_RECHECK_S:
        return checked[2]
    table = _table(key, records_stamp(root))
    _CHECKED[key] = (written, now, table)
    return table


def attach_band(result: StepResult, table: BandTable | None = None) -> StepResult:
    """``result`` with its error band and warnings from the validation records (default: the
    committed ones, :func:`band_table`). The band of an analytical result adds its ops' bands
    (module docstring); a discrete-event result (with ``analytical_step_time_s``) takes the band
    of its analytical ops scaled by engine time / analytical time. Times in s."""
    ops = ((r.kind, r.dtype, r.flops, r.bytes, r.time_s * r.repeat) for r in result.records)  # OpForBand's fields
    band = (table or band_table()).step_band(result.device, result.device_kind, ops)
    analytical = getattr(result, "analytical_step_time_s", result.step_time_s)
    scale = result.step_time_s / analytical if analytical > 0 else 1.0
    return result.with_fields(band_low_s=band.low_s * scale, band_high_s=band.high_s * scale,
                              band_source=band.source, warnings=band.warnings)
