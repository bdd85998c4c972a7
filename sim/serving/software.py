"""Serving software: what the engine serving the model adds to the hardware's step time.

A serving engine (vLLM, TensorRT-LLM ...) decides how iterations are batched, how the KV cache
is sized and admitted, and spends host time on every iteration (scheduling, sampling,
detokenization, input preparation) that the device does not hide: a fixed part per iteration and a
part per request in it (sampling, per-sequence bookkeeping). Each is declared in a TOML
file of ``hw_models/catalog/software/`` with a source per number:

.. code-block:: toml

    [software]
    name = "vllm"
    description = "..."
    scheduler = "continuous"            # a registered scheduler (sim.serving.schedulers)
    admission = "preempt"               # "preempt" (grow per token, evict when short) or "reserve"
    kv_memory_basis = "total"           # memory_utilization of "total" or of "free" memory
    kv_memory_fraction = 0.9            # default memory_utilization
    block_size = 16                     # KV block, tokens
    max_batch = 256                     # most requests running at once
    max_num_tokens = 8192               # token budget of one iteration (chunked/inflight), tokens
    iteration_host_overhead_s = 0.0     # host time per iteration not overlapped with the device, s
    request_host_overhead_s = 0.0       # more host time per request in the iteration, s

``kv_memory_basis = "total"`` (vLLM's ``gpu_memory_utilization``): weights, activations and KV
cache together use that fraction of the device memory. ``"free"`` (TensorRT-LLM's
``kv_cache_free_gpu_mem_fraction``): the KV cache takes that fraction of what weights and
activations leave.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from decodex.core.errors import ArgumentError, did_you_mean
from decodex.hw_models.spec_reader import TableReader, read_toml
from decodex.hw_models.system import CATALOG_DIR

SOFTWARE_DIR = CATALOG_DIR / "software"
ADMISSIONS = ("preempt", "reserve")
KV_MEMORY_BASES = ("total", "free")
DEFAULT_SOFTWARE = "vllm"


@dataclass(frozen=True)
class ServingSoftware:
    """A serving engine's policies and host time (see the module docstring; tokens, s)."""

    name: str
    description: str
    scheduler: str
    admission: str
    kv_memory_basis: str
    kv_memory_fraction: float
    block_size: int
    max_batch: int
    max_num_tokens: int
    iteration_host_overhead_s: float
    request_host_overhead_s: float = 0.0
    source: str = "<dict>"

    def settings(self, scheduler: str | None, chunk: int | None, max_batch: int | None, block_size: int | None,
                 memory_utilization: float | None) -> tuple[str, int, int, int, float]:
        """(scheduler, chunk tokens, max batch, block size tokens, memory utilization): each given
        value, or this software's default where it is None."""
        return (self.scheduler if scheduler is None else scheduler,
                self.max_num_tokens if chunk is None else chunk,
                self.max_batch if max_batch is None else max_batch,
                self.block_size if block_size is None else block_size,
                self.kv_memory_fraction if memory_utilization is None else memory_utilization)

    def host_time_s(self, requests: int) -> float:
        """Host time of one iteration of ``requests`` requests (decodes and prefills), s."""
        return self.iteration_host_overhead_s + self.request_host_overhead_s * requests

    @property
    def reserves_output(self) -> bool:
        """Whether admission takes the blocks of the whole request (no eviction)."""
        return self.admission == "reserve"


def software_from_dict(data: dict[str, object], source: str = "<dict>") -> ServingSoftware:
    """A ServingSoftware from a parsed TOML mapping; SpecError naming the file and field."""
    from decodex.sim.serving.schedulers import SCHEDULERS

    root = TableReader(data, source)
    table = root.sub("software")
    spec = ServingSoftware(
        name=table.string("name"),
        description=table.string("description", default=""),
        scheduler=table.string("scheduler", choices=tuple(sorted(SCHEDULERS))),
        admission=table.string("admission", choices=ADMISSIONS),
        kv_memory_basis=table.string("kv_memory_basis", choices=KV_MEMORY_BASES),
        kv_memory_fraction=table.number("kv_memory_fraction", lo=0.0, hi=1.0, lo_open=True),
        block_size=table.integer("block_size", lo=1, hi=65536),
        max_batch=table.integer("max_batch", lo=1, hi=1_000_000),
        max_num_tokens=table.integer("max_num_tokens", lo=1, hi=10_000_000),
        iteration_host_overhead_s=table.number("iteration_host_overhead_s", hi=1.0),
        request_host_overhead_s=table.number("request_host_overhead_s", hi=1.0, default=0.0),
        source=source,
    )
    root.check_unknown()
    return spec


def list_software() -> list[str]:
    """Catalog names of the serving software specs."""
    return sorted(p.stem for p in SOFTWARE_DIR.glob("*.toml"))


@lru_cache(maxsize=64)
def _load_file(path: str, mtime_ns: int) -> ServingSoftware:
    del mtime_ns  # part of the cache key only
    return software_from_dict(read_toml(path), path)


def load_software(name_or_path: str | Path | ServingSoftware) -> ServingSoftware:
    """A ServingSoftware from a catalog name (``vllm``, ``trtllm``), a TOML path or a spec;
    ArgumentError naming the known ones otherwise."""
    if isinstance(name_or_path, ServingSoftware):
        return name_or_path
    known = list_software()
    if not isinstance(name_or_path, str | Path) or not str(name_or_path).strip() or "\0" in str(name_or_path):
        raise ArgumentError(f"software: must be a catalog name ({', '.join(known)}) or a TOML path, "
                            f"got {name_or_path!r:.80}")
    text = str(name_or_path)
    path = SOFTWARE_DIR / f"{text}.toml"
    if not path.is_file():
        path = Path(text)
        if not (path.suffix == ".toml" and path.is_file()):
            hint = did_you_mean(text, known)
            raise ArgumentError(f"software: unknown {text!r:.80}{'; ' + hint if hint else ''}; catalog: "
                                f"{', '.join(known)} (or a path to a software TOML file)")
    return _load_file(str(path), path.stat().st_mtime_ns)
