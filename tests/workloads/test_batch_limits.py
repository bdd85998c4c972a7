"""Batch inputs are checked before anything is allocated: whole numbers of tokens in range,
a bounded number of requests, one ArgumentError line naming what is wrong."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import decodex as dx
from decodex.core.errors import ArgumentError
from decodex.workloads.batch import MAX_BATCH_REQUESTS, MAX_TOKENS_PER_REQUEST, Batch, token_counts


@pytest.mark.parametrize(("batch", "context", "needle"), [
    (10**12, 1024, "more than"),                      # would allocate 7 TiB
    (MAX_BATCH_REQUESTS + 1, 1, "more than"),
    (2, 10**21, "outside"),                           # beyond int64
    (2, 1.7, "whole numbers"),                        # was truncated to 1
    (2, float("nan"), "whole numbers"),
    (2, float("inf"), "whole numbers"),
    (2, -1, "outside"),
    (2, [1, 2, 3], "3 context lengths for a batch of 2"),
    (2, "100", "whole numbers"),
    (True, 100, "positive integer"),
    (0, 100, "positive integer"),
])
def test_bad_batches_are_one_line_errors(batch: object, context: object, needle: str) -> None:
    with pytest.raises(ArgumentError, match=needle) as err:
        dx.estimate("llama3-8b", "h100-sxm", batch, context=context)  # type: ignore[arg-type]
    assert "\n" not in str(err.value)


def test_whole_floats_and_arrays_are_accepted() -> None:
    assert Batch.decode(3, 100.0).context_lens.tolist() == [100, 100, 100]
    assert Batch.decode(2, np.array([5, 7], dtype=np.int32)).context_lens.tolist() == [5, 7]
    mixed = Batch.mixed([10, 20], [512], [0])
    assert mixed.num_tokens == 514 and mixed.num_output_tokens == 3


@given(st.one_of(st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                 st.lists(st.integers(min_value=-2**70, max_value=2**70), max_size=5)))
def test_token_counts_is_a_checked_int64_array_or_one_error(values: object) -> None:
    try:
        out = token_counts(values, "context lengths", 0)
    except ArgumentError as err:
        assert "\n" not in str(err)
        return
    assert out.dtype == np.int64 and ((out >= 0) & (out <= MAX_TOKENS_PER_REQUEST)).all()
