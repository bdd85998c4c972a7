"""Serving: one replica serving a stream of requests (``sim.serving.serve``): throughput, goodput,
TTFT and TPOT with their distributions, and throughput and goodput against the arrival rate."""

from __future__ import annotations

import math

import numpy as np
import streamlit as st

from decodex.app.dashboard.design import (
    MAX_BATCH,
    check_uploads,
    run_or_report,
    selectable_systems,
    spec_uploads,
    with_layout,
)
from decodex.app.dashboard.guard import page_errors, report
from decodex.app.dashboard.limits import MAX_SERVE_LENGTH
from decodex.app.dashboard.serving_charts import (
    MAX_REQUESTS,
    ServingPoint,
    latency_figure,
    latency_metrics,
    rate_sweep_display,
    sweep_figure,
    sweep_frame,
    sweep_rates,
)
from decodex.app.dashboard.tables import labelled_display, number_config
from decodex.app.dashboard.uploads import resolve_model, resolve_system
from decodex.app.formatting import compact, si
from decodex.core.errors import DecodexError
from decodex.sim.auto_layout import LayoutChoice, serving_layout
from decodex.sim.serving import PRESET_NAMES, SCHEDULERS, ServingResult
from decodex.sim.serving.capacity import CapacityResult, capacity
from decodex.workloads.catalog import list_models
from decodex.workloads.parallelism import Parallelism
from decodex.workloads.precision import PRECISION_PRESETS

DEFAULT = ServingPoint()
SWEEP_STATE = "serving.sweep_result"
CAPACITY_STATE = "serving.capacity_result"
CAPACITY_REL_TOL = 0.05  # the capacity search stops when passing and failing rates are within 5 %
CAPACITY_MAX_RUNS = 12


@st.cache_data(max_entries=32, show_spinner=False)
def cached_serve(point: ServingPoint) -> ServingResult:
    """``serve`` of ``point`` (cached per point; times in s, energy in J)."""
    return point.run()


@st.cache_data(max_entries=8, show_spinner=False)
def cached_capacity(point: ServingPoint) -> CapacityResult:
    """``sim.serving.capacity`` of ``point``'s replica and workload under its TTFT and TPOT SLOs
    as P99 bounds (s); rates in requests/s (cached per point)."""
    point.check_size()
    return capacity(resolve_model(point.model, point.model_text), resolve_system(point.system, point.system_text),
                    slo={"ttft_p99": point.slo_ttft_s, "tpot_p99": point.slo_tpot_s}, workload=point.workload(),
                    requests=point.requests, seed=point.seed, rel_tol=CAPACITY_REL_TOL, max_runs=CAPACITY_MAX_RUNS,
                    scheduler=point.scheduler, chunk=point.chunk, max_batch=point.max_batch,
                    precision=point.precision, parallelism=Parallelism(tp=point.tp, pp=point.pp, ep=point.ep))


def _index(options: list[str], value: str) -> int:
    return options.index(value) if value in options else 0


def serving_inputs(d: ServingPoint) -> ServingPoint | None:
    """Sidebar widgets (keys ``serving.*``) for a serving run, starting from ``d``; SLOs are
    entered in ms and returned in s, rates in requests/s, lengths in tokens. None (with the
    message shown) when an uploaded model or hardware file cannot be used."""
    bar = st.sidebar
    bar.header("Replica")
    models, systems, presets = list_models(), selectable_systems(), list(PRECISION_PRESETS)
    model = bar.selectbox("Model", models, index=_index(models, d.model), key="serving.model")
    system = bar.selectbox("System", systems, index=_index(systems, d.system), key="serving.system")
    (model, model_text), (system, system_text) = spec_uploads("serving", model, system)
    precision = bar.selectbox("Precision", presets, index=_index(presets, d.precision), key="serving.precision")
    auto = bar.checkbox("Auto layout", True, key="serving.auto",
                        help="The smallest layout holding the weights and one 2048-token request (tensor parallel, "
                             "then tensor x pipeline); follows the model and system. Off: set TP, PP and EP.")
    tp, pp, ep = d.tp, d.pp, d.ep
    if not auto:
        cols = bar.columns(3)
        tp = int(cols[0].number_input("TP", 1, 1024, d.tp, key="serving.tp"))
        pp = int(cols[1].number_input("PP", 1, 256, d.pp, key="serving.pp"))
        ep = int(cols[2].number_input("EP", 1, 1024, d.ep, key="serving.ep"))
    bar.header("Workload")
    datasets = list(PRESET_NAMES)
    dataset = bar.selectbox("Dataset", datasets, index=_index(datasets, d.dataset), key="serving.dataset",
                            help="sharegpt: 80/296 prompt/output tokens on average; sharegpt-long: 1730/415; "
                                 "alpaca: 12/56 (lognormal); fixed: every request the same.")
    with bar.expander("Lengths"):
        input_len = int(st.number_input("Prompt tokens (0: the dataset's)", 0, MAX_SERVE_LENGTH, d.input_len or 0,
                                        key="serving.input_len", help="Fixed: every prompt; else the mean."))
        output_len = int(st.number_input("Output tokens (0: the dataset's)", 0, MAX_SERVE_LENGTH, d.output_len or 0,
                                         key="serving.output_len", help="Fixed: every output; else the mean."))
    arrival = bar.radio("Arrivals", ["poisson", "fixed"], index=_index(["poisson", "fixed"], d.arrival),
                        horizontal=True, key="serving.arrival", help="Poisson, or evenly spaced.")
    rate = float(bar.number_input("Arrival rate (requests/s)", 0.01, 100_000.0, d.rate, step=1.0, format="%g",
                                  key="serving.rate"))
    requests = int(bar.number_input("Requests", 1, MAX_REQUESTS, d.requests, step=50, key="serving.requests"))
    seed = int(bar.number_input("Seed", 0, 2**31 - 1, d.seed, key="serving.seed"))
    bar.header("Scheduler")
    schedulers = sorted(SCHEDULERS)
    scheduler = bar.selectbox("Batching", schedulers, index=_index(schedulers, d.scheduler), key="serving.scheduler",
                              help="static: a batch runs to completion; continuous: vLLM/Orca iteration-level "
                                   "batching; chunked: Sarathi-Serve token budget per iteration.")
    max_batch = int(bar.number_input("Max batch (requests)", 1, MAX_BATCH, d.max_batch, key="serving.max_batch"))
    chunk = d.chunk
    if scheduler == "chunked":
        chunk = int(bar.number_input("Chunk (tokens per iteration)", 1, 1_000_000, d.chunk, key="serving.chunk"))
    bar.header("SLOs (goodput)")
    cols = bar.columns(2)
    slo_ttft_ms = float(cols[0].number_input("TTFT (ms)", 0.001, 1e7, d.slo_ttft_s * 1e3, format="%g",
                                             key="serving.slo_ttft_ms"))
    slo_tpot_ms = float(cols[1].number_input("TPOT (ms)", 0.001, 1e7, d.slo_tpot_s * 1e3, format="%g",
                                             key="serving.slo_tpot_ms"))
    point = ServingPoint(model=model, system=system, model_text=model_text, system_text=system_text,
                         precision=precision, tp=tp, pp=pp, ep=ep, dataset=dataset,
                         arrival=arrival, rate=rate, input_len=input_len or None, output_len=output_len or None,
                         requests=requests, scheduler=scheduler, max_batch=max_batch, chunk=chunk,
                         slo_ttft_s=slo_ttft_ms / 1e3, slo_tpot_s=slo_tpot_ms / 1e3, seed=seed)
    try:
        point.check_size()  # the dashboard's bounds on one run (app/dashboard/limits.py), before it runs
    except DecodexError as err:
        report(err)
        return None
    if not check_uploads(model, model_text, system, system_text):
        return None
    if auto:
        return with_layout(point, lambda: cached_serving_layout(model, model_text, system, system_text, precision))
    return point


@st.cache_data(max_entries=64, show_spinner=False)
def cached_serving_layout(model: str, model_text: str | None, system: str, system_text: str | None,
                          precision: str) -> LayoutChoice:
    """:func:`sim.auto_layout.serving_layout` of a model and system (uploads as text), cached."""
    return serving_layout(resolve_model(model, model_text), resolve_system(system, system_text), precision=precision)


def _ms(value_s: float) -> str:
    return "n/a" if not math.isfinite(value_s) else si(value_s, "s", 4)


with page_errors():  # any error ends the page in one message, never a traceback
    st.title("Serving")
    chosen = serving_inputs(DEFAULT)
    if chosen is None:
        st.stop()
    point: ServingPoint = chosen
    st.caption(point.label())
    with st.spinner("Serving the requests..."):
        result = run_or_report(cached_serve, point)
    if result is None:
        st.stop()

    summary = result.summary()
    cols = st.columns(4)
    cols[0].metric("Throughput (tokens/s)", compact(result.throughput_tokens_per_s),
                   help="Output tokens over the makespan (first arrival to last finish).")
    cols[1].metric("Goodput (req/s)", compact(result.goodput_requests_per_s),
                   help=f"Requests within both SLOs (TTFT <= {point.slo_ttft_s * 1e3:g} ms, TPOT <= "
                        f"{point.slo_tpot_s * 1e3:g} ms) per second of makespan.")
    cols[2].metric("Finished (req/s)", compact(result.request_throughput_per_s))
    cols[3].metric("SLO attainment", f"{summary['slo_attainment']:.1%}")
    lat = latency_metrics(result)
    cols = st.columns(6)
    shown_latencies = [("TTFT mean", "ttft_mean"), ("TTFT p50", "ttft_p50"), ("TTFT p99", "ttft_p99"),
                       ("TPOT mean", "tpot_mean"), ("TPOT p50", "tpot_p50"), ("TPOT p99", "tpot_p99")]
    for index, (name, key) in enumerate(shown_latencies):
        cols[index].metric(name, _ms(lat[key]))
    st.caption(f"{result.num_requests:,} requests, {result.total_output_tokens:,} output tokens in "
               f"{result.makespan_s:,.2f} s on {result.devices} device{'s' if result.devices > 1 else ''}; "
               f"{summary['iterations']:,} iterations (mean batch {summary['mean_batch_size']:.1f}); busy "
               f"{result.utilization:.1%} of the time (an iteration runs whenever a request is in the system, so this "
               "is near 100 % at any load that keeps the replica fed: the mean batch says how full each iteration is); "
               f"{result.preemptions} preemptions, "
               f"{result.energy_per_token_j * 1e3:,.1f} mJ per output token; KV cache "
               f"{result.kv.total_blocks:,} blocks of {result.kv.block_size} tokens, peak "
               f"{summary['peak_kv_blocks_used']:,} used.")

    st.subheader("Latency distributions")
    kind = st.radio("Show", ["ecdf", "histogram"], horizontal=True, key="serving.dist",
                    format_func={"ecdf": "ECDF", "histogram": "histogram"}.get)
    left, right = st.columns(2)
    left.plotly_chart(latency_figure(result.ttft_s, point.slo_ttft_s, "TTFT", kind), key="serving.ttft")
    right.plotly_chart(latency_figure(result.tpot_s, point.slo_tpot_s, "TPOT", kind), key="serving.tpot")
    if np.isnan(result.tpot_s).all():
        st.caption("No request has more than one output token, so none has a TPOT.")

    st.subheader("Throughput and goodput against the arrival rate")
    rates = sweep_rates(point.rate)
    st.caption(f"Runs the same requests at {', '.join(f'{r:g}' for r in rates)} req/s (0.25x to 2x the chosen rate); "
               "each run is cached. Throughput is over the makespan (first arrival to last finish): with few requests "
               "the drain of the longest ones weighs on it, so it stays under the offered load even at low rates.")
    if st.button("Run the rate sweep", key="serving.sweep"):
        progress = st.progress(0.0, text="Sweeping the arrival rate...")
        runs: list[tuple[float, ServingResult]] = []
        for number, rate in enumerate(rates):
            run = run_or_report(cached_serve, point.at_rate(rate))
            if run is None:
                break
            runs.append((rate, run))
            progress.progress((number + 1) / len(rates), text=f"{rate:g} req/s done ({number + 1}/{len(rates)})")
        progress.empty()
        if len(runs) == len(rates):
            st.session_state[SWEEP_STATE] = (point, sweep_frame(runs))
    stored = st.session_state.get(SWEEP_STATE)
    if stored is not None and stored[0] == point:
        frame = stored[1]
        st.plotly_chart(sweep_figure(frame, title=f"{point.model} on {point.system}, {point.scheduler} batching"),
                        key="serving.sweep_chart")
        peak = frame.loc[frame["goodput_requests_per_s"].idxmax()]
        st.caption(f"Peak goodput {peak['goodput_requests_per_s']:,.3f} req/s at {peak['rate_per_s']:g} req/s; "
                   f"throughput at the highest rate {frame['throughput_tokens_per_s'].iloc[-1]:,.1f} tokens/s.")
        st.dataframe(rate_sweep_display(frame), hide_index=True, key="serving.sweep_table")
    elif stored is not None:
        st.caption("The settings changed since the last sweep; run it again.")

    st.subheader("Capacity under the SLOs")
    st.caption("The highest arrival rate whose run keeps TTFT p99 and TPOT p99 within the SLOs and whose queue of "
               "requests waiting to be scheduled does not grow (a short run drains at the end, which is why the sweep "
               "above flattens). Bracketing, then bisection to 5 %; every run draws the same requests. Runs too "
               "short to reach steady state are flagged: raise Requests.")
    if st.button("Find capacity", key="serving.capacity"):
        with st.spinner("Searching the arrival rate..."):
            found = run_or_report(cached_capacity, point)
        if found is not None:
            st.session_state[CAPACITY_STATE] = (point, found)
    stored_capacity = st.session_state.get(CAPACITY_STATE)
    if stored_capacity is not None and stored_capacity[0] == point:
        found = stored_capacity[1]
        st.metric("Capacity (req/s)", compact(found.capacity_per_s),
                  help=f"Binding: {found.binding or 'none (every run passed)'}; {found.runs} runs.")
        st.plotly_chart(found.figure(), key="serving.capacity_chart")
        for note in found.notes:
            st.caption(f"Note: {note}.")
        curve = labelled_display(found.curve[["rate_per_s", "ttft_p99_s", "tpot_p99_s", "sched_delay_p99_s", "passes",
                                              "steady", "steady_reason"]])
        st.dataframe(curve, hide_index=True, key="serving.capacity_table", column_config=number_config(curve))
    elif stored_capacity is not None:
        st.caption("The settings changed since the last capacity search; run it again.")

    st.subheader("Requests")
    requests_table = result.requests
    st.download_button("Download requests (CSV)", requests_table.to_csv(index=False).encode(),
                       file_name="serving_requests.csv", mime="text/csv", key="serving.requests_csv")
    with st.expander(f"Per-request table ({len(requests_table):,} rows)"):
        shown = labelled_display(requests_table)
        st.dataframe(shown, hide_index=True, key="serving.requests_table", column_config=number_config(shown))
