"""Human-readable text for the terminal. Only the CLI and dashboard format; data stays SI."""

from __future__ import annotations

import math
from collections.abc import Sequence

from decodex.sim.results import StepResult
from decodex.sim.simulate import SimResult

SI_PREFIXES = ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, ""), (1e-3, "m"),
               (1e-6, "µ"), (1e-9, "n"), (1e-12, "p"))
"""Engineering prefixes, largest first: (scale, prefix)."""


def si(value: float, unit: str, digits: int = 3) -> str:
    """``si(0.0123, "s")`` -> ``"12.3 ms"``; engineering prefixes from p to P."""
    if value == 0 or value != value:
        return f"{value:g} {unit}"
    magnitude = abs(value)
    for scale, prefix in SI_PREFIXES:
        if magnitude >= scale:
            return f"{value / scale:.{digits}g} {prefix}{unit}"
    return f"{value:.{digits}g} {unit}"


def compact(value: float, digits: int = 4) -> str:
    """A number short enough for a dashboard tile: ``5167.12`` -> ``"5,167"``, ``2.81349`` ->
    ``"2.813"``, ``1.234e7`` -> ``"12.3 M"``; ``"n/a"`` when not finite. The unit goes in the label."""
    if not math.isfinite(value):
        return "n/a"
    magnitude = abs(value)
    if magnitude >= 1e6:
        return si(value, "", 3).rstrip()
    if magnitude >= 10 ** (digits - 1):
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def band_text(low_s: float, high_s: float) -> str:
    """``"12.3 ms .. 15 ms"``, or ``"no validation data"`` when the band is missing or has no width
    (no validation record covers the step: a zero-width band would claim a certainty it lacks)."""
    if not (math.isfinite(low_s) and math.isfinite(high_s)) or high_s <= low_s:
        return "no validation data"
    return f"{si(low_s, 's')} .. {si(high_s, 's')}"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain aligned text table (first column left-aligned, the others right-aligned)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for index, row in enumerate(cells):
        parts = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(parts).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def step_report(result: StepResult, show_ops: bool = False) -> str:
    """The readable report of ``decodex estimate``: summary, time by block, optionally every op."""
    head = (f"{result.model} on {result.system} ({result.devices} device{'s' if result.devices > 1 else ''}, "
            f"{result.parallelism}, mapper {result.mapper}), {result.precision}, batch {result.batch_size}, "
            f"mean context {result.mean_context:.0f}")
    summary = table(["metric", "value"], [
        ["step time", si(result.step_time_s, "s")],
        *([["analytical step time (no overlap)", si(result.analytical_step_time_s, "s")]]
          if isinstance(result, SimResult) else []),
        ["measured step time likely in", band_text(result.band_low_s, result.band_high_s)],
        ["throughput", f"{result.tokens_per_s:,.1f} tokens/s"],
        ["energy per token", si(result.energy_per_token_j, "J")],
        ["weights per device", si(result.weight_bytes, "B")],
        ["KV cache per device", si(result.kv_bytes, "B")],
        ["memory required / capacity", f"{si(result.memory_required_bytes, 'B')} / "
                                       f"{si(result.memory_capacity_bytes, 'B')}"],
        ["fits", "yes" if result.fits else f"NO: {result.reason}"],
    ])
    blocks = result.by_block()
    block_rows = [[r.block, si(r.total_time_s, "s"), f"{100 * r.time_share:.1f}%", si(r.flops_step, "FLOP"),
                   si(r.bytes_step, "B")] for r in blocks.itertuples()]
    parts = [head, "", summary, "", table(["block", "time/step", "share", "FLOP/device", "bytes/device"],
                                          block_rows)]
    note = overlap_note(result)
    if note:
        parts += [note]
    if result.warnings:
        parts += ["", f"error band from {result.band_source}; warnings:"] + [f"  - {w}" for w in result.warnings]
    if show_ops:
        op_rows = [[f"{r.template}.{r.name}", r.unit, r.repeat, si(r.time_s, "s"), r.bound,
                    f"{r.arithmetic_intensity:.3g}", si(r.flops, "FLOP"), si(r.bytes, "B")]
                   for r in result.records]
        parts += ["", table(["op", "unit", "×", "time", "bound", "FLOP/B", "FLOP", "bytes"], op_rows)]
    return "\n".join(parts)


OVERLAP_TOLERANCE = 1.005
"""Op times summing to more than this times the step are reported as overlap (not rounding)."""


def overlap_note(result: StepResult) -> str:
    """One line explaining shares above 100 % when ops of different units overlap in the step,
    else ``""``."""
    ratio = result.busy_over_step
    if not ratio > OVERLAP_TOLERANCE:
        return ""
    return (f"shares add to {100 * ratio:.0f}%: ops on different units run at the same time in this step "
            f"({result.mapper} mapper), so the blocks' times sum to {ratio:.2f}x the step time")


def utilization_report(result: SimResult) -> str:
    """Busy time and utilisation per timeline track (unit, device or link) of a simulated step."""
    rows = [[track, si(result.busy_s[track], "s"), f"{100 * util:.1f}%"]
            for track, util in sorted(result.utilization.items())]
    return table(["track", "busy/step", "utilization"], rows)
