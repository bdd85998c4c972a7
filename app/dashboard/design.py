"""The design point every page starts from (model, system, mapper, precision, batch, context,
parallelism), its sidebar widgets, and the cached heavy calls keyed on it.

A :class:`DesignPoint` is frozen and made of plain values (an uploaded spec is carried as its
text), so ``st.cache_data`` keys a result on everything that produces it and two sessions asking
for the same point share one computation."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import streamlit as st

from decodex.api import estimate, simulate
from decodex.app.dashboard.guard import report
from decodex.app.dashboard.limits import (
    MAX_BATCH,
    MAX_CONTEXT,
    MAX_EP,
    MAX_PP,
    MAX_TP,
    check_simulate_size,
    check_step_size,
)
from decodex.app.dashboard.uploads import UploadError, resolve_model, resolve_system, upload_text
from decodex.core.errors import DecodexError
from decodex.hw_models.system import SystemSpec, list_devices, list_systems, load_system
from decodex.mappers import MAPPERS
from decodex.sim.auto_layout import LayoutChoice, choose_layout
from decodex.sim.results import StepResult
from decodex.sim.simulate import SimResult
from decodex.workloads.catalog import list_models
from decodex.workloads.model_config import ModelConfig
from decodex.workloads.parallelism import Parallelism
from decodex.workloads.precision import PRECISION_PRESETS

DEFAULT_MODEL = "llama3-70b"
DEFAULT_SYSTEM = "h100-sxm"
SYSTEM_DEFAULT_MAPPER = "(system default)"


@dataclass(frozen=True)
class DesignPoint:
    """One model on one system at one batch: what ``estimate`` and ``simulate`` take.

    ``model``/``system``: catalog names, or the uploaded file names when ``model_text`` /
    ``system_text`` hold an uploaded file's content. ``batch`` requests, each with ``context``
    cached tokens. ``mapper`` None: the system's default."""

    model: str = DEFAULT_MODEL
    system: str = DEFAULT_SYSTEM
    precision: str = "bf16"
    batch: int = 64
    context: int = 2048
    tp: int = 8
    pp: int = 1
    ep: int = 1
    mapper: str | None = None
    model_text: str | None = None
    system_text: str | None = None

    def model_config(self) -> ModelConfig:
        """The model: uploaded text parsed as data, or the catalog entry."""
        return resolve_model(self.model, self.model_text)

    def system_spec(self) -> SystemSpec:
        """The system: uploaded text parsed as data, or the catalog entry."""
        return resolve_system(self.system, self.system_text)

    def parallelism(self) -> Parallelism:
        """Tensor, pipeline and expert parallel degrees."""
        return Parallelism(tp=self.tp, pp=self.pp, ep=self.ep)

    def step_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``estimate`` / ``simulate`` besides model, system and batch."""
        return {"context": self.context, "precision": self.precision, "mapper": self.mapper,
                "parallelism": self.parallelism()}

    def label(self) -> str:
        """A short human-readable description."""
        par = f"tp{self.tp}" + (f" pp{self.pp}" if self.pp > 1 else "") + (f" ep{self.ep}" if self.ep > 1 else "")
        return f"{self.model} on {self.system} ({self.precision}, {par}), batch {self.batch} x {self.context} tokens"

    def check_size(self, *, simulated: bool = False) -> None:
        """Raise ArgumentError naming the field and range unless the point is within the
        dashboard's bounds (:mod:`app.dashboard.limits`: batch requests, context tokens, batch x
        context tokens, tp / pp / ep; with ``simulated``, pipeline stages x micro-batches)."""
        check_step_size(self.batch, self.context, self.tp, self.pp, self.ep)
        if simulated:
            check_simulate_size(self.batch, self.pp)


@st.cache_data(show_spinner=False)
def selectable_systems() -> list[str]:
    """Every system a page offers: the catalog's systems and the device cards that run alone
    (the FPGA cards, whose default mapper is ``flightllm`` and which have no system file)."""
    cards = []
    for name in list_devices():
        try:
            if load_system(name).default_mapper == "flightllm":
                cards.append(name)
        except DecodexError:
            continue
    return sorted(set(list_systems()) | set(cards))


@st.cache_data(max_entries=256, show_spinner=False)
def cached_layout(point: DesignPoint) -> LayoutChoice:
    """The automatic layout of ``point`` (:func:`sim.auto_layout.choose_layout`: the smallest at
    which its step fits), cached per point (its own tp/pp/ep are ignored)."""
    return choose_layout(point.model_config(), point.system_spec(), point.batch, context=point.context,
                         precision=point.precision, mapper=point.mapper)


@st.cache_data(max_entries=128, show_spinner=False)
def cached_estimate(point: DesignPoint) -> StepResult:
    """``sim.estimate`` of ``point`` (cached per design point; times in s, energy in J); bounded
    first (:meth:`DesignPoint.check_size`)."""
    point.check_size()
    return estimate(point.model_config(), point.system_spec(), point.batch, **point.step_kwargs())


@st.cache_data(max_entries=32, show_spinner=False)
def cached_simulate(point: DesignPoint) -> SimResult:
    """``sim.simulate`` of ``point`` through the discrete-event engine (cached per design point;
    times in s); bounded first (:meth:`DesignPoint.check_size`)."""
    point.check_size(simulated=True)
    return simulate(point.model_config(), point.system_spec(), point.batch, **point.step_kwargs())


def _upload(label: str, types: list[str], key: str, help_text: str) -> tuple[str, str] | None:
    """(file name, text) of an uploaded file, or None; an oversized, empty or non-UTF-8 file is reported."""
    uploaded = st.file_uploader(label, type=types, key=key, help=help_text)
    if uploaded is None:
        return None
    try:
        return uploaded.name, upload_text(uploaded.getvalue(), uploaded.name)
    except UploadError as err:
        report(err)
        return None


def spec_uploads(key: str, model: str, system: str) -> tuple[tuple[str, str | None], tuple[str, str | None]]:
    """A sidebar expander taking an uploaded HF config.json and a device or system TOML (widget
    keys ``{key}.model_file`` / ``{key}.system_file``). Returns ``(model, model_text)`` and
    ``(system, system_text)``: an uploaded file's name and text in place of the chosen catalog
    name, or the catalog name with None where nothing usable was uploaded."""
    model_text = system_text = None
    with st.sidebar.expander("Upload a model or hardware file"):
        up = _upload("HF config.json", ["json"], f"{key}.model_file",
                     "A Hugging Face config.json; replaces the model chosen above.")
        if up is not None:
            model, model_text = up
        up = _upload("Device or system TOML", ["toml"], f"{key}.system_file",
                     "A [device] file (may extend a catalog device) or a [system] file of catalog devices; "
                     "replaces the system chosen above.")
        if up is not None:
            system, system_text = up
    return (model, model_text), (system, system_text)


def check_uploads(model: str, model_text: str | None, system: str, system_text: str | None) -> bool:
    """Parse the uploads now, so that a bad file is reported in the sidebar's page and not deep
    inside a run; False (with the message shown) when one cannot be used."""
    try:
        resolve_model(model, model_text)
        resolve_system(system, system_text)
    except DecodexError as err:
        report(err, "Cannot use the uploaded file: ")
        return False
    return True


def design_point_inputs(key: str = "dp", *, default: DesignPoint | None = None,
                        allow_upload: bool = True, simulated: bool = False) -> DesignPoint | None:
    """Sidebar widgets for a design point; returns it, or None (with a message shown) when an
    upload cannot be used or the point is beyond the dashboard's bounds (``simulated``: those of
    a discrete-event run too). ``key`` prefixes the widget keys so that pages keep their own."""
    d = default or DesignPoint()
    bar = st.sidebar
    bar.header("Design point")
    models = list_models()
    systems = selectable_systems()
    model = bar.selectbox("Model", models, index=models.index(d.model) if d.model in models else 0,
                          key=f"{key}.model")
    system = bar.selectbox("System", systems, index=systems.index(d.system) if d.system in systems else 0,
                           key=f"{key}.system")
    model_text = system_text = None
    if allow_upload:
        (model, model_text), (system, system_text) = spec_uploads(key, model, system)
    mappers = [SYSTEM_DEFAULT_MAPPER, *MAPPERS]
    mapper = bar.selectbox("Mapper", mappers, index=mappers.index(d.mapper) if d.mapper in mappers else 0,
                           key=f"{key}.mapper")
    presets = list(PRECISION_PRESETS)
    precision = bar.selectbox("Precision", presets,
                              index=presets.index(d.precision) if d.precision in presets else 0,
                              key=f"{key}.precision")
    batch = int(bar.number_input("Batch (requests)", 1, MAX_BATCH, d.batch, key=f"{key}.batch"))
    context = int(bar.number_input("Context (cached tokens per request)", 1, MAX_CONTEXT, d.context, step=256,
                                   key=f"{key}.context"))
    auto = bar.checkbox("Auto layout", True, key=f"{key}.auto",
                        help="The smallest layout (tensor parallel, then tensor x pipeline) at which the step fits, "
                             "at most the system's devices; follows the model, system, batch and context. Off: "
                             "set TP, PP and EP yourself.")
    point = dataclasses.replace(d, model=model, system=system, precision=precision, batch=batch, context=context,
                                mapper=None if mapper == SYSTEM_DEFAULT_MAPPER else mapper,
                                model_text=model_text, system_text=system_text)
    if auto:
        if not check_uploads(model, model_text, system, system_text):
            return None
        try:
            point.check_size(simulated=simulated)  # the dashboard's bounds before any search
        except DecodexError as err:
            report(err)
            return None
        laid_out = with_layout(point, lambda: cached_layout(point))
        if laid_out is None:
            return None
        point = laid_out
    else:
        cols = bar.columns(3)
        tp = int(cols[0].number_input("TP", 1, MAX_TP, d.tp, key=f"{key}.tp"))
        pp = int(cols[1].number_input("PP", 1, MAX_PP, d.pp, key=f"{key}.pp"))
        ep = int(cols[2].number_input("EP", 1, MAX_EP, d.ep, key=f"{key}.ep"))
        point = dataclasses.replace(point, tp=tp, pp=pp, ep=ep)
    try:
        point.check_size(simulated=simulated)
    except DecodexError as err:
        report(err)
        return None
    return point if check_uploads(model, model_text, system, system_text) else None


P = TypeVar("P")


def with_layout(point: P, choose: Callable[[], LayoutChoice]) -> P | None:
    """``point`` (a dataclass with ``tp``, ``pp``, ``ep``) with the layout ``choose()`` returns,
    said in the sidebar; None (with the message shown) when no layout runs."""
    try:
        choice = choose()
    except DecodexError as err:
        report(err)
        return None
    layout = choice.parallelism
    st.sidebar.caption(f"Layout {choice.note}")
    return dataclasses.replace(point, tp=layout.tp, pp=layout.pp, ep=layout.ep)  # type: ignore[type-var]


def run_or_report(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``fn``; a DecodexError (bad input, an infeasible option) is shown as a message and
    gives None, so that a page never shows a traceback for the user's input."""
    try:
        return fn(*args, **kwargs)
    except DecodexError as err:
        report(err)
        return None
