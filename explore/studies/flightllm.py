"""FlightLLM studies: when an FPGA beats a GPU, prefill vs decode, and instruction storage (docs/flightllm.md).

Every point is LLaMA2-7B (or the given model) at batch 1, priced by the step model through the
FlightLLM runner (validation/runners_flightllm.py: decode steps integrated over the context,
prefill as one step). Variants of the FPGA are built in memory from the catalog device with
``dataclasses.replace``: N:M weight sparsity (precision), average bits per weight (precision) and
the DSP engine's size (MV/MM MACs per cycle and DSPs scaled together). Throughput in tokens/s,
energy in tokens/J; prices in USD (a device without a sourced price gives the break-even price
instead: what the FPGA may cost to match the GPU's tokens/s per dollar).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go

from decodex.hw_models.fpga import FpgaUnit
from decodex.hw_models.system import SystemSpec, load_system
from decodex.mappers.flightllm_compile import instruction_storage
from decodex.validation.runners_flightllm import run_metrics
from decodex.workloads.catalog import load_model
from decodex.workloads.precision import Precision

MODEL = "llama2-7b"
PAIRS = [[128, 512], [512, 512]]
GPU_RUNS = {"v100s-naive": {"system": "v100s", "precision": "fp16", "options": {"software": "hf-pytorch-2023"}},
            "v100s-opt": {"system": "v100s", "precision": "fp16"},
            "a100-opt": {"system": "a100-80g", "precision": "fp16"}}


def fpga_system(base: str = "alveo-u280", dsp_scale: float = 1.0) -> SystemSpec:
    """The catalog FPGA with its DSP engine scaled by ``dsp_scale`` (MACs per cycle and DSPs)."""
    system = load_system(base)
    device = system.primary_device
    units = {}
    for name, unit in device.units.items():
        if isinstance(unit, FpgaUnit) and unit.role == "matrix" and dsp_scale != 1.0:
            unit = dataclasses.replace(unit, mv_macs_per_cycle_per_slr=unit.mv_macs_per_cycle_per_slr * dsp_scale,
                                       mm_macs_per_cycle_per_slr=unit.mm_macs_per_cycle_per_slr * dsp_scale,
                                       dsps=round(unit.dsps * dsp_scale))
        units[name] = unit
    group = dataclasses.replace(system.groups[0], device=dataclasses.replace(device, units=units))
    return dataclasses.replace(system, name=f"{base}-dsp{dsp_scale:g}x", groups=(group,))


def _precision(sparsity: str | None, bits: float) -> str:
    weights = "int8" if bits >= 8 else "int4"
    text = f"w={weights},a=int8,kv=int8,wbits={bits:g}"
    return text + (f",sparsity={sparsity}" if sparsity else "")


def efficiency_sweep(*, sparsities: Sequence[str | None] = (None, "8:16", "4:16"),
                     bits: Sequence[float] = (3.0, 4.1, 8.0), dsp_scales: Sequence[float] = (0.5, 1.0, 2.0),
                     base: str = "alveo-u280", model: str = MODEL, pairs: list[list[int]] | None = None,
                     mode: str = "end_to_end") -> pd.DataFrame:
    """One row per (sparsity, bits, DSP scale, GPU): the FPGA's and the GPU's tokens/s and tokens/J,
    their ratios, and the FPGA price (USD) at which its tokens/s per dollar equals the GPU's."""
    pairs = pairs or PAIRS
    gpus = {name: run_metrics({**run, "mode": mode}, model, pairs) for name, run in GPU_RUNS.items()}
    prices = {name: load_system(run["system"]).primary_device.purchase_usd for name, run in GPU_RUNS.items()}
    rows = []
    for scale in dsp_scales:
        system = fpga_system(base, scale)
        for sparsity in sparsities:
            for b in bits:
                Precision.parse(_precision(sparsity, b))  # validates
                fpga = run_metrics({"system": system, "precision": _precision(sparsity, b), "mode": mode},
                                   model, pairs)
                for name, gpu in gpus.items():
                    price = prices[name]
                    rows.append({"dsp_scale": scale, "sparsity": sparsity or "dense", "bits_per_weight": b,
                                 "gpu": name, "fpga_tokens_per_s": fpga["throughput"],
                                 "gpu_tokens_per_s": gpu["throughput"],
                                 "throughput_ratio": fpga["throughput"] / gpu["throughput"],
                                 "fpga_tokens_per_joule": fpga["tokens_per_joule"],
                                 "energy_ratio": fpga["tokens_per_joule"] / gpu["tokens_per_joule"],
                                 "break_even_price_usd": (fpga["throughput"] * price / gpu["throughput"]
                                                          if price > 0 else float("nan"))})
    return pd.DataFrame(rows)


def prefill_decode_crossover(input_lens: Sequence[int] = (32, 128, 512, 1024, 2048, 4096), output_len: int = 128,
                             base: str = "alveo-u280", gpu: str = "v100s-naive", model: str = MODEL) -> pd.DataFrame:
    """FPGA vs GPU end-to-end time of one request per prompt length: prefill is compute-bound
    (the GPU's strength), decode memory-bound (the FPGA's); ``fpga_faster`` flips where they cross."""
    precision = _precision(None, 4.1)
    rows = []
    window = load_model(model).context_window or 10**9
    for n in input_lens:
        if n + output_len > window:
            continue
        f = run_metrics({"system": base, "precision": precision, "mode": "end_to_end"}, model, [[n, output_len]])
        g = run_metrics({**GPU_RUNS[gpu], "mode": "end_to_end"}, model, [[n, output_len]])
        rows.append({"input_len": n, "output_len": output_len, "fpga_tokens_per_s": f["throughput"],
                     "gpu_tokens_per_s": g["throughput"], "ratio": f["throughput"] / g["throughput"],
                     "fpga_faster": f["throughput"] > g["throughput"]})
    return pd.DataFrame(rows)


def storage_table(max_lens: Sequence[int] = (512, 1024, 2048, 4096), model: str = MODEL) -> pd.DataFrame:
    """Instruction storage (GB) with and without length-adaptive compilation per maximum length."""
    cfg = load_model(model)
    precision = Precision.parse(_precision(None, 4.1))
    rows = []
    for n in max_lens:
        s = instruction_storage(cfg, precision, n)
        rows.append({"max_len": n, "all_lengths_gb": s.all_lengths_bytes / 1e9, "bucketed_gb": s.bucketed_bytes / 1e9,
                     "reduction": s.reduction, "all_lengths_compile_s": s.all_lengths_compile_s,
                     "bucketed_compile_s": s.bucketed_compile_s})
    return pd.DataFrame(rows)


def efficiency_figure(frame: pd.DataFrame, gpu: str = "v100s-naive") -> go.Figure:
    """FPGA / GPU tokens-per-joule ratio by bits per weight, one line per (sparsity, DSP scale)."""
    fig = go.Figure()
    data = frame[frame["gpu"] == gpu]
    for (sparsity, scale), group in data.groupby(["sparsity", "dsp_scale"], sort=False):
        fig.add_trace(go.Scatter(x=group["bits_per_weight"], y=group["energy_ratio"], mode="lines+markers",
                                 name=f"{sparsity}, DSP x{scale:g}"))
    fig.add_hline(y=1.0, line_dash="dash", annotation_text=f"= {gpu}")
    fig.update_xaxes(title="average bits per weight")
    fig.update_yaxes(title=f"tokens/J, FPGA / {gpu}")
    fig.update_layout(title="When the FPGA beats the GPU on energy (LLaMA2-7B, batch 1)", template="plotly_white")
    return fig


def crossover_figure(frame: pd.DataFrame) -> go.Figure:
    """FPGA / GPU end-to-end throughput against the prompt length."""
    fig = go.Figure(go.Scatter(x=frame["input_len"], y=frame["ratio"], mode="lines+markers", name="FPGA / GPU"))
    fig.add_hline(y=1.0, line_dash="dash")
    fig.update_xaxes(type="log", title="prompt tokens (output 128)")
    fig.update_yaxes(title="throughput, FPGA / GPU")
    fig.update_layout(title="Prefill vs decode: where the GPU's compute wins back", template="plotly_white")
    return fig
