"""Measured speculative decoding (Spec-Bench's A100 leaderboard): loaded with its source, checked,
and turned into a chain acceptance that gives the measured tokens per step."""

from __future__ import annotations

from pathlib import Path

import pytest

from decodex.core.errors import ArgumentError, SpecError
from decodex.workloads.acceptance_data import (
    chain_acceptance_for,
    chain_acceptance_matching,
    load_measured,
)


def test_the_shipped_measurements_load_with_their_source() -> None:
    rows = load_measured()
    assert len(rows) >= 30
    sps = next(r for r in rows if r.method == "SpS" and r.target == "vicuna-7b-v1.3")
    assert (sps.tokens_per_step, sps.speedup) == (2.28, 1.52)  # Leaderboard.md at fd2c1cd, A100 section
    assert sps.source["commit"] == "fd2c1cd7d2201ef71db4c5f4e455008f017967bf" and sps.source["device"] == "a100-80g"
    assert set(sps.speedup_by_task) == {"conversation", "translation", "summarization", "question_answering",
                                        "math_reasoning", "rag"}
    assert all(r.tokens_per_step >= 1.0 and r.speedup > 0 for r in rows)


def test_a_matching_chain_gives_the_measured_tokens_per_step() -> None:
    for tokens, k in ((2.28, 4), (1.0, 3), (4.0, 3), (3.58, 5)):
        acceptance = chain_acceptance_matching(tokens, k)
        assert 1 + acceptance.expected_accepted(k) == pytest.approx(tokens, abs=1e-9)
    assert chain_acceptance_matching(4.0, 3).probs[0] == pytest.approx(1.0)
    # a longer chain reaches the same tokens per step at a lower rate
    assert chain_acceptance_matching(2.5, 6).probs[0] < chain_acceptance_matching(2.5, 3).probs[0]
    with pytest.raises(ArgumentError, match=r"\[1, 3\]"):
        chain_acceptance_matching(3.5, 2)
    assert 1 + chain_acceptance_for("eagle", "Vicuna-7B-v1.3", 5).expected_accepted(5) == pytest.approx(3.58)
    with pytest.raises(ArgumentError, match=r"measured there: .*SpS"):
        chain_acceptance_for("nope", "vicuna-7b-v1.3", 3)


@pytest.mark.parametrize(("text", "field"), [
    ('[measured]\n', "source"),
    ('[source]\nreference="r"\nrepository="g"\npath="p"\ncommit="c"\ndevice="d"\nbatch=1\nprecision="fp16"\n',
     "measured"),
    ('[source]\nreference="r"\nrepository="g"\npath="p"\ncommit="c"\ndevice="d"\nbatch=1\nprecision="fp16"\n'
     '[[measured]]\nmethod="m"\ntarget="t"\ntokens_per_step=0.5\nspeedup=1.0\n', "measured[0].tokens_per_step"),
    ('[source]\nreference="r"\nrepository="g"\npath="p"\ncommit="c"\ndevice="d"\nbatch=1\nprecision="fp16"\n'
     '[[measured]]\nmethod=""\ntarget="t"\ntokens_per_step=2.0\nspeedup=1.0\n', "measured[0].method"),
    ('[source]\nreference="r"\nrepository="g"\npath="p"\ncommit="c"\ndevice="d"\nbatch=1\nprecision="fp16"\n'
     '[[measured]]\nmethod="m"\ntarget="t"\ntokens_per_step=2.0\nspeedup=-1\n', "measured[0].speedup"),
])
def test_a_bad_file_names_the_field(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(SpecError, match=field.replace("[", r"\[").replace("]", r"\]")):
        load_measured(path)
