"""`decodex estimate` loads only what it uses ([perf] #25, CLI start): no dashboard, plotting,
cluster, JIT or sweep machinery; the Python API's estimate with its error band needs no pandas
(the bands read the records' columns with the csv module, and give the same table as from a frame); the
lazily exported names of ``decodex.sim`` still resolve."""

from __future__ import annotations

import json
import subprocess
import sys

NOT_FOR_ESTIMATE = ("streamlit", "plotly", "dask", "numba", "pandas", "decodex.explore", "decodex.sim.roofline",
                    "decodex.sim.serving", "decodex.app.dashboard", "decodex.app.cli_serve", "decodex.app.cli_explore")


def test_estimate_json_imports_no_heavy_machinery() -> None:
    code = ("import io, contextlib, json, sys\n"
            "from decodex.app.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    main(['estimate', '--model', 'llama3-8b', '--system', 'h100-sxm', '--json'])\n"
            f"print(json.dumps([m for m in {list(NOT_FOR_ESTIMATE)!r} if m in sys.modules]))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_lazy_names_of_sim_resolve_to_the_functions() -> None:
    import decodex.sim as sim
    from decodex.sim.roofline import roofline_points
    from decodex.sim.serving import ServingResult, Workload, serve

    assert sim.serve is serve and sim.Workload is Workload and sim.ServingResult is ServingResult
    assert sim.roofline_points is roofline_points
    assert callable(sim.estimate) and callable(sim.simulate)  # functions, not the submodules of the same name
    assert set(sim.__all__) <= set(dir(sim)) | set(sim._LAZY)


def test_api_estimate_with_its_band_imports_no_pandas() -> None:
    code = ("import sys, json, decodex\n"
            "r = decodex.estimate('llama3-8b', 'h100-sxm', 8, context=2048)\n"
            "print(json.dumps([r.band_low_s, r.band_high_s, 'pandas' in sys.modules, 'plotly' in sys.modules]))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    low, high, pandas, plotly = json.loads(done.stdout.strip().splitlines()[-1])
    assert not pandas and not plotly and 0 < low < high


def test_bands_from_rows_equal_bands_from_a_frame() -> None:
    from decodex.validation.bands import BandTable
    from decodex.validation.records import load_band_columns, load_records

    rows, frame = BandTable(load_band_columns()), BandTable(load_records())
    assert rows.by_device == frame.by_device and rows.by_device  # the committed records give bands
    assert rows.by_kind == frame.by_kind and rows.devices_of_kind == frame.devices_of_kind


def _choices(parser: object) -> set[str]:
    import argparse

    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]  # type: ignore[attr-defined]
    return set(actions[0].choices)


def test_every_sub_command_is_built_alone_and_parses_as_in_the_whole_parser() -> None:
    from decodex.app.cli import ADDERS, CORE_COMMANDS, build_parser

    whole = build_parser()
    named = set(CORE_COMMANDS) | {n for _, _, names in ADDERS for n in names}
    assert named == _choices(whole)  # a new sub-command must be listed for the fast path
    for name in named:
        assert name in _choices(build_parser(name))
    argv = ["estimate", "--model", "llama3-8b", "--system", "h100-sxm", "--batch", "8", "--set",
            "hbm.bandwidth@scale=2"]
    assert vars(build_parser("estimate").parse_args(argv)) == vars(whole.parse_args(argv))
    serve = ["serve", "--model", "llama3-8b", "--system", "h100-sxm", "--rate", "2"]
    assert vars(build_parser("serve").parse_args(serve)) == vars(whole.parse_args(serve))
