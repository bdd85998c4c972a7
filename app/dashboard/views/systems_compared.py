"""Systems compared: the seed systems side by side on one workload (each with its default mapper
and a stated parallelism), and the reproduction targets (``decodex reproduce``) as a table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from decodex.app.dashboard.compare import (
    AUTO_TP,
    TP_CHOICES,
    SystemRow,
    comparison_display,
    comparison_frame,
    energy_per_token_figure,
    reproduce_display,
    result_colour,
    run_system,
    select_targets,
    target_groups,
    target_row,
    tokens_per_device_figure,
)
from decodex.app.dashboard.design import selectable_systems
from decodex.app.dashboard.guard import page_errors, report
from decodex.app.dashboard.limits import MAX_BATCH, MAX_CONTEXT, check_step_size
from decodex.core.errors import DecodexError
from decodex.validation.reproduce import TARGETS_DIR, Target, load_targets, run_target
from decodex.workloads.catalog import list_models

DEFAULT_MODEL = "llama2-7b"  # FlightLLM's model; every seed system has the memory and datapaths for it in fp16
DEFAULT_PRECISION = "fp16"  # the one datapath every seed system has (NeuPIMs' PIM is fp16 only)
# one per seed system: GPU baseline, NeuPIMs, Duplex, FlightLLM's U280, Step-3's attention-FFN disaggregation
DEFAULT_SYSTEMS = ("h100-sxm", "neupims", "4x-duplex", "alveo-u280", "step3-2a2f-h800")
PRECISIONS = ("fp16", "bf16", "fp8", "int8", "w8a16", "w4a16", "w4a8", "w=int4,a=int8,kv=int8,wbits=4.1")
RESULTS_KEY = "systems.reproduce_results"
LAYOUT_NOTE = (
    "**Parallelism**: TP auto takes the smallest tensor-parallel degree (1, 2, 4, 8) at which weights and KV "
    "cache fit in a device, on at most a node of the device (a catalog device) or the system's devices (a fixed "
    "system); FPGA cards declare no device-to-device link, so they run alone. Attention-FFN systems lay the "
    "replica out from their roles. A row that does not fit anywhere shows its numbers at the largest degree "
    "that runs, and its memory need. **Path**: mappers whose schedule has several streams (NeuPIMs' sub-batches "
    "at batch ≥ 256, Duplex's co-processing, the attention-FFN ping-pong) go through the discrete-event engine "
    "(`simulate`), the others through the analytical `estimate` (the same number for one stream). **Tokens/s "
    "per device** = tokens/s / devices of one replica. **\\$/hour** is the replica's devices at their catalog "
    "rental price, **\\$/Mtok** = \\$/hour / 3600 / tokens/s × 10⁶; 'no price' where a device has none "
    "(research designs, FPGA cards)."
)
REPRODUCE_NOTE = ("Error: simulated / paper − 1 (relative targets) or simulated − paper in the target's unit "
                  "(absolute ones); a target passes when |error| ≤ tolerance. n/a: the simulator could not produce "
                  "the value (e.g. a missing price).")


@st.cache_data(max_entries=512, show_spinner=False)
def cached_row(model: str, system: str, batch: int, context: int, precision: str, tp: int | str) -> SystemRow:
    """:func:`app.dashboard.compare.run_system`, cached per argument set (times in s, energy in J)."""
    return run_system(model, system, batch, context, precision, tp)


def _targets_stamp() -> tuple[tuple[str, float], ...]:
    """Names and modification times of the target files: a cache key that changes with them."""
    return tuple((p.name, p.stat().st_mtime) for p in sorted(Path(TARGETS_DIR).glob("*.toml")))


@st.cache_data(show_spinner=False)
def cached_targets(stamp: tuple[tuple[str, float], ...]) -> list[Target]:
    """Every reproduction target (``validation/targets/*.toml``), re-read when ``stamp`` changes."""
    del stamp  # the cache key only
    return load_targets()


@st.cache_data(max_entries=256, show_spinner=False)
def cached_target_row(name: str, stamp: tuple[tuple[str, float], ...]) -> dict[str, Any]:
    """The table row of target ``name`` (:func:`app.dashboard.compare.target_row`), cached until a
    target file changes. A runner that fails gives a FAIL row naming the error, not a traceback."""
    target = next(t for t in cached_targets(stamp) if t.name == name)
    try:
        return target_row(target, run_target(target))
    except Exception as err:  # a broken runner or target is shown in its row; the other targets still run
        return target_row(target, None, f"{type(err).__name__}: {err}")


with page_errors():  # any error ends the page in one message, never a traceback
    st.title("Systems compared")
    st.caption("The seed systems on one decode step: each runs the workload with its own default mapper, and the "
               "table says how it was laid out and computed. Rows that cannot run say why.")

    st.header("One workload, several systems")
    models = list_models()
    cols = st.columns([2, 2, 1, 1, 1])
    model = cols[0].selectbox("Model", models, index=models.index(DEFAULT_MODEL) if DEFAULT_MODEL in models else 0,
                              key="systems.model")
    precision = cols[1].selectbox("Precision", PRECISIONS, index=PRECISIONS.index(DEFAULT_PRECISION),
                                  key="systems.precision",
                                  help="Weights, activations and KV cache. fp16 is the datapath every seed system has; "
                                       "FlightLLM runs mixed 8/4-bit weights (the last entry).")
    batch = int(cols[2].number_input("Batch", 1, MAX_BATCH, 32, key="systems.batch",
                                     help="Requests decoded in the step."))
    context = int(cols[3].number_input("Context", 1, MAX_CONTEXT, 1024, step=256, key="systems.context",
                                       help="Cached tokens per request."))
    tp_options: list[int | str] = [AUTO_TP, *TP_CHOICES]
    tp = cols[4].selectbox("TP", tp_options, key="systems.tp",
                           help="Tensor-parallel degree; auto: the smallest power of two at which the step fits in "
                                "memory, up to a node (8) or the system's device count.")
    choices = selectable_systems()
    systems = st.multiselect("Systems", choices, default=[s for s in DEFAULT_SYSTEMS if s in choices],
                             key="systems.systems")
    try:
        check_step_size(batch, context)  # the dashboard's bounds on one step (app/dashboard/limits.py)
    except DecodexError as err:
        report(err)
        systems = []
    else:
        if not systems:
            st.info("Pick at least one system.")
    if systems:
        with st.spinner(f"Running {model} on {len(systems)} systems"):
            frame = comparison_frame(cached_row(model, s, batch, context, precision, tp) for s in systems)
        st.dataframe(comparison_display(frame), hide_index=True, key="systems.table", column_config={
            "status": st.column_config.TextColumn(width="small"),
            "parallelism": st.column_config.TextColumn(width="medium"),
            "devices": st.column_config.NumberColumn(width="small"),
            "step time (ms)": st.column_config.NumberColumn("step (ms)", format="%.3f", width="small",
                                                            help="step time, ms"),
            "tokens/s": st.column_config.NumberColumn(format="%.0f", width="small"),
            "tokens/s per device": st.column_config.NumberColumn("per device", format="%.0f", width="small",
                                                                 help="tokens/s per device"),
            "energy/token (mJ)": st.column_config.NumberColumn("mJ/token", format="%.2f", width="small"),
            "$/hour": st.column_config.TextColumn(width="small"),
            "$/Mtok": st.column_config.TextColumn(width="small"),
            "memory/device (GB)": st.column_config.TextColumn("GB/device", width="small",
                                                              help="memory one device needs, of its capacity"),
        })
        st.caption(LAYOUT_NOTE)
        for row in frame[frame["status"] != "ok"].itertuples():
            st.warning(f"**{row.system}** {row.status}: {row.reason}")
        ran = frame[frame["status"] != "cannot run"]
        if ran.empty:
            st.warning("None of the selected systems can run this point (see the reasons above).")
        else:
            left, right = st.columns(2)
            left.plotly_chart(tokens_per_device_figure(frame), key="systems.per_device")
            right.plotly_chart(energy_per_token_figure(frame), key="systems.energy")

    st.header("Reproduction targets")
    st.caption("The seed papers' headline results (`validation/targets/*.toml`), re-derived by the simulator as "
               "`decodex reproduce NAME` does. Targets take from milliseconds to seconds each; the duplex group "
               "simulates serving and takes about a minute. Results are cached until a target file changes.")
    stamp = _targets_stamp()
    try:
        targets = cached_targets(stamp)
    except DecodexError as err:
        report(err, "Cannot read the targets: ")
        st.stop()
    groups = target_groups(targets)
    cols = st.columns([2, 2, 3])
    group = cols[0].selectbox("Targets", groups, key="systems.group",
                              help="all, or one group (the first word of a target's name).")
    chosen = select_targets(targets, group)
    cols[1].write("")
    run_clicked = cols[1].button("Run reproduction targets", key="systems.run_targets", type="primary")
    cols[2].caption(f"{len(chosen)} target(s): {', '.join(t.name for t in chosen)}")
    if run_clicked:
        progress = st.progress(0.0, text="starting")
        rows = []
        for index, target in enumerate(chosen):
            progress.progress(index / len(chosen), text=f"{target.name} ({index + 1} of {len(chosen)})")
            rows.append(cached_target_row(target.name, stamp))
        progress.progress(1.0, text=f"{len(rows)} target(s) done")
        st.session_state[RESULTS_KEY] = {"group": group, "rows": rows}

    shown = st.session_state.get(RESULTS_KEY)
    if shown is None:
        st.info("Press the button to run the selected targets.")
    else:
        rows = shown["rows"]
        judged = [r for r in rows if r["result"] != "reported"]
        passed = sum(1 for r in judged if r["passed"])
        if shown["group"] != group:
            st.caption(f"Showing the last run ({shown['group']}); press the button to run {group}.")
        reported = len(rows) - len(judged)
        also = f"; {reported} published figure(s) reported beside them (not targets: the note says why)" \
            if reported else ""
        st.markdown(f"**{passed} of {len(judged)}** target(s) within tolerance{also}.")
        display = reproduce_display(rows)
        if not display["note"].astype(bool).any():
            display = display.drop(columns="note")
        st.dataframe(display.style.map(result_colour, subset=["result"]), hide_index=True, key="systems.reproduce",
                     height=38 + 35 * len(display),
                     column_config={"source": st.column_config.TextColumn(width="large")})
        st.caption(REPRODUCE_NOTE)
