"""Bounds on the size of each point the dashboard runs, not only on how many: a design point
(Design point, Timeline, Systems compared), a serving run (Serving) and every point of a sweep
run on the Sweep explorer are checked here before anything runs, so that one request from a
browser cannot ask for a batch of a million requests, a billion-token context or a hundred
million requests and hold the server for hours. Each refusal is an :class:`ArgumentError` (a
:class:`DecodexError`) whose one-line message names the field, the value and the allowed range,
and points to the command line, which has its own (larger) bounds, for bigger runs.

The costs behind the numbers (one core): ``estimate`` grows with the batch (4,096 requests take
about 0.1 s); ``simulate`` grows with pipeline stages times micro-batches (the discrete-event
engine plays every micro-batch through every stage: pp 32 with 32 micro-batches takes about 2 s,
pp 80 about 11 s); a serving run takes about 60 us per iteration, and at low load, where each
request runs alone, it has about one iteration per output token (and one per prefill chunk).
"""

from __future__ import annotations

import math
from typing import Any

from decodex.core.errors import ArgumentError
from decodex.explore.sweep_space import SweepSpace
from decodex.sim.serving.workload import PRESETS

MAX_BATCH = 4096
"""Most requests in one decode step (design point, timeline, systems compared, sweep points)."""
MAX_CONTEXT = 1_048_576
"""Most cached tokens per request of one decode step."""
MAX_BATCH_TOKENS = 2**27
"""Most cached tokens in one decode step, batch x context (134,217,728: e.g. 4,096 x 32,768 or
128 x 1,048,576; no catalog system holds the KV cache of more)."""
MAX_TP = 1024
"""Largest tensor-parallel degree."""
MAX_PP = 256
"""Most pipeline stages."""
MAX_EP = 1024
"""Largest expert-parallel degree."""
MAX_SIMULATE_PIPELINE = 1024
"""Most pipeline stages x micro-batches of a ``simulate`` run (the timeline, simulate sweeps);
micro-batches default to min(pp, batch), so pp <= 32 at the default (about 2 s)."""
MAX_SERVE_REQUESTS = 5000
"""Most requests one serving run draws."""
MAX_SERVE_LENGTH = 1_000_000
"""Largest mean prompt or output length of a serving workload, tokens per request."""
MAX_SERVE_ITERATIONS = 2_500_000
"""Most scheduler iterations a serving run may need at low load: requests x mean output tokens
(each request alone decodes one token per iteration), plus requests x prefill chunks per prompt
with the chunked scheduler (about 60 us each: seconds at the usual loads, about 2.5 minutes at worst;
keeps the 5,000 ShareGPT requests the page always allowed)."""
FIXED_LENGTHS = (512, 128)
"""Prompt and output tokens of the ``fixed`` workload preset when not given."""
CLI_HINT = "; run bigger points with the command line (`decodex estimate`, `simulate`, `serve` or `sweep`)"


def check_whole(value: Any, name: str, lo: int, hi: int) -> int:
    """``value`` as an int in [lo, hi] (a count: requests, tokens, devices); ArgumentError naming
    ``name`` and the range otherwise (a bool, a string, NaN, an infinity or a fraction is refused)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ArgumentError(f"{name} = {value!r} must be a whole number in [{lo:,}, {hi:,}]")
    if isinstance(value, float) and (not math.isfinite(value) or value != round(value)):
        raise ArgumentError(f"{name} = {value!r} must be a whole number in [{lo:,}, {hi:,}]")
    number = int(value)
    if not lo <= number <= hi:
        raise ArgumentError(f"{name} = {number:,} is outside [{lo:,}, {hi:,}] here" + (CLI_HINT if number > hi else ""))
    return number


def check_step_size(batch: Any, context: Any, tp: Any = 1, pp: Any = 1, ep: Any = 1, *, where: str = "") -> None:
    """Raise ArgumentError unless one decode step is within the dashboard's bounds: ``batch``
    requests in [1, MAX_BATCH], ``context`` cached tokens per request in [0, MAX_CONTEXT], batch x
    context at most MAX_BATCH_TOKENS tokens, tp / pp / ep in [1, MAX_TP / MAX_PP / MAX_EP].
    ``where`` prefixes the field names (e.g. ``"sweep.fixed."``)."""
    b = check_whole(batch, f"{where}batch", 1, MAX_BATCH)
    c = check_whole(context, f"{where}context", 0, MAX_CONTEXT)
    if b * c > MAX_BATCH_TOKENS:
        raise ArgumentError(f"{where}batch x {where}context = {b:,} x {c:,} = {b * c:,} cached tokens is more than "
                            f"the {MAX_BATCH_TOKENS:,} tokens of one step allowed here{CLI_HINT}")
    check_parallel(tp, pp, ep, where=where)


def check_parallel(tp: Any = 1, pp: Any = 1, ep: Any = 1, *, where: str = "") -> None:
    """Raise ArgumentError unless the tensor-, pipeline- and expert-parallel degrees are whole
    numbers in [1, MAX_TP], [1, MAX_PP] and [1, MAX_EP]."""
    check_whole(tp, f"{where}tp", 1, MAX_TP)
    check_whole(pp, f"{where}pp", 1, MAX_PP)
    check_whole(ep, f"{where}ep", 1, MAX_EP)


def check_simulate_size(batch: Any, pp: Any, microbatches: Any = None, *, where: str = "") -> None:
    """Raise ArgumentError when a ``simulate`` run of ``batch`` requests on ``pp`` pipeline stages
    with ``microbatches`` micro-batches (None: the mapper's default, min(pp, batch) when pp > 1)
    plays more than MAX_SIMULATE_PIPELINE stage x micro-batch pairs."""
    b = check_whole(batch, f"{where}batch", 1, MAX_BATCH)
    stages = check_whole(pp, f"{where}pp", 1, MAX_PP)
    micro = (min(stages, b) if stages > 1 else 1) if microbatches is None else \
        check_whole(microbatches, f"{where}mapper.microbatches", 1, MAX_BATCH)
    if stages * micro > MAX_SIMULATE_PIPELINE:
        raise ArgumentError(f"{where}pp x micro-batches = {stages} x {micro} = {stages * micro:,} is more than the "
                            f"{MAX_SIMULATE_PIPELINE:,} a simulated step may play here (the discrete-event engine "
                            f"runs every micro-batch through every stage){CLI_HINT}")


def mean_lengths(dataset: str, input_len: Any = None, output_len: Any = None) -> tuple[float, float]:
    """Mean prompt and output tokens per request of the workload preset ``dataset`` with the
    given lengths (None: the preset's own; a length that is not a number counts as the preset's,
    the workload reader refuses it). Unknown presets count as the longest preset."""
    if dataset == "fixed":
        base_in, base_out = FIXED_LENGTHS
    else:
        base_in, base_out = PRESETS.get(dataset, (max(p[0] for p in PRESETS.values()),
                                                  max(p[1] for p in PRESETS.values())))
    mean_in = float(input_len) if isinstance(input_len, int | float) and not isinstance(input_len, bool) else base_in
    mean_out = float(output_len) if isinstance(output_len, int | float) and not isinstance(output_len, bool) \
        else base_out
    return mean_in, mean_out


def check_serve_size(requests: Any, dataset: str = "sharegpt", input_len: Any = None, output_len: Any = None,
                     scheduler: str = "continuous", chunk: Any = 512, *, where: str = "") -> None:
    """Raise ArgumentError unless a serving run is within the dashboard's bounds: ``requests`` in
    [1, MAX_SERVE_REQUESTS]; ``input_len`` / ``output_len`` (mean tokens per request; None: the
    preset's) at most MAX_SERVE_LENGTH; the iterations it needs at low load (requests x mean
    output tokens, plus requests x prefill chunks per prompt for ``chunked``, ``chunk`` tokens
    each) at most MAX_SERVE_ITERATIONS."""
    n = check_whole(requests, f"{where}requests", 1, MAX_SERVE_REQUESTS)
    for name, value in (("input_len", input_len), ("output_len", output_len)):
        if value is not None:
            check_whole(value, f"{where}{name}", 1, MAX_SERVE_LENGTH)
    mean_in, mean_out = mean_lengths(dataset, input_len, output_len)
    iterations = n * mean_out
    if scheduler == "chunked":
        iterations += n * math.ceil(mean_in / check_whole(chunk, f"{where}chunk", 1, MAX_SERVE_LENGTH))
    if iterations > MAX_SERVE_ITERATIONS:
        raise ArgumentError(
            f"{where}requests x tokens: {n:,} requests of about {mean_out:,.0f} output tokens"
            + (f" and {math.ceil(mean_in / float(chunk)):,} prefill chunks" if scheduler == "chunked" else "")
            + f" need up to {iterations:,.0f} iterations, more than the {MAX_SERVE_ITERATIONS:,} a serving run may "
              f"take here; draw fewer or shorter requests{CLI_HINT}")


SIZE_BOUNDS: dict[str, tuple[int, int]] = {
    "batch": (1, MAX_BATCH), "context": (0, MAX_CONTEXT), "tp": (1, MAX_TP), "pp": (1, MAX_PP), "ep": (1, MAX_EP),
    "mapper.microbatches": (1, MAX_BATCH), "requests": (1, MAX_SERVE_REQUESTS), "input_len": (1, MAX_SERVE_LENGTH),
    "output_len": (1, MAX_SERVE_LENGTH), "chunk": (1, MAX_SERVE_LENGTH),
}
"""Sweep point parameters whose size is bounded, with the range each value must lie in."""
DEFAULTS: dict[str, int] = {"batch": 1, "context": 1024, "pp": 1, "requests": 200, "chunk": 512}
"""What a sweep point without the parameter runs with (:mod:`explore.points`)."""


def _taken(space: SweepSpace, key: str) -> tuple[str, list[Any]] | None:
    """(field name, every value ``key`` takes in ``space``; a range as its extreme values drawn),
    or None when ``space`` does not set ``key``."""
    if key in space.fixed:
        return f"sweep.fixed.{key}", [space.fixed[key]]
    for axis in space.axes:
        if axis.name == key:
            name = f'sweep.axes."{key}"' if "." in key else f"sweep.axes.{key}"
            if axis.values is not None:
                return name, list(axis.values)
            if axis.integer:
                return name, [math.ceil(axis.low), math.floor(axis.high)]
            return name, [axis.low, axis.high]
    return None


def check_space_sizes(space: SweepSpace) -> None:
    """Raise ArgumentError unless every point of ``space`` (a sweep run on the Sweep explorer) is
    within the bounds above for the space's mode: each value of a size parameter in its range of
    :data:`SIZE_BOUNDS` (a range axis by its low and high), the largest batch x the largest
    context at most MAX_BATCH_TOKENS; for ``simulate``, pp x micro-batches at most
    MAX_SIMULATE_PIPELINE; for ``serve``, the most requests with the longest outputs and the
    smallest chunk at most MAX_SERVE_ITERATIONS. The worst combination is checked even where a
    random sample might not draw it."""
    largest: dict[str, int] = {}
    smallest: dict[str, int] = {}
    names: dict[str, str] = {}
    for key, (lo, hi) in SIZE_BOUNDS.items():
        taken = _taken(space, key)
        if taken is None:
            continue
        names[key], values = taken
        numbers = [check_whole(value, f"{space.source}: {names[key]}", lo, hi) for value in values]
        largest[key], smallest[key] = max(numbers), min(numbers)

    def name(key: str) -> str:
        return names.get(key, key)

    batch, context = largest.get("batch", DEFAULTS["batch"]), largest.get("context", DEFAULTS["context"])
    if batch * context > MAX_BATCH_TOKENS:
        raise ArgumentError(f"{space.source}: {name('batch')} x {name('context')}: a point of {batch:,} x {context:,} "
                            f"= {batch * context:,} cached tokens is more than the {MAX_BATCH_TOKENS:,} tokens of "
                            f"one step allowed here{CLI_HINT}")
    if space.mode == "simulate":
        pp = largest.get("pp", DEFAULTS["pp"])
        micro = largest.get("mapper.microbatches", min(pp, batch) if pp > 1 else 1)
        if pp * micro > MAX_SIMULATE_PIPELINE:
            raise ArgumentError(f"{space.source}: {name('pp')} x micro-batches: a point of {pp} x {micro} = "
                                f"{pp * micro:,} is more than the {MAX_SIMULATE_PIPELINE:,} a simulated step may "
                                f"play here{CLI_HINT}")
    if space.mode == "serve":
        requests = largest.get("requests", DEFAULTS["requests"])
        taken = _taken(space, "dataset")
        datasets = [d for d in (taken[1] if taken else ["sharegpt"]) if isinstance(d, str)] or ["sharegpt"]
        taken = _taken(space, "scheduler")
        chunked = "chunked" in (taken[1] if taken else [])
        chunk = smallest.get("chunk", DEFAULTS["chunk"])
        cost = 0.0
        for dataset in datasets:
            mean_in, mean_out = mean_lengths(dataset, largest.get("input_len"), largest.get("output_len"))
            cost = max(cost, requests * (mean_out + (math.ceil(mean_in / chunk) if chunked else 0)))
        if cost > MAX_SERVE_ITERATIONS:
            raise ArgumentError(f"{space.source}: {name('requests')} x tokens: a point of {requests:,} requests needs "
                                f"up to {cost:,.0f} iterations, more than the {MAX_SERVE_ITERATIONS:,} a serving run "
                                f"may take here; draw fewer or shorter requests{CLI_HINT}")
