"""The fast paths return what the reference path returns (issue [perf]).

- ``estimate`` (with its band) over every mapper, and ``serve`` on four systems (two AFD): equal to
  the numbers written by the code as it stood before it was made faster
  (``tests/sim/data/estimate_reference.json``, ``serve_reference.json``, see
  ``tests/sim/estimate_reference.py``), to 1e-12; the routing draws to fixed digests.
- The scalar efficiency lookup equals ``numpy.interp`` (the vector path) bit for bit.
- The cached band table equals a fresh read of the records, and a new record is seen.
- An op's cached FLOP and byte counts equal the sum of their parts.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from decodex.hw_models.efficiency import EfficiencyCurve
from decodex.validation import bands
from decodex.validation.records import CASE_COLUMNS, RECORDS_DIR, load_band_columns, load_records, write_record

from .estimate_reference import REFERENCE, SERVE_REFERENCE, SERVE_RUNS, run, serve_summary

ROWS = json.loads(REFERENCE.read_text())


@pytest.mark.parametrize("row", ROWS, ids=lambda r: "-".join(str(v) for v in r["point"].values()))
def test_estimate_equals_the_reference(row: dict) -> None:
    got, want = run(row["point"]), row["result"]
    assert got.keys() == want.keys()
    for key, value in want.items():
        if isinstance(value, float):
            assert got[key] == pytest.approx(value, rel=1e-12, abs=0.0), key
        elif key == "op_times_s":
            np.testing.assert_allclose(got[key], value, rtol=1e-12, atol=0.0)
        else:
            assert got[key] == value, key


@pytest.mark.parametrize(("model", "system", "precision"), SERVE_RUNS, ids=[r[1] for r in SERVE_RUNS])
def test_serve_equals_the_reference(model: str, system: str, precision: str) -> None:
    """Serving (routing draws, the AFD mapper's reused FFN graphs, memoized op costs) gives the
    summary the code gave before those fast paths, to 1e-12."""
    want = json.loads(SERVE_REFERENCE.read_text())[system]
    got = serve_summary(model, system, precision)
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == (pytest.approx(value, rel=1e-12, abs=0.0) if isinstance(value, float) else value), key


def test_routing_draws_are_the_reference_draws() -> None:
    """The draw with narrow pick arrays and per-column clash checks is the former draw: fixed
    digests of the counts (uniform, Zipf, few experts, Gumbel top-k)."""
    import hashlib

    from decodex.workloads.batch import Routing

    cases = {(Routing(), 512, 256, 8, 58): "36c564d6b8", (Routing(kind="zipf", skew=1.2, seed=3), 512, 256, 8, 58):
             "d0178250b5", (Routing(seed=5), 300, 8, 2, 32): "0f53dcf3de", (Routing(seed=5), 300, 16, 12, 4):
             "77b3d46c15"}
    for (routing, *args), digest in cases.items():
        assert hashlib.md5(routing._draw(*args).tobytes()).hexdigest()[:10] == digest


def test_scalar_efficiency_lookup_is_numpy_interp() -> None:
    rng = np.random.default_rng(7)
    curves = [EfficiencyCurve((3.162e6, 1e7, 3.162e7, 1e8, 3.162e8, 1e9), (0.4659, 0.5996, 0.728, 0.7858, 0.8158,
                                                                           0.8158)),
              EfficiencyCurve((1e5, 1e12), (0.01, 0.9)), EfficiencyCurve.constant(0.5)]
    sizes = np.concatenate([10 ** rng.uniform(-2, 14, 20000), [0.0, 1e-40, 1e5, 1e12, 3.162e6, np.inf]])
    for curve in curves:
        scalar = np.array([curve.at(float(s)) for s in sizes])
        assert np.array_equal(scalar, curve.at_many(sizes))
    assert np.isnan(curves[0].at(float("nan")))


def test_the_cached_band_table_is_a_fresh_read_and_sees_new_records(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]  # s; the band's recheck clock, moved by hand
    monkeypatch.setattr(bands, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    root = tmp_path / "records"
    shutil.copytree(RECORDS_DIR, root)
    cached = bands.band_table(root)
    assert bands.band_table(root) is cached  # nothing changed: no second read
    fresh = bands.BandTable(load_band_columns(root))
    assert cached.by_device.keys() == fresh.by_device.keys() and cached.devices_of_kind == fresh.devices_of_kind
    for device, by_kind in fresh.by_device.items():
        assert repr(cached.by_device[device]) == repr(by_kind)
    # a record file copied into a device folder by hand (or written by another process): seen at
    # the first check after RECORDS_RECHECK_S, with no file looked at in between
    source = next(root.glob("*/*.csv"))
    shutil.copy(source, source.with_name("extra-" + source.name))
    shutil.copy(source.with_suffix(".json"), source.with_name("extra-" + source.stem + ".json"))
    clock[0] += 0.5 * bands.RECORDS_RECHECK_S
    monkeypatch.setattr(bands, "records_stamp", lambda root: pytest.fail("a file looked at within the recheck"))
    assert bands.band_table(root) is cached
    monkeypatch.undo()
    monkeypatch.setattr(bands, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    clock[0] += bands.RECORDS_RECHECK_S
    copied = bands.band_table(root)
    assert copied is not cached
    # a record written by this process's write_record (decodex validate): seen at once
    frame = load_records(root, source.parent.name)
    cases = frame.loc[:, [c for c in CASE_COLUMNS if c in frame.columns]]
    write_record(source.parent.name, {"device_kind": str(frame["device_kind"].iloc[0])}, cases,
                 kind=str(frame["kind"].iloc[0]), root=root, run_id="written-now")
    written = bands.band_table(root)  # the clock has not moved
    assert written is not copied
    assert sum(band.n for band in written.by_device[source.parent.name].values()) > sum(
        band.n for band in copied.by_device[source.parent.name].values())


def test_cached_op_counts_are_their_parts() -> None:
    from decodex.sim.estimate import plan_step

    plan = plan_step("mixtral-8x7b", "h100-sxm", 16, context=2048)
    for placement in plan.placements:
        op = placement.op
        assert op.bytes == op.weight_bytes + op.kv_bytes + op.activation_bytes
        assert op.bytes == op.bytes and op.flops >= 0


def test_the_int64_fast_path_of_the_batch_checks_leaves_the_callers_array_alone() -> None:
    from decodex.workloads.batch import Batch

    context = np.array([5, 6], dtype=np.int64)
    batch = Batch(context, np.ones(2, np.int64), np.ones(2, bool))
    assert context.flags.writeable and not batch.context_lens.flags.writeable
    context[0] = 9
    assert batch.context_lens.tolist() == [5, 6]
