"""How a model is split over devices: tensor, pipeline and expert parallelism."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from decodex.core.errors import ArgumentError
from decodex.workloads.batch import is_whole

MAX_DEGREE = 4096  # devices along one parallel dimension


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
        tp, pp, ep, dp = self.tp, self.pp, self.ep, self.dp_tokens
        if (type(tp) is int and type(pp) is int and type(ep) is int and dp is False
                and 1 <= tp <= MAX_DEGREE and 1 <= pp <= MAX_DEGREE and ep == 1):
            return  # the common case (plain ints, no experts split): valid as given, nothing to convert
        for name in ("tp", "pp", "ep"):
            value = getattr(self, name)
            if not is_whole(value) or not 1 <= value <= MAX_DEGREE:
                raise ArgumentError(f"parallelism.{name}: {value!r} must be an integer in [1, {MAX_DEGREE}]")
            object.__setattr__(self, name, int(value))
        if not isinstance(self.dp_tokens, bool | np.bool_):
            raise ArgumentError(f"parallelism.dp_tokens: {self.dp_tokens!r} must be True or False")
        object.__setattr__(self, "dp_tokens", bool(self.dp_tokens))
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
