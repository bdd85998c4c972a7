"""Pricing a decode step's bilinear form over many (batch, context) points at once.

Follows :func:`sim.estimate.evaluate` op by op with numpy over all points: a roofline unit's time
is ``overlap(compute, memory, exponent) + op_overhead_s`` with matmul rows padded to whole tiles
(``tile_m``), its efficiency curve at the padded FLOP and its memory's efficiency curve at the
op's bytes; a collective takes the cheapest algorithm of :mod:`hw_models.collectives`; times add up
with each template's ``repeat``; energy is the dynamic energy of every op on its devices plus the
running power floor, capped at the power limit (:meth:`hw_models.device.PowerSpec.step_energy`);
memory use is :func:`sim.memory.memory_use`'s, on the most loaded pipeline stage.
"""

from __future__ import annotations

import numpy as np

from decodex.hw_models.collectives import collective_cost_many
from decodex.hw_models.memory import MemorySpec
from decodex.hw_models.roofline import MIN_TILE_ROWS
from decodex.sim.grid_terms import GridForm, LinkTerms, UnitTerms, poly


def padded_rows_many(m: np.ndarray, tile_m: int) -> np.ndarray:
    """Vectorized :func:`hw_models.roofline.padded_rows` for integer-valued float ``m`` (rows)."""
    if tile_m <= 0:
        return m
    safe = np.maximum(m, 1.0)
    power = np.exp2(np.ceil(np.log2(safe)))  # the next power of two (m <= tile_m <= 4096: exact)
    small = np.minimum(float(tile_m), np.maximum(float(MIN_TILE_ROWS), power))
    large = np.ceil(safe / tile_m) * tile_m
    return np.where(m <= 0, m, np.where(m <= tile_m, small, large))


def _overlap(compute: np.ndarray, memory: np.ndarray, exponent: float) -> np.ndarray:
    """Vectorized :func:`hw_models.roofline.overlap`, s."""
    high = np.maximum(compute, memory)
    if exponent <= 0:
        return high
    low = np.minimum(compute, memory)
    ratio = np.divide(low, high, out=np.zeros_like(high), where=high > 0)
    return np.where(low > 0, high * (1.0 + ratio ** exponent) ** (1.0 / exponent), high)


def _transfer_time(memory: MemorySpec, nbytes: np.ndarray) -> np.ndarray:
    """Vectorized :meth:`hw_models.memory.MemorySpec.transfer_time`, s."""
    if memory.bandwidth_bytes_per_s <= 0:
        return np.where(nbytes <= 0, 0.0, np.inf)
    bandwidth = memory.bandwidth_bytes_per_s * memory.efficiency.at_many(nbytes)
    return np.where(nbytes <= 0, 0.0, nbytes / bandwidth)


def _unit_cost(term: UnitTerms, batch: np.ndarray, context: np.ndarray,
               both: np.ndarray) -> tuple[np.ndarray, ...]:
    """Time (s), dynamic energy per device (J), FLOP and bytes of one instance of a placed compute
    op, per point (:meth:`hw_models.roofline.RooflineUnit.op_cost`)."""
    executed = poly(term.executed_flops, batch, context, both)
    work = executed
    if term.rows is not None:
        rows = np.rint(poly(term.rows, batch, context, both))
        padded = padded_rows_many(rows, term.tile_m)
        work = np.where(rows > 0, executed * padded / np.where(rows > 0, rows, 1.0), executed)
    if term.peak_flops > 0:
        compute = np.where(executed > 0, work / (term.peak_flops * term.efficiency.at_many(work)), 0.0)
    else:
        compute = np.zeros_like(executed)
    nbytes = poly(term.nbytes, batch, context, both)
    flops = executed if term.dense_equal else poly(term.flops, batch, context, both)
    if term.kernel is not None:  # decode attention by kernel waves (RooflineUnit._decode_attention_cost)
        heads = batch * term.kv_heads
        time = term.kernel.time_many(batch, term.kv_heads, nbytes / heads, flops / heads,
                                     term.memory.bandwidth_bytes_per_s, term.peak_flops)
    else:
        memory = _transfer_time(term.memory, nbytes) / term.bandwidth_factor
        time = _overlap(compute, memory, term.overlap_exponent) + term.overhead_s
    energy = flops * term.energy_per_flop_j + nbytes * term.memory.energy_per_byte_j
    return time, energy, flops, nbytes


def _link_cost(term: LinkTerms, batch: np.ndarray, context: np.ndarray,
               both: np.ndarray) -> tuple[np.ndarray, ...]:
    """Time (s), energy (J), FLOP and bytes of one collective, per point
    (:func:`hw_models.collectives.collective_cost`)."""
    flops = poly(term.flops, batch, context, both)
    nbytes = poly(term.nbytes, batch, context, both)
    p = term.devices
    if p <= 1 and term.collective != "send_recv":
        zero = np.zeros(batch.size)
        return zero, zero, flops, nbytes
    payload = poly(term.payload, batch, context, both)
    time, sent = collective_cost_many(term.collective, payload, p, term.link)
    return time, sent * term.link.energy_per_byte_j, flops, nbytes


def price(form: GridForm, batch: np.ndarray, context: np.ndarray) -> dict[str, np.ndarray]:
    """Every column of :func:`sim.vector_estimate.estimate_grid` but ``reason`` (and the inputs),
    per point of the integer arrays ``batch`` (requests) and ``context`` (tokens): times in s,
    energy in J, FLOP, bytes in B per device, ``util.UNIT`` busy shares (fractions of the step)
    and ``workspace_bytes`` (B)."""
    b = batch.astype(np.float64)
    c = context.astype(np.float64)
    both = b * c
    n = b.size
    step = np.zeros(n)
    dynamic = np.zeros(n)
    flops = np.zeros(n)
    nbytes = np.zeros(n)
    busy: dict[str, np.ndarray] = {}
    for term in form.terms:
        if isinstance(term, UnitTerms):
            time, energy, op_flops, op_bytes = _unit_cost(term, b, c, both)
        else:
            time, energy, op_flops, op_bytes = _link_cost(term, b, c, both)
        busy[term.unit] = busy.get(term.unit, 0.0) + time * term.repeat
        step += time * term.repeat
        dynamic += energy * term.devices * term.repeat
        flops += op_flops * term.repeat
        nbytes += op_bytes * term.repeat
    power = form.power
    devices = form.devices_used
    energy_j = np.minimum(dynamic + power.running_w * devices * step, power.tdp_w * devices * step)
    weights = poly(form.stage_weights, b, c, both)
    kv = poly(form.stage_kv, b, c, both)
    if weights.shape[0] > 1:
        heaviest = np.argmax(weights + kv, axis=0)
        columns = np.arange(n)
        weights, kv = weights[heaviest, columns], kv[heaviest, columns]
    else:
        weights, kv = weights[0], kv[0]
    workspace = np.maximum(0.0, poly(form.activations, b, c, both).max(axis=0)) if form.activations.shape[1] \
        else np.zeros(n)
    required = weights + kv + workspace
    with np.errstate(divide="ignore", invalid="ignore"):
        tokens_per_s = np.where(step > 0, b / np.where(step > 0, step, 1.0), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        shares = {f"util.{unit}": np.where(step > 0, t / np.where(step > 0, step, 1.0), 0.0)
                  for unit, t in busy.items()}
    return {**shares, "step_time_s": step, "tokens_per_s": tokens_per_s, "energy_j": energy_j,
            "energy_per_token_j": energy_j / b, "weight_bytes": weights, "kv_bytes": kv,
            "workspace_bytes": workspace, "memory_required_bytes": required, "flops": flops, "bytes": nbytes}
