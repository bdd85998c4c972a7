"""Tables as the dashboard shows them (no Streamlit): SI data turned into columns a person reads,
each labelled with its unit and scaled by one SI prefix per column (``time (µs)``, ``bytes (MB)``),
so no table shows ``1342177280`` or ``0.00001``. The data handed to downloads stays SI."""

from __future__ import annotations

import numpy as np
import pandas as pd

from decodex.app.formatting import SI_PREFIXES


def si_scale(values: pd.Series | np.ndarray) -> tuple[float, str]:
    """The scale and prefix that put the median of the non-zero finite magnitudes of ``values``
    in [1, 1000) (``(1e-6, "µ")`` for times of a few µs); ``(1.0, "")`` when there are none."""
    magnitudes = np.abs(np.asarray(values, dtype=float))
    magnitudes = magnitudes[np.isfinite(magnitudes) & (magnitudes > 0)]
    if magnitudes.size == 0:
        return 1.0, ""
    reference = float(np.median(magnitudes))
    return next(((scale, prefix) for scale, prefix in SI_PREFIXES if reference >= scale), SI_PREFIXES[-1])


def scaled_column(values: pd.Series, unit: str, name: str) -> tuple[str, pd.Series]:
    """``("time (µs)", values / 1e-6)``: the column's label with its prefixed unit, and the values
    in that unit."""
    scale, prefix = si_scale(values)
    return f"{name} ({prefix}{unit})", values.astype(float) / scale


def ops_display(ops: pd.DataFrame) -> pd.DataFrame:
    """A step's per-op frame (``StepResult.ops``, SI) as shown: op, block, kind, unit, count per
    step, dtype, FLOP and bytes per op, FLOP/B, time per op and per step, share of the step (%)
    and what bounds it; each quantity with its unit in the label."""
    out = pd.DataFrame({"block": ops["block"], "op": ops["name"], "kind": ops["kind"], "unit": ops["unit"],
                        "× per step": ops["repeat"], "dtype": ops["dtype"]})
    for column, unit, name in (("flops", "FLOP", "FLOP"), ("bytes", "B", "bytes"), ("time_s", "s", "time"),
                               ("total_time_s", "s", "time per step")):
        label, values = scaled_column(ops[column], unit, name)
        out[label] = values
    out.insert(8, "FLOP/B", ops["arithmetic_intensity"].astype(float))
    out["share (%)"] = ops["time_share"].astype(float) * 100.0
    out["bound"] = ops["bound"]
    return out


def number_formats(frame: pd.DataFrame, decimals: int = 2) -> dict[str, str]:
    """A printf format per numeric column of ``frame`` (for ``st.column_config.NumberColumn``):
    whole numbers without decimals, the others with ``decimals`` (the scaled columns of this
    module put their median in [1, 1000), so that is three or more significant figures)."""
    formats = {}
    for column in frame.columns:
        values = frame[column]
        if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            continue
        finite = values.astype(float)
        finite = finite[np.isfinite(finite)]
        whole = bool(len(finite)) and bool(np.all(np.mod(finite, 1.0) == 0))
        formats[column] = "%.0f" if whole else f"%.{decimals}f"
    return formats


def labelled_display(frame: pd.DataFrame) -> pd.DataFrame:
    """Any SI frame (sweep rows, request tables, capacity curves) as shown: each column named by
    :func:`explore.metric_labels.metric_label` with its unit; SI quantities (s, B, J, FLOP, W)
    scaled by one prefix per column (``TPOT (ms)``); fractions in %; the rest as they are."""
    from decodex.explore.metric_labels import SYMBOLS, metric_label

    out = {}
    for column in frame.columns:
        name, unit = metric_label(str(column))
        values = frame[column]
        numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
        if numeric and unit in SYMBOLS and unit != "/s":
            label, shown = scaled_column(values, unit, name)
        elif numeric and unit == "%":
            label, shown = f"{name} (%)", values.astype(float) * 100.0
        else:
            label, shown = (f"{name} ({unit})" if unit else name), values
        while label in out:  # two columns with one readable name keep both
            label += " "
        out[label] = shown
    return pd.DataFrame(out)


def number_config(frame: pd.DataFrame) -> dict[str, object]:
    """Streamlit column configs giving each numeric column of ``frame`` its :func:`number_formats` format."""
    import streamlit as st

    return {column: st.column_config.NumberColumn(format=fmt) for column, fmt in number_formats(frame).items()}


def labelled_config(frame: pd.DataFrame) -> dict[str, object]:
    """Streamlit column configs that show ``frame``'s own columns (a sweep's rows, kept as written:
    their names are the sweep's keys) under readable labels with units, floats to four significant
    figures: the data, its order and the downloads are unchanged."""
    import streamlit as st

    from decodex.explore.metric_labels import axis_title

    config: dict[str, object] = {}
    for column in frame.columns:
        values = frame[column]
        if pd.api.types.is_float_dtype(values):
            config[column] = st.column_config.NumberColumn(axis_title(str(column)), format="%.4g")
        else:
            config[column] = st.column_config.Column(axis_title(str(column)))
    return config
