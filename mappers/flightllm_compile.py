"""FlightLLM's length-adaptive compilation: instruction storage as a function of the supported lengths.

The FPGA runs a pre-compiled instruction stream per step shape. A step's stream is counted from
its graph with the artifact's instruction geometry (github.com/FlightLLM/flightllm_test_demo:
``profile/inst_gen/isa.py`` lengths, ``profile/config.yaml`` tile sizes):

- a matmul of m rows: below ``MV_MAX_ROWS`` rows (decode) MV mode issues m x ceil(n / 512) MV
  instructions, each with the LD of its weight tile; above, MM mode issues ceil(m / 128) x
  ceil(n / 16) MM instructions, each with an LD; one ST per output row (MV) or row tile (MM);
- attention: per query row and head, ceil(L / 512) MV instructions for the scores and one for the
  values (K loops inside an instruction), each with an LD of its K or V tile, L = attended keys;
- an element-wise op: one MISC instruction per row;
- every layer is unrolled (an instruction stream has no loops over layers).

Instruction sizes: LD 28 B, ST 12 B, MM 16 B, MV 16 B, MISC 12 B (``INST_LENGTH_DICT`` x 4 B).
Without length-adaptive compilation a stream is stored for every prompt length 1 .. ``max_len``
and every decode context 1 .. ``max_len``; with it, prompts are padded to multiples of
``prefill_bucket`` (128) and decode contexts to multiples of ``decode_bucket`` (16), as the
artifact's ``profile/run.py`` pads them, and only those streams are stored. Compile time is the
instructions generated over an assumed generation rate (``instructions_per_s``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from decodex.workloads.batch import Batch
from decodex.workloads.builder import build_step_graph
from decodex.workloads.model_config import ModelConfig
from decodex.workloads.ops import AttentionOp, ElementwiseOp, MatmulOp, MoEExpertsOp, Op
from decodex.workloads.parallelism import Parallelism
from decodex.workloads.precision import Precision

INSTRUCTION_BYTES = {"LD": 28, "ST": 12, "MM": 16, "MV": 16, "MISC": 12}  # artifact isa.py: 7/3/4/4/3 x 32 bit
MV_TILE_N = 512  # artifact config.yaml MV_START_N_NUM: output columns per MV instruction
MM_TILE_M = 128  # artifact config.yaml MM_START_M_NUM: rows per MM instruction
MM_TILE_N = 16  # artifact config.yaml MM_START_N_NUM: output columns per MM instruction
MV_MAX_ROWS = 4  # MV mode below 4 rows: where the U280 engine's MV mode is faster (alveo-u280.toml, mm_tile_m 16)
PREFILL_BUCKET = 128  # artifact profile/run.py: prompts padded to multiples of 128 tokens
DECODE_BUCKET = 16  # artifact profile/run.py: decode positions padded to multiples of 16
INSTRUCTIONS_PER_S = 1.0e6  # assumed: instruction generation rate of the compiler (no figure published)


def op_instructions(op: Op) -> dict[str, float]:
    """Instructions one instance of ``op`` needs, by type (module docstring)."""
    if isinstance(op, MatmulOp):
        if op.m < MV_MAX_ROWS:
            tiles = op.count * op.m * math.ceil(op.n / MV_TILE_N)
            return {"MV": tiles, "LD": tiles, "ST": op.count * op.m}
        tiles = op.count * math.ceil(op.m / MM_TILE_M) * math.ceil(op.n / MM_TILE_N)
        return {"MM": tiles, "LD": tiles, "ST": op.count * math.ceil(op.m / MM_TILE_M)}
    if isinstance(op, MoEExpertsOp):
        active = float((op.expert_tokens > 0).sum(axis=2).max(axis=1).mean())
        width = (3 if op.gated else 2) * math.ceil(op.intermediate / MV_TILE_N)
        tiles = active * width
        return {"MV": tiles, "LD": tiles, "ST": active}
    if isinstance(op, AttentionOp):
        rows = op.query_lens.astype(np.float64)
        keys = op.context_lens.astype(np.float64) + rows
        per_head = (np.ceil(keys / MV_TILE_N) + 1.0) * rows
        tiles = float(per_head.sum()) * op.q_heads
        return {"MV": tiles, "LD": tiles, "ST": float(rows.sum()) * op.q_heads}
    if isinstance(op, ElementwiseOp):
        return {"MISC": max(1.0, op.elements / 4096.0)}
    return {}


def step_instruction_bytes(graph_ops: list[tuple[int, Op]]) -> float:
    """Bytes of the instruction stream of a step given as (repeat, op) pairs."""
    total = 0.0
    for repeat, op in graph_ops:
        total += repeat * sum(INSTRUCTION_BYTES[k] * n for k, n in op_instructions(op).items())
    return total


def stream_bytes(model: ModelConfig, precision: Precision, *, prompt: int = 0, context: int = 0) -> float:
    """Instruction bytes of one step: prefilling ``prompt`` tokens, or one decode at ``context``."""
    batch = Batch.mixed([], [prompt]) if prompt else Batch.decode(1, context)
    graph = build_step_graph(model, batch, precision, Parallelism())
    return step_instruction_bytes([(t.repeat, op) for t in graph.templates for op in t.ops])


@dataclass(frozen=True)
class InstructionStorage:
    """Instruction storage (B), streams stored and compile time (s), without and with buckets."""

    max_len: int
    all_lengths_bytes: float
    bucketed_bytes: float
    all_lengths_streams: int
    bucketed_streams: int
    all_lengths_compile_s: float
    bucketed_compile_s: float

    @property
    def reduction(self) -> float:
        """How many times smaller the bucketed storage is."""
        return self.all_lengths_bytes / self.bucketed_bytes


def instruction_storage(model: ModelConfig, precision: Precision, max_len: int = 2048, *,
                        prefill_bucket: int = PREFILL_BUCKET, decode_bucket: int = DECODE_BUCKET,
                        instructions_per_s: float = INSTRUCTIONS_PER_S, samples: int = 33) -> InstructionStorage:
    """Storage of the streams for prompts and decode contexts up to ``max_len`` tokens, compiled
    for every length or only for bucket lengths. A stream's size is affine in its length between
    bucket edges, so the all-lengths sums are integrated from ``samples`` lengths per phase
    (trapezoid rule over the sampled sizes) rather than 2 x ``max_len`` graph builds."""
    mean_instruction = float(np.mean(list(INSTRUCTION_BYTES.values())))

    def size(phase: str, length: int) -> float:
        if phase == "prefill":
            return stream_bytes(model, precision, prompt=length)
        return stream_bytes(model, precision, context=length)

    def total(phase: str, lengths: np.ndarray) -> float:
        return float(sum(size(phase, int(n)) for n in lengths))

    def integrate(phase: str) -> float:
        top = max_len if phase == "prefill" else max_len - 1  # a decode at context c reaches position c + 1
        xs = np.unique(np.linspace(1, top, samples).round().astype(int))
        ys = np.array([size(phase, int(x)) for x in xs])
        return float(np.trapezoid(ys, xs) + (ys[0] + ys[-1]) / 2.0)

    prefill_buckets = np.arange(prefill_bucket, max_len + 1, prefill_bucket)
    decode_buckets = np.arange(decode_bucket, max_len, decode_bucket)
    all_bytes = integrate("prefill") + integrate("decode")
    bucket_bytes = total("prefill", prefill_buckets) + total("decode", decode_buckets)
    return InstructionStorage(
        max_len=max_len, all_lengths_bytes=all_bytes, bucketed_bytes=bucket_bytes,
        all_lengths_streams=2 * max_len, bucketed_streams=int(prefill_buckets.size + decode_buckets.size),
        all_lengths_compile_s=all_bytes / mean_instruction / instructions_per_s,
        bucketed_compile_s=bucket_bytes / mean_instruction / instructions_per_s)
