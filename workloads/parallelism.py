"""How a model is split over devices: tensor, pipeline and expert parallelism."""

from __future__ import annotations

from dataclasses import dataclass

from decodex.core.errors import ArgumentError


@dataclass(frozen=True)
class Parallelism:
    """Degrees of parallelism.

    ``tp``: tensor parallel (heads, FFN columns and vocabulary split over ``tp`` devices, an
    all-reduce after the attention and the FFN). ``pp``: pipeline stages (layers split in
    ``pp`` contiguous stages). ``ep``: expert parallel inside the tensor-parallel group (the
    experts split over ``ep`` ranks, each expert further split over ``tp / ep`` devices).
    ``dp_tokens`` (with ``ep == tp``): outside the experts the group is data parallel, as in
    DeepSeek-style decoding: each device keeps its own 1/tp of the tokens through the FFN
    (norm, router, whole shared experts and dense FFNs), only the routed tokens cross devices
    (dispatch/combine), and no all-reduce or gather follows.
    """

    tp: int = 1
    pp: int = 1
    ep: int = 1
    dp_tokens: bool = False

    def __post_init__(self) -> None:
        for name in ("tp", "pp", "ep"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 4096:
                raise ArgumentError(f"parallelism.{name}: {value!r} outside [1, 4096]")
        if self.dp_tokens and self.ep != self.tp:
            raise ArgumentError(f"parallelism.dp_tokens: needs ep == tp (got ep={self.ep}, tp={self.tp})")
        if self.tp % self.ep:
            raise ArgumentError(
                f"parallelism.ep: {self.ep} must divide tp={self.tp} (experts are split inside the tp group)")

    @property
    def devices(self) -> int:
        """Devices one model replica occupies."""
        return self.tp * self.pp

    @property
    def expert_tp(self) -> int:
        """Devices each expert is split over (tp / ep)."""
        return self.tp // self.ep

    @property
    def label(self) -> str:
        """e.g. ``"tp8"`` or ``"tp4·pp2·ep4"``."""
        parts = [f"tp{self.tp}"]
        if self.pp > 1:
            parts.append(f"pp{self.pp}")
        if self.ep > 1:
            parts.append(f"ep{self.ep}")
        if self.dp_tokens:
            parts.append("dp")
        return "·".join(parts)
