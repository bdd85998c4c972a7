"""``decodex sweep``, ``pareto``, ``sensitivity`` and ``optimize``: design-space exploration from the shell."""

from __future__ import annotations

import argparse
import contextlib
import math
import signal
import sys
import threading
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from decodex.app.cli_args import bounded_float, bounded_int, byte_size, output_folder, positive_int
from decodex.app.formatting import table

if TYPE_CHECKING:
    import pandas as pd


def _save(figure: Any, path: Path, standalone: bool = False) -> None:
    from decodex.explore.figures import save_html

    save_html(figure, path, standalone=standalone)
    print(f"wrote {path}", file=sys.stderr)


EXIT_INCOMPLETE = 3  # `decodex sweep` stopped by --time-limit before the end: rerun the same command to resume
EXIT_TERMINATED = 143  # 128 + SIGTERM


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """While running, SIGTERM raises :class:`explore.runner.Terminated` (the interrupt's path: the
    worker processes are terminated, the parts kept); a second SIGTERM during that cleanup is
    ignored. The previous handler is restored after (only in the main thread)."""
    from decodex.explore.runner import Terminated

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run a sweep into ``--out`` (resumable; ``--fresh`` starts over) and print what it found.
    Exit status: 0 complete, 3 stopped by ``--time-limit`` (rerun to resume), 2 an error (one
    line), 130 interrupted, 143 terminated (the parts written are kept either way)."""
    from decodex.explore.runner import Terminated, run_sweep
    from decodex.explore.sweep_space import load_space
    from decodex.explore.sweep_store import RETRY_REASON, SweepPartWarning

    inputs = load_space(args.space).parameters
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SweepPartWarning)
        try:
            with _sigterm_as_interrupt():
                frame = run_sweep(args.space, mode=args.mode, out=args.out, workers=args.workers,
                                  scheduler=args.scheduler, progress=not args.no_progress, fresh=args.fresh,
                                  time_limit_s=args.time_limit, max_memory_bytes=args.max_memory)
        except KeyboardInterrupt as err:
            signal_name = "terminated" if isinstance(err, Terminated) else "interrupted"
            print(f"decodex: {signal_name}; the parts written so far are kept in {args.out}: rerun the same command "
                  "to resume", file=sys.stderr)
            return EXIT_TERMINATED if isinstance(err, Terminated) else 130
        finally:
            for warning in caught:
                if issubclass(warning.category, SweepPartWarning):
                    print(f"decodex: warning: {warning.message}", file=sys.stderr)
    state = frame.attrs.get("sweep", {})
    feasible = frame[frame["feasible"]] if "feasible" in frame else frame.iloc[0:0]
    print(f"{len(frame)} points, {len(feasible)} feasible; parts and summary.json in {args.out}")
    if not feasible.empty and "tokens_per_s" in feasible:
        best = feasible.sort_values("tokens_per_s", ascending=False).head(5)
        shown = [*inputs, "tpot_s", "tokens_per_s", "energy_per_token_j", "usd_per_mtok"]
        shown = [c for c in shown if c in best]
        print(table(shown, [[_cell(v) for v in row] for row in best[shown].itertuples(index=False)]))
    infeasible = frame[~frame["feasible"]] if "feasible" in frame else frame
    if not infeasible.empty:
        reasons = infeasible["reason"].str.split(":").str[0].value_counts()
        print("infeasible: " + ", ".join(f"{n} x {r}" for r, n in reasons.items()))
        retry = int(infeasible["reason"].str.startswith(RETRY_REASON).sum())
        if retry:
            print(f"decodex: note: {retry} points failed in a worker (see their reason); rerun the same command "
                  "to retry them", file=sys.stderr)
    if state.get("stopped"):
        print(f"decodex: stopped: {state['stopped']} with {state['left']} of {state['points']} points left; "
              "rerun the same command to resume", file=sys.stderr)
        return EXIT_INCOMPLETE
    return 0


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _objectives(specs: list[str]) -> dict[str, str]:
    out = {}
    for spec in specs:
        column, _, direction = spec.rpartition(":")
        if not column or direction not in ("max", "min"):
            raise SystemExit(f"decodex: error: --objective {spec!r}: expected COLUMN:max or COLUMN:min")
        out[column] = direction
    return out


def cmd_pareto(args: argparse.Namespace) -> int:
    """Print (and plot) the Pareto front of a sweep directory's rows."""
    from decodex.explore.figures import pareto_figure
    from decodex.explore.pareto import pareto_front
    from decodex.explore.sweep_space import load_space
    from decodex.explore.sweep_store import SweepStore

    store = SweepStore(args.dir)
    frame = store.read()
    if frame.empty:
        print(f"decodex: error: no rows in {args.dir}", file=sys.stderr)
        return 2
    objectives = _objectives(args.objective)
    try:
        front = pareto_front(frame, objectives)
    except ValueError as err:
        print(f"decodex: error: {err}", file=sys.stderr)
        return 2
    inputs = [c for c in load_space(store.read_json("space.json")).parameters if c in frame]
    shown = [*inputs, *objectives]
    print(f"{len(front)} of {len(frame)} points on the front")
    print(table(shown, [[_cell(v) for v in row] for row in front[shown].itertuples(index=False)]))
    if args.csv:
        front.to_csv(args.csv, index=False)
    if args.html and len(objectives) >= 2:
        x, y = list(objectives)[:2]
        _save(pareto_figure(frame, x, y, {x: objectives[x], y: objectives[y]}, hover=inputs), Path(args.html),
              args.standalone)
    return 0


def _numeric_axes(space: Any) -> dict[str, tuple[float, float]]:
    """Each numeric axis's (low, high): a range's bounds, or a list's smallest and largest value."""
    bounds = {}
    for axis in space.axes:
        if axis.values is None:
            bounds[axis.name] = (axis.low, axis.high)
        elif all(isinstance(v, int | float) and not isinstance(v, bool) for v in axis.values):
            bounds[axis.name] = (float(min(axis.values)), float(max(axis.values)))
    return bounds


def _integer_axes(space: Any) -> set[str]:
    return {a.name for a in space.axes if a.integer or (a.values is not None and
                                                        all(isinstance(v, int) for v in a.values))}


def _point_values(space: Any, design: Mapping[str, float]) -> dict[str, Any]:
    integer = _integer_axes(space)
    return {**space.fixed, **{k: (round(float(v)) if k in integer else float(v)) for k, v in design.items()}}


def _watch(what: str, unit: str, total: int, args: argparse.Namespace) -> Any:
    """A progress line on stderr for a run of ``total`` ``unit`` (on a terminal, not with --quiet)."""
    from decodex.core.run_limits import RunWatch

    return RunWatch(what, unit, total, progress=not args.quiet and sys.stderr.isatty())


def _numeric_space(args: argparse.Namespace) -> tuple[Any, dict[str, tuple[float, float]], str]:
    """The space of ``args.space``, its numeric axes' bounds and the mode (exits 2 without axes)."""
    from decodex.explore.sweep_space import load_space

    space = load_space(args.space)
    bounds = _numeric_axes(space)
    if not bounds:
        raise SystemExit("decodex: error: the space has no numeric axis to vary")
    return space, bounds, args.mode or space.mode


def cmd_sensitivity(args: argparse.Namespace) -> int:
    """One-at-a-time and Sobol sensitivity of ``--metric`` over the space's numeric axes."""

    from decodex.explore.figures import one_at_a_time_figure, sensitivity_figure
    from decodex.explore.points import evaluate_points
    from decodex.explore.sensitivity import one_at_a_time, sobol_indices

    space, bounds, mode = _numeric_space(args)
    # one at a time: the centre and steps per variable; Sobol (Saltelli): samples x (variables + 2)
    watch = _watch("sensitivity", "points", 1 + args.steps * len(bounds) + args.samples * (len(bounds) + 2), args)

    def metric(points: pd.DataFrame) -> np.ndarray:
        rows = evaluate_points([_point_values(space, p) for p in points.to_dict("records")], mode)
        watch.advance(len(rows))
        return np.array([r.get(args.metric, math.nan) if r["feasible"] else math.nan for r in rows], dtype=float)

    logs = {a.name for a in space.axes if a.log}
    base = {k: math.sqrt(lo * hi) if k in logs else (lo + hi) / 2 for k, (lo, hi) in bounds.items()}
    try:
        oat = one_at_a_time(metric, base, bounds, steps=args.steps)
        sobol = sobol_indices(metric, bounds, n=args.samples, seed=args.seed)
    finally:
        watch.close()
    print(f"one at a time ({args.metric} at the centre: {oat.base_metric:.4g})")
    print(table(list(oat.summary.columns), [[_cell(v) for v in r] for r in oat.summary.itertuples(index=False)]))
    print("variance-based (Sobol) indices")
    print(table(list(sobol.columns), [[_cell(v) for v in r] for r in sobol.itertuples(index=False)]))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        oat.summary.to_csv(out / "one_at_a_time.csv", index=False)
        sobol.to_csv(out / "sobol.csv", index=False)
        _save(one_at_a_time_figure(oat, args.metric), out / "one_at_a_time.html")
        _save(sensitivity_figure(sobol), out / "sobol.html")
    return 0


def cmd_optimize(args: argparse.Namespace) -> int:
    """The best design over the space's numeric axes for ``--objective`` under its constraints."""
    from decodex.core.errors import InfeasibleError
    from decodex.explore.figures import optimization_figure
    from decodex.explore.optimize import optimize_design
    from decodex.explore.points import evaluate_point

    space, bounds, mode = _numeric_space(args)
    # differential evolution: at most (generations + 1) x popsize x variables designs
    watch = _watch("optimize", "designs (at most)", (args.maxiter + 1) * args.popsize * len(bounds), args)

    def evaluate(design: Mapping[str, float]) -> dict[str, float]:
        row = evaluate_point(_point_values(space, design), mode)
        watch.advance()
        if not row["feasible"]:
            raise InfeasibleError(row["reason"])
        return {k: float(v) for k, v in row.items() if isinstance(v, int | float) and not isinstance(v, bool)}

    try:
        best = optimize_design(evaluate, bounds, args.objective, minimize=not args.maximize,
                               constraints=space.constraints, integers=sorted(_integer_axes(space) & set(bounds)),
                               seed=args.seed, maxiter=args.maxiter, popsize=args.popsize)
    finally:
        watch.close()
    state = "feasible" if best.feasible else "NO feasible design found; least violating"
    print(f"{state}: {args.objective} = {best.objective:.6g} after {best.evaluations} evaluations")
    print(table(["variable", "value"], [[k, _cell(v)] for k, v in best.design.items()]))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        best.history.to_csv(out / "history.csv", index=False)
        _save(optimization_figure(best), out / "optimization.html")
    return 0 if best.feasible else 1


def add_explore_parsers(sub: Any) -> None:
    """Add ``sweep``, ``pareto``, ``sensitivity`` and ``optimize`` to the ``decodex`` sub-commands."""
    p = sub.add_parser("sweep", help="run a declared design space (TOML) into a resumable folder of Parquet parts")
    p.add_argument("space", help="sweep TOML file (examples/sweeps/)")
    p.add_argument("--out", required=True, type=output_folder,
                   help="output folder (rerun with the same folder to resume; a folder holding another space, mode "
                        "or Decodex version is refused, and so is one another run is writing)")
    p.add_argument("--mode", choices=("estimate", "simulate", "serve"), default=None,
                   help="override the space's mode")
    p.add_argument("--workers", type=bounded_int(1, 1024), default=1, help="local worker processes (1-1024, default 1)")
    p.add_argument("--scheduler", default=None, help="Dask scheduler address tcp://HOST:PORT (default: "
                                                     "$DASK_SCHEDULER_ADDRESS, else local)")
    p.add_argument("--no-progress", "--quiet", "-q", dest="no_progress", action="store_true",
                   help="no progress bar on stderr")
    p.add_argument("--fresh", action="store_true", help="remove the sweep files already in --out (parts, "
                                                        "sweep.json, space.json, summary.json) and start over")
    p.add_argument("--time-limit", type=bounded_float(0.0, 1e9), default=None, metavar="SECONDS",
                   help="start no new chunk after SECONDS; the chunks running finish and are written, and the "
                        "command exits with status 3 (rerun it to resume)")
    p.add_argument("--max-memory", type=byte_size, default=None, metavar="BYTES",
                   help="refuse a sweep estimated to need more memory than BYTES (e.g. 8G, 512M, 1.5GiB; "
                        "default: half the physical memory)")
    p.set_defaults(func=cmd_sweep)
    p = sub.add_parser("pareto", help="Pareto front of a sweep folder over chosen objectives")
    p.add_argument("dir", help="sweep output folder")
    p.add_argument("--objective", action="append", required=True, help="COLUMN:max or COLUMN:min (repeat)")
    p.add_argument("--html", default=None, help="write the front over the first two objectives as HTML (plotly.js "
                                                "is written once beside it, as plotly.min.js)")
    p.add_argument("--standalone", action="store_true", help="embed plotly.js in the --html file instead (4.6 MB; "
                                                             "for a file sent on its own)")
    p.add_argument("--csv", default=None, help="write the front's rows as CSV")
    p.set_defaults(func=cmd_pareto)
    p = sub.add_parser("sensitivity", help="which swept fields move a metric most (one at a time and Sobol)")
    p.add_argument("space", help="sweep TOML file; its numeric axes are varied")
    p.add_argument("--metric", required=True, help="metric column, e.g. tokens_per_s")
    p.add_argument("--samples", type=positive_int, default=256, help="Sobol base samples (default 256)")
    p.add_argument("--steps", type=positive_int, default=5, help="one-at-a-time steps per variable (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the Sobol sequence")
    p.add_argument("--mode", choices=("estimate", "simulate", "serve"), default=None)
    p.add_argument("--out", default=None, help="folder for CSV tables and HTML figures")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress line on stderr (shown on a terminal)")
    p.set_defaults(func=cmd_sensitivity)
    p = sub.add_parser("optimize", help="best design over the space's numeric axes under its constraints")
    p.add_argument("space", help="sweep TOML file; numeric axes are the variables, constraints apply")
    p.add_argument("--objective", required=True, help="metric or variable to minimize (or --maximize)")
    p.add_argument("--maximize", action="store_true")
    p.add_argument("--maxiter", type=positive_int, default=20, help="differential-evolution generations")
    p.add_argument("--popsize", type=positive_int, default=8, help="population size per variable")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mode", choices=("estimate", "simulate", "serve"), default=None)
    p.add_argument("--out", default=None, help="folder for the history CSV and the HTML figure")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress line on stderr (shown on a terminal)")
    p.set_defaults(func=cmd_optimize)
