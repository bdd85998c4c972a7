"""Results of one step: per-op records and the summary, convertible to pandas."""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cache
from typing import TYPE_CHECKING, Any, NamedTuple, Self

if TYPE_CHECKING:
    import pandas as pd


class OpRecord(NamedTuple):
    """One op of the step on one device: quantities per device per instance, ``repeat``
    instances per step. ``energy_j`` is the dynamic energy of one instance on all ``devices``.
    An immutable named tuple (``_asdict()``, ``_fields``): the analytical path makes one per op,
    and a tuple is built several times faster than a frozen dataclass."""

    template: str
    block: str
    name: str
    kind: str
    unit: str
    repeat: int
    devices: int
    dtype: str
    flops: float
    bytes: float
    weight_bytes: float
    kv_bytes: float
    activation_bytes: float
    arithmetic_intensity: float
    time_s: float
    compute_s: float
    memory_s: float
    overhead_s: float
    bound: str
    energy_j: float
    peak_flops: float = 0.0  # the unit's peak FLOP/s for this op's dtype (0 for collectives)
    peak_bandwidth_bytes_per_s: float = 0.0  # the unit's memory (or the link's) peak bandwidth

    @property
    def total_time_s(self) -> float:
        """Time of all ``repeat`` instances, s."""
        return self.time_s * self.repeat


@cache
def _field_names(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in fields(cls))


SUMMARY_KEYS = (
    "model", "system", "mapper", "precision", "parallelism", "devices", "batch_size", "tokens",
    "output_tokens", "mean_context", "step_time_s", "tokens_per_s", "energy_j", "energy_per_token_j",
    "weight_bytes", "kv_bytes", "memory_required_bytes", "memory_capacity_bytes", "fits", "reason",
    "flops", "bytes", "band_low_s", "band_high_s", "band_source", "warnings",
)


@dataclass(frozen=True)
class StepResult:
    """One step of a model on a system.

    Memory quantities are per device (the most loaded pipeline stage); ``device`` and
    ``device_kind`` name the system's primary device (the one whose memory and records count). ``flops`` and ``bytes``
    are per device per step. ``tokens_per_s`` counts output tokens. ``energy_j`` is the whole
    replica's energy for the step (dynamic + idle power of every device). ``band_low_s`` and
    ``band_high_s`` bound the measured step time from the validation records and ``warnings``
    say where the prediction leaves what was validated: the simulator leaves them empty (NaN,
    "", ()); the caller attaches them (``decodex.estimate`` / ``decodex.simulate``, the CLI and
    the dashboard, through :func:`decodex.validation.bands.attach_band`), so that no record
    feeds a prediction.
    """

    model: str
    system: str
    mapper: str
    precision: str
    parallelism: str
    devices: int
    batch_size: int
    tokens: int
    output_tokens: int
    mean_context: float
    step_time_s: float
    tokens_per_s: float
    energy_j: float
    energy_per_token_j: float
    weight_bytes: float
    kv_bytes: float
    memory_required_bytes: float
    memory_capacity_bytes: float
    fits: bool
    reason: str
    flops: float
    bytes: float
    records: tuple[OpRecord, ...] = ()
    device: str = ""
    device_kind: str = ""
    band_low_s: float = float("nan")
    band_high_s: float = float("nan")
    band_source: str = ""
    warnings: tuple[str, ...] = ()

    @classmethod
    def of_fields(cls, **values: Any) -> Self:
        """The result holding ``values``, which name every field (TypeError otherwise), built
        without running the dataclass ``__init__`` (a third of the time: the scalar fast path,
        :mod:`sim.point_estimate`, builds one per estimate); values are not converted or checked."""
        if values.keys() != _field_names(cls):
            given = set(values)
            raise TypeError(f"of_fields: missing {', '.join(sorted(_field_names(cls) - given)) or '-'}; "
                            f"not fields: {', '.join(sorted(given - _field_names(cls))) or '-'}")
        new = object.__new__(cls)
        new.__dict__.update(values)
        return new

    def with_fields(self, **changes: Any) -> StepResult:
        """``dataclasses.replace(self, **changes)`` for field names of this result, without running
        ``__init__`` again (results have no ``__post_init__``): the band is attached to every
        estimate."""
        unknown = set(changes) - _field_names(type(self))
        if unknown:
            raise TypeError(f"with_fields: not fields of {type(self).__name__}: {', '.join(sorted(unknown))}")
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.__dict__.update(changes)
        return new

    def summary(self) -> dict[str, Any]:
        """The summary keys as a plain dict (JSON-ready)."""
        out = {key: getattr(self, key) for key in SUMMARY_KEYS}
        out["warnings"] = list(self.warnings)
        return out

    @property
    def ops(self) -> pd.DataFrame:
        """One row per op (per template, not per layer), unit-suffixed columns, plus
        ``total_time_s`` (all repeats) and ``time_share`` (of the step). Built when asked:
        pandas is imported here, not with the module, so a CLI run that never asks starts fast."""
        import pandas as pd

        frame = pd.DataFrame(list(self.records), columns=list(OpRecord._fields))
        frame["total_time_s"] = frame["time_s"] * frame["repeat"]
        frame["time_share"] = frame["total_time_s"] / self.step_time_s if self.step_time_s > 0 else 0.0
        return frame

    def by_block(self) -> pd.DataFrame:
        """Time per step, FLOP and bytes per device by model block (embedding, attention, ...)."""
        frame = self.ops
        frame["flops_step"] = frame["flops"] * frame["repeat"]
        frame["bytes_step"] = frame["bytes"] * frame["repeat"]
        grouped = frame.groupby("block", sort=False)[["total_time_s", "flops_step", "bytes_step"]].sum()
        grouped["time_share"] = grouped["total_time_s"] / self.step_time_s
        return grouped.reset_index()

    @property
    def busy_over_step(self) -> float:
        """The ops' times summed over the step, over the step time (dimensionless): 1 when they run
        one after another, above 1 when ops of different units overlap (e.g. Duplex's xPU and
        Logic-PIM at once), so per-block shares then add to more than 100 %."""
        busy = sum(r.time_s * r.repeat for r in self.records)
        return busy / self.step_time_s if self.step_time_s > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """Summary plus an ``ops`` list (one object per op record)."""
        out = self.summary()
        out["ops"] = [r._asdict() for r in self.records]
        return out
