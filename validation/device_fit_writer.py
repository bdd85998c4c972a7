"""Writing fitted GPU values into a device TOML file's text, keeping every other line and comment.

Only the fitted keys are replaced (or inserted: ``tile_m``, ``overlap_exponent``,
``collective_overhead_s``); each written line's comment names the fit (:data:`FIT_TAG`), the
transfer rule and the old value (``was: ...``), so that a second write leaves the file unchanged.
Values: times in s, curve sizes in FLOP or bytes, efficiencies as fractions.
"""

from __future__ import annotations

import re
from pathlib import Path

from decodex.hw_models.efficiency import EfficiencyCurve
from decodex.validation.gpu_fit import ANCHORS, SIG_DIGITS, TILE_M_CANDIDATES, GpuFit

FIT_TAG = "fitted on vidur-profiling A100 rows (validation/fits/gpu_efficiency.json, decodex validate external --fit)"

_HEADER = re.compile(r"^\s*\[([^\[\]]+)\]\s*(#.*)?$")
_KEY = re.compile(r"^(?P<key>\s*[\w.]+)\s*=\s*(?P<value>[^#]*?)\s*(#\s*(?P<comment>.*))?$")


def _span(lines: list[str], table: str) -> tuple[int, int] | None:
    """Line range of a table's key lines: after its header, up to the last key before the next header."""
    start = next((i for i, line in enumerate(lines)
                  if (m := _HEADER.match(line)) and m.group(1).strip() == table), None)
    if start is None:
        return None
    end = next((j for j in range(start + 1, len(lines)) if _HEADER.match(lines[j])), len(lines))
    while end > start + 1 and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")):
        end -= 1
    return start + 1, end


KERNEL_FIT_PREFIX = "fitted on the fit half of this GPU's own kernel record"


def kernel_fit_tag(record: str) -> str:
    """The comment tag of a vector unit fitted on its GPU's own kernel record (``validation.vector_fit``)."""
    return f"{KERNEL_FIT_PREFIX} validation/records/{record} (decodex validate gpu --fit)"


def _was(value: str, comment: str | None, tag: str = FIT_TAG) -> str:
    """The old value for a fitted line's comment (kept from an earlier fit's comment)."""
    if comment and tag in comment and "was: " in comment:
        return comment.split("was: ", 1)[1]
    return f"{value} ({comment})" if comment else value


def _line(key: str, value: str, comment: str) -> str:
    text = f"{key} = {value}"
    return f"{text:<34} # {comment}"


def _set_key(lines: list[str], table: str, key: str, value: str, note: str, after: str | None = None,
             tag: str = FIT_TAG) -> None:
    span = _span(lines, table)
    if span is None:
        raise KeyError(f"no [{table}] table")
    start, end = span
    for i in range(start, end):
        m = _KEY.match(lines[i])
        if m and m.group("key").strip() == key:
            was = _was(m.group("value"), m.group("comment"), tag)
            lines[i] = _line(key, value, f"{tag}; {note}; was: {was}")
            return
    at = end
    if after is not None:
        at = next((i + 1 for i in range(start, end) if (m := _KEY.match(lines[i])) and m.group("key").strip() == after),
                  end)
    lines.insert(at, _line(key, value, f"{tag}; {note}; was: absent"))


def _set_curve(lines: list[str], table: str, curve: EfficiencyCurve, unit: str, note: str,
               tag: str = FIT_TAG) -> None:
    span = _span(lines, table)
    if span is None:
        raise KeyError(f"no [{table}] table")
    start, end = span
    was = "absent"
    body = []
    for i in range(start, end):
        m = _KEY.match(lines[i])
        if m is None:
            body.append(lines[i])
            continue
        if m.group("key").strip() in ("value", "sizes"):
            was = _was(f"{m.group('key').strip()} = {m.group('value')}", m.group("comment"), tag)
    sizes = ", ".join(_number(s) for s in curve.sizes)
    values = ", ".join(f"{v:.{SIG_DIGITS}g}" for v in curve.values)
    new = [_line("sizes", f"[{sizes}]", f"{unit}; {tag}; was: {was}"),
           _line("values", f"[{values}]", f"{tag}; {note}")]
    lines[start:end] = [*new, *body]


def _fitted_on_own_kernels(lines: list[str], table: str) -> bool:
    """Whether ``table``'s lines were written by a fit on the GPU's own kernel record."""
    span = _span(lines, table)
    return span is not None and any(KERNEL_FIT_PREFIX in lines[i] for i in range(*span))


def write_unit_fit(path: Path, table: str, curve: EfficiencyCurve, overhead_s: float, tag: str, note: str) -> None:
    """Write one roofline unit's fitted efficiency curve (over FLOP) and op overhead (s) into the
    device TOML file at ``path`` (``table``: e.g. ``units.simt``), keeping every other line; the
    comments carry ``tag``, ``note`` and the old values."""
    lines = path.read_text().splitlines()
    _set_key(lines, table, "op_overhead_s", _number(overhead_s), "s, kernel time floor", tag=tag)
    _set_curve(lines, f"{table}.efficiency", curve, "FLOP", note, tag=tag)
    path.write_text("\n".join(lines) + "\n")


def _number(x: float) -> str:
    """A float as TOML text in E notation, e.g. 3.162e6."""
    if x == 0:
        return "0.0"
    mantissa, exponent = f"{x:.{SIG_DIGITS - 1}e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    if "." not in mantissa:
        mantissa += ".0"
    return f"{mantissa}e{int(exponent)}"


def write_device_fit(path: Path, fit: GpuFit) -> None:
    """Write ``fit``'s values (times in s, curves over FLOP or bytes) into the device TOML file at
    ``path``, replacing only the fitted keys and keeping every other line and comment; each fitted
    line's comment names the fit and the old value."""
    lines = path.read_text().splitlines()
    name = path.stem
    anchor, base = ANCHORS.get(name), ANCHORS["a100-80g"]
    scale_t = f"x {anchor.tensor:g}/{base.tensor:g} (this device's pre-fit large-size efficiency / A100's)" \
        if anchor and name != "a100-80g" else "as fitted"
    scale_m = f"x {anchor.hbm:g}/{base.hbm:g} (this device's pre-fit large-size efficiency / A100's)" \
        if anchor and name != "a100-80g" else "as fitted"
    _set_key(lines, "units.tensor", "op_overhead_s", _number(fit.tensor_overhead_s), "s, kernel time floor")
    _set_key(lines, "units.tensor", "tile_m", str(fit.tile_m),
             f"tile quantization of matmul rows (NVIDIA Matrix Multiplication Background User's Guide, 3.1); "
             f"best of {'/'.join(map(str, TILE_M_CANDIDATES))}", after="op_overhead_s")
    _set_key(lines, "units.tensor", "overlap_exponent", f"{fit.overlap_exponent:g}",
             "compute/memory overlap near the ridge", after="tile_m")
    _set_curve(lines, "units.tensor.efficiency", fit.tensor_efficiency, "FLOP", f"A100 curve {scale_t}")
    if not _fitted_on_own_kernels(lines, "units.simt.efficiency"):  # a GPU's own kernel fit stays
        _set_key(lines, "units.simt", "op_overhead_s", _number(fit.simt_overhead_s), "s, kernel time floor")
        _set_curve(lines, "units.simt.efficiency", fit.simt_efficiency, "FLOP", "A100 curve as fitted")
    _set_curve(lines, "memories.hbm.efficiency", fit.hbm_efficiency, "bytes", f"A100 curve {scale_m}")
    if _span(lines, "links.nvlink") is not None and fit.nvlink_efficiency is not None:
        own = anchor is not None and anchor.nvlink is not None
        _set_key(lines, "links.nvlink", "efficiency", f"{fit.nvlink_efficiency:g}",
                 "kept: this link generation's own measured value" if own else "A100 NVLink3 fit")
        _set_key(lines, "links.nvlink", "latency_s", _number(fit.nvlink_latency_s), "s per hop")
        _set_key(lines, "links.nvlink", "collective_overhead_s", _number(fit.collective_overhead_s),
                 "s once per collective", after="efficiency")
    path.write_text("\n".join(lines) + "\n")
