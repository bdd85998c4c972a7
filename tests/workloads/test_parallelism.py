"""Parallelism: what it accepts, what it refuses, and that its quick check of the common case
(plain ints, no expert split) builds what the full check builds."""

from __future__ import annotations

import numpy as np
import pytest

from decodex.core.errors import ArgumentError
from decodex.workloads.parallelism import MAX_DEGREE, Parallelism


@pytest.mark.parametrize("kwargs", [
    dict(), dict(tp=8), dict(tp=4, pp=2), dict(tp=MAX_DEGREE, pp=MAX_DEGREE), dict(tp=8, ep=8),
    dict(tp=8, ep=4), dict(tp=8, ep=8, dp_tokens=True), dict(tp=np.int64(4), pp=np.int32(2)),
    dict(tp=2, dp_tokens=np.bool_(False)),
])
def test_valid_degrees_are_plain_ints_and_bools(kwargs: dict) -> None:
    par = Parallelism(**kwargs)
    for name in ("tp", "pp", "ep"):
        assert type(getattr(par, name)) is int and getattr(par, name) == kwargs.get(name, 1)
    assert type(par.dp_tokens) is bool
    assert par == Parallelism(**{k: (int(v) if k != "dp_tokens" else bool(v)) for k, v in kwargs.items()})
    assert hash(par) == hash(Parallelism(**{k: (int(v) if k != "dp_tokens" else bool(v)) for k, v in kwargs.items()}))


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(tp=0), "parallelism.tp"), (dict(pp=0), "parallelism.pp"), (dict(tp=MAX_DEGREE + 1), "parallelism.tp"),
    (dict(pp=MAX_DEGREE + 1), "parallelism.pp"), (dict(tp=True), "parallelism.tp"), (dict(tp=2.0), "parallelism.tp"),
    (dict(tp="2"), "parallelism.tp"), (dict(tp=-1), "parallelism.tp"), (dict(ep=0), "parallelism.ep"),
    (dict(tp=8, ep=3), "must divide"), (dict(tp=8, dp_tokens=True), "ep == tp"),
    (dict(dp_tokens=1), "dp_tokens"), (dict(dp_tokens="yes"), "dp_tokens"),
])
def test_bad_degrees_are_refused_naming_the_field(kwargs: dict, match: str) -> None:
    with pytest.raises(ArgumentError, match=match):
        Parallelism(**kwargs)
