"""Weight GEMVs on the bank-level PIM (:class:`hw_models.bank_pim.BankPimUnit`): matmul and MoE-experts ops.

Newton / HBM-PIM style: the weights live in the banks and never leave them; each token's input
vector is sent to the PIM and one pass over the weights computes that token's outputs. Symbols as
in :mod:`hw_models.bank_pim` (C channels of B_ch banks, P_DRAM elements per row, P_comp elements
per all-bank COMP, cycles of ``tck_s`` seconds).

Layout of one (K × N) weight matrix (K: input width, N: output rows): the N output rows are split
over all C channels (output row r in channel r mod C, so the slowest channel holds
rows_ch = ceil(N / C)), and inside a channel over its banks (bank b holds the channel's output rows
b, b + B_ch, ...). Each output row's K weights are cut into ceil(K / P_DRAM) row-sized chunks, one
DRAM row each; the chunks of the B_ch output rows of a *row group* sit in the same row of every
bank, so that one tile (that row opened in all banks, :meth:`BankPimUnit.tile_cycles`) multiplies
one chunk of B_ch output rows.

One token's pass over the matrix, per channel: for each of the ceil(K / P_DRAM) chunks, one GWRITE
loads the token's chunk of the input vector (P_DRAM elements, or the remainder) into the channel's
global buffer (:attr:`BankPimUnit.gwrite_cycles`); then each of the ceil(rows_ch / B_ch) row groups
runs one tile with ceil(s / P_comp) COMPs (s: the chunk's width) and **one READRES per tile**: the
bank's result latch holds the partial dot product of one chunk, read out (one result per bank,
:attr:`BankPimUnit.readres_cycles`) before the next row is opened; the partial sums of an output
row's chunks are added outside the banks (not priced). That is Newton's command sequence (GWRITE,
ganged ACT, COMPs, READRES per DRAM-row tile: He et al., MICRO 2020) and the NeuPIMs artifact's K·q
issue, where a tile READRESes once per head of its chunk; here the "head" is the whole K, so once.
The pass ends with the CL of its last READRES:

    cycles(K, N) = f · [ceil(K/P_DRAM) · gwrite + ceil(rows_ch/B_ch) · Σ_chunks tile(ceil(s/P_comp), 1)] + CL

(f: :meth:`BankPimUnit.refresh_factor` of the tiles, 1 on a unit without refresh)
which is :meth:`BankPimUnit.request_work`'s K·q part with E = K, qk_dim = K, seq = rows_ch and
one query token (GQA group 1). The global buffer holds one input vector, so ``m`` tokens cost ``m``
passes (no reuse of a row across tokens: why a bank PIM pays off only at Op/B ≈ 1), and ``count``
independent products ``count`` times that. The op's time is its slowest channel's (channels run
in parallel); dynamic energy counts every channel's commands with :meth:`BankPimUnit.energy_j`
(COMPs, GWRITEs as row_bytes / io_bytes writes, READRESes).

MoE experts (:class:`workloads.ops.MoEExpertsOp`): every expert's matrices are spread the same way
over all channels. A token routed to an expert passes through its up projection (gate and up
fused: K = hidden, N = 2 · intermediate when gated, they read the same input vector) and its down
projection (K = intermediate, N = hidden), so a rank's time is its routed tokens × one token's time:
the number of active experts does not matter (no weights are moved). As on the other units, the
op's time is the slowest rank's per routing draw, averaged over the draws (MoE layers).

Weights are laid out by their stored dtype (P_DRAM and P_comp from ``weight_dtype``); N:M sparsity
is run dense (no skipping in the banks) and a mixed-precision ``weight_bits`` is not modelled.
Memory sharing as for attention: with ``access = "concurrent"`` the op reports no memory time,
with ``"exclusive"`` it holds the memory (``memory_s = compute_s``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from decodex.core.dtypes import DType
from decodex.core.errors import ArgumentError
from decodex.hw_models.bank_pim import BankPimUnit, RequestWork
from decodex.hw_models.cost import OpCost, UnsupportedOpError, roofline_bound
from decodex.hw_models.memory import MemorySpec
from decodex.workloads.ops import MatmulOp, MoEExpertsOp, Op

Shape = tuple[int, int]  # (K, N): input width and output rows of one weight matrix


@dataclass(frozen=True)
class GemvPass:
    """One token's pass over one (K × N) weight matrix spread over all channels.

    ``cycles``: the slowest channel's DRAM cycles (GWRITEs, tiles, the last READRES's CL).
    ``comps``, ``gwrites``, ``readres``, ``tiles``: command counts summed over all channels."""

    k: int
    n: int
    rows_per_channel: int
    chunks: int
    row_groups: int
    cycles: float
    comps: float
    gwrites: float
    readres: float
    tiles: float


def gemv_pass(unit: BankPimUnit, k: int, n: int, dtype: DType = DType.FP16) -> GemvPass:
    """One token's pass over a (``k`` × ``n``) matrix of ``dtype`` weights (module docstring)."""
    if k < 1 or n < 1:
        raise ArgumentError(f"GEMV shape: K={k} and N={n} must be >= 1")
    p_row = unit.elements_per_row(dtype)
    p_comp = unit.elements_per_comp(dtype)
    banks, channels = unit.banks_per_channel, unit.channels
    full, rem = divmod(int(k), p_row)
    chunks = full + (rem > 0)
    full_comps = float(np.ceil(p_row / p_comp))
    rem_comps = float(np.ceil(rem / p_comp)) if rem else 0.0
    chunk_comps = full * full_comps + rem_comps  # COMPs of one row group over all chunks
    chunk_cycles = full * float(unit.tile_cycles(full_comps, 1.0))
    if rem:
        chunk_cycles += float(unit.tile_cycles(rem_comps, 1.0))
    rows_slow = -(-int(n) // channels)
    groups_slow = -(-rows_slow // banks)
    refresh = float(unit.refresh_factor(full_comps if full else rem_comps, 1.0))  # 1 without refresh
    cycles = refresh * (chunks * unit.gwrite_cycles + groups_slow * chunk_cycles) + unit.cl
    # every channel's commands: r channels hold q + 1 output rows, the others q
    q, r = divmod(int(n), channels)
    groups_all = r * -(-(q + 1) // banks) + (channels - r) * -(-q // banks)
    active = min(int(n), channels)
    return GemvPass(k=int(k), n=int(n), rows_per_channel=rows_slow, chunks=chunks, row_groups=groups_slow,
                    cycles=float(cycles), comps=float(groups_all * chunk_comps), gwrites=float(active * chunks),
                    readres=float(groups_all * chunks), tiles=float(groups_all * chunks))


def matmul_shapes(op: MatmulOp) -> tuple[Shape, ...]:
    """The (K, N) a token of ``op`` passes through (one matrix; ``count`` is counted in tokens)."""
    return ((int(op.k), int(op.n)),)


def expert_shapes(op: MoEExpertsOp) -> tuple[Shape, ...]:
    """The (K, N) of the matrices a token routed to one expert of ``op`` passes through: the fused
    gate and up projection (N = 2 · intermediate when gated) and the down projection."""
    up = (2 if op.gated else 1) * int(op.intermediate)
    return (int(op.hidden), up), (int(op.intermediate), int(op.hidden))


def token_seconds(unit: BankPimUnit, shapes: Sequence[Shape], dtype: DType = DType.FP16) -> float:
    """Time of one token through the matrices ``shapes``, one after another, s."""
    return sum(gemv_pass(unit, k, n, dtype).cycles for k, n in shapes) * unit.tck_s


def token_energy_j(unit: BankPimUnit, shapes: Sequence[Shape], dtype: DType = DType.FP16) -> float:
    """Dynamic energy of one token through the matrices ``shapes`` (every channel's commands), J."""
    passes = [gemv_pass(unit, k, n, dtype) for k, n in shapes]

    def total(name: str) -> np.ndarray:
        return np.array([sum(getattr(p, name) for p in passes)])

    work = RequestWork(cycles=np.array([sum(p.cycles for p in passes)]), comps=total("comps"),
                       gwrites=total("gwrites"), readres=total("readres"), tiles=total("tiles"),
                       io_writes=np.zeros(1))
    return unit.energy_j(work)


def token_flops(shapes: Sequence[Shape]) -> float:
    """Dense FLOP of one token through the matrices ``shapes`` (2 per weight)."""
    return float(sum(2.0 * k * n for k, n in shapes))


def _weight_dtype(op: MatmulOp | MoEExpertsOp) -> DType:
    return op.weight_dtype if op.weight_dtype is not None else op.dtype


def _cost(unit: BankPimUnit, compute_s: float, energy_j: float, memories: Mapping[str, MemorySpec]) -> OpCost:
    """The OpCost of ``compute_s`` of PIM commands (memory time by the memory's ``access``)."""
    memory_s = compute_s if memories[unit.memory].access == "exclusive" else 0.0
    return OpCost(compute_s + unit.op_overhead_s, compute_s, memory_s, unit.op_overhead_s,
                  roofline_bound(compute_s, memory_s, unit.op_overhead_s), energy_j)


def gemv_op_cost(unit: BankPimUnit, op: Op, memories: Mapping[str, MemorySpec]) -> OpCost:
    """Cost of a weight matmul or MoE-experts ``op`` on ``unit`` (module docstring); other ops,
    and matmuls without a weight operand, raise UnsupportedOpError."""
    if not unit.supports(op.dtype):
        have = ", ".join(str(d) for d in unit.dtypes)
        raise UnsupportedOpError(f"unit {unit.name!r} has no {op.dtype} datapath (it has: {have})")
    if isinstance(op, MatmulOp):
        if op.weight_dtype is None:
            raise UnsupportedOpError(f"unit {unit.name!r} (bank_pim) runs weight matmuls only; {op.name!r} "
                                     "multiplies two activations")
        shapes, wdtype = matmul_shapes(op), _weight_dtype(op)
        tokens = float(op.m) * op.count
        return _cost(unit, tokens * token_seconds(unit, shapes, wdtype),
                     tokens * token_energy_j(unit, shapes, wdtype), memories)
    if isinstance(op, MoEExpertsOp):
        shapes, wdtype = expert_shapes(op), _weight_dtype(op)
        rank_tokens = np.asarray(op.expert_tokens, dtype=np.float64).sum(axis=2)  # (draws, ranks)
        per_token = token_seconds(unit, shapes, wdtype)
        compute_s = float((rank_tokens * per_token).max(axis=1).mean()) if rank_tokens.size else 0.0
        energy = float(rank_tokens.mean()) * token_energy_j(unit, shapes, wdtype) if rank_tokens.size else 0.0
        return _cost(unit, compute_s, energy, memories)
    raise UnsupportedOpError(f"unit {unit.name!r} (bank_pim) runs attention, weight matmuls and MoE experts, "
                             f"not {op.kind} op {op.name!r}")


def grouped_gemm_times(unit: BankPimUnit, flops: np.ndarray, gemms: np.ndarray, nbytes: np.ndarray, dtype: DType,
                       memory: MemorySpec, shapes: Sequence[Shape] | None = None,
                       weight_dtype: DType | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Time, compute and memory (s) of grouped expert GEMVs of ``flops`` dense FLOP (arrays of one
    shape, element-wise, e.g. per (draw, rank, experts moved)), as
    :meth:`hw_models.roofline.RooflineUnit.grouped_gemm_times` answers it; no op overhead.

    ``shapes``: the (K, N) matrices one token passes through (:func:`expert_shapes`); the tokens
    are ``flops`` / :func:`token_flops` and each costs :func:`token_seconds`, so the result equals
    :func:`gemv_op_cost` on an op with those token counts. ``gemms`` (active experts) and
    ``nbytes`` do not change the time: the weights stay in the banks. Memory time: 0 when the
    memory's ``access`` is ``concurrent``, the whole time when ``exclusive``."""
    if shapes is None:
        raise ArgumentError(f"unit {unit.name!r} (bank_pim) prices GEMVs by shape: pass shapes=((K, N), ...)")
    flops = np.asarray(flops, dtype=np.float64)
    tokens = flops / token_flops(shapes)
    time = np.where(flops > 0, tokens * token_seconds(unit, shapes, weight_dtype or dtype), 0.0)
    mem = time.copy() if memory.access == "exclusive" else np.zeros_like(time)
    return time, time.copy(), mem
