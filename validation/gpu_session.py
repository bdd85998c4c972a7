"""One prepared GPU validation session: everything ``decodex validate gpu`` and the end-to-end
decode comparison need from a GPU, in one process, written to one folder as it is measured.

    python -m decodex.validation.gpu_session --out DIR [--parts ceilings,e2e,kernels] [--budget-s S]

Parts, in this order (each is written the moment it is measured, so an interrupted session keeps
what it measured):

- ``ceilings``: the GPU (name, multiprocessors, L2, memory, clocks, driver, library versions);
  the device-to-device copy bandwidth (bytes read + written) and the bf16 GEMM rate through
  PyTorch (8192^3 on random data), the two ceilings METHOD-style checks set measured times
  against. -> ``session.json``
- ``e2e``: the PyTorch decode step (:mod:`validation.torch_decode`) over ``E2E_GRID``.
  -> ``e2e.csv`` (one row per model, batch and context; points that do not fit say why)
- ``kernels``: the Numba CUDA validation kernels (``GPU_CASES``) with their predictions.
  -> ``kernels.csv`` as they are timed, then the record ``<device>/gpu-<UTC>.csv|json``.

``--budget-s`` stops starting new work after that many seconds (the rows so far are kept).
Without torch or a CUDA GPU, the parts that need them are skipped and ``session.json`` says why.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from decodex.validation import records
from decodex.validation.e2e_decode import E2E_GRID, model_config

PARTS = ("ceilings", "e2e", "kernels")


class _OutOfTimeError(Exception):
    """The session's budget is spent."""


class _SkippedError(Exception):
    """A part cannot run on this machine (no torch, no GPU); not a failure."""


class Session:
    """The output folder, the clock and the session summary (``session.json``), rewritten after
    every change."""

    def __init__(self, out: Path, budget_s: float) -> None:
        self.out, self.budget_s, self.start = out, budget_s, time.monotonic()
        out.mkdir(parents=True, exist_ok=True)
        self.summary: dict[str, Any] = {"parts": {}}

    def elapsed(self) -> float:
        """Seconds since the session started."""
        return time.monotonic() - self.start

    def check_time(self) -> None:
        """Raise _OutOfTimeError once the budget is spent."""
        if self.elapsed() > self.budget_s:
            raise _OutOfTimeError(f"budget of {self.budget_s:.0f} s spent")

    def save(self) -> None:
        """Rewrite ``session.json`` (atomically)."""
        records._atomic_write(self.out / "session.json", json.dumps(self.summary, indent=2, default=str) + "\n")

    def save_rows(self, name: str, rows: Sequence[dict[str, Any]]) -> None:
        """Rewrite ``name`` (CSV) with ``rows`` (atomically)."""
        records._atomic_write(self.out / name, pd.DataFrame(list(rows)).to_csv(index=False))

    def log(self, text: str) -> None:
        """One progress line on stdout with the elapsed time."""
        print(f"[{self.elapsed():6.1f} s] {text}", flush=True)


def _torch_cuda() -> Any:
    """torch, when it is installed and sees a CUDA GPU; else None."""
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def run_ceilings(session: Session) -> None:
    """The GPU's identity and its two measured ceilings (copy bandwidth, bf16 GEMM rate)."""
    from decodex.validation.host import library_versions
    from decodex.validation.kernel_validation import nvidia_smi
    from decodex.validation.torch_decode import median_event_time_s

    query = "name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,clocks.max.mem,power.limit,temperature.gpu"
    info: dict[str, Any] = {"libraries": library_versions(), "nvidia_smi": nvidia_smi(query)}
    torch = _torch_cuda()
    if torch is None:
        info["skipped"] = "no torch with a CUDA GPU"
    else:
        props = torch.cuda.get_device_properties(0)
        info.update(gpu_name=props.name, multiprocessors=props.multi_processor_count,
                    l2_bytes=getattr(props, "L2_cache_size", None), memory_bytes=props.total_memory,
                    compute_capability=[props.major, props.minor], torch=torch.__version__, cuda=torch.version.cuda)
        n = 1 << 32
        src = torch.randint(0, 255, (n,), dtype=torch.uint8, device="cuda")
        dst = torch.empty_like(src)
        info["copy_bandwidth_bytes_per_s"] = 2 * n / median_event_time_s(torch, lambda: dst.copy_(src), 1, 10)[0]
        del src, dst
        a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
        b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
        info["bf16_gemm_flops_per_s"] = 2 * 8192**3 / median_event_time_s(torch, lambda: a @ b, 1, 10)[0]
        del a, b
        torch.cuda.empty_cache()
    session.summary["gpu"] = info
    session.log(f"ceilings: copy {info.get('copy_bandwidth_bytes_per_s', float('nan')) / 1e12:.2f} TB/s, "
                f"bf16 GEMM {info.get('bf16_gemm_flops_per_s', float('nan')) / 1e12:.0f} TFLOP/s")


def run_e2e(session: Session) -> None:
    """The PyTorch decode step over ``E2E_GRID``, one row at a time into ``e2e.csv``."""
    torch = _torch_cuda()
    if torch is None:
        raise _SkippedError("no torch with a CUDA GPU")
    from decodex.validation.torch_decode import time_decode_grid

    rows: list[dict[str, Any]] = []

    def keep(row: dict[str, Any]) -> None:
        rows.append(row)
        session.save_rows("e2e.csv", rows)
        what = row["skipped"] or f"step {row['step_s'] * 1e3:.3f} ms, attention {row['attention_s'] * 1e3:.3f} ms"
        session.log(f"e2e {row['model']} batch {row['batch']} context {row['context']}: {what}")
        session.check_time()

    for model, batches, contexts in E2E_GRID:
        time_decode_grid(model, model_config(model), batches, contexts, on_row=keep)


def run_kernels(session: Session, spec: str | None, cases: str = "gpu", repeats: int = 20) -> None:
    """The Numba CUDA kernels (``GPU_CASES``, or the tiny ``SIM_CASES`` with ``cases="sim"``):
    ``kernels.csv`` as they are timed, then the record."""
    from decodex.hw_models.system import load_system
    from decodex.validation.kernel_validation import gpu_identity, spec_for_gpu, validate_gpu
    from decodex.validation.kernels import GPU_CASES, SIM_CASES, device_copy_bandwidth

    identity = gpu_identity()
    device = load_system(spec or spec_for_gpu(identity["gpu_name"])).primary_device.name
    rows: list[dict[str, Any]] = []

    def keep(row: dict[str, Any]) -> None:
        rows.append(row)
        session.save_rows("kernels.csv", rows)
        session.log(f"kernel {row['kernel']} {row['dtype']} {row['shape']}: measured {row['measured_s'] * 1e6:.1f} us,"
                    f" predicted {row['predicted_s'] * 1e6:.1f} us ({row['error']:+.1%})")
        session.check_time()

    try:
        validate_gpu(device, GPU_CASES if cases == "gpu" else SIM_CASES, repeats=repeats, write=False, on_row=keep)
    finally:
        if rows:
            frame = pd.DataFrame(rows)
            frame["device"] = device
            machine = {**identity, "device_kind": "gpu", "spec": device,
                       "device_copy_bandwidth_bytes_per_s": device_copy_bandwidth()}
            path = records.write_record(device, machine, frame, kind="gpu", root=session.out)
            session.summary["kernel_record"] = str(path.relative_to(session.out))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the session's parts in order; exit 0 when every part ran (or was skipped for a reason)."""
    parser = argparse.ArgumentParser(prog="python -m decodex.validation.gpu_session", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for session.json, e2e.csv, kernels.csv")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    parser.add_argument("--budget-s", type=float, default=360.0, help="start no new work after this (s)")
    parser.add_argument("--spec", default=None, help="catalog device of the kernels' predictions (default: by name)")
    parser.add_argument("--cases", choices=("gpu", "sim"), default="gpu",
                        help="kernel cases: gpu (GPU_CASES) or sim (the tiny shapes, for the CUDA simulator)")
    parser.add_argument("--repeats", type=int, default=20, help="timed launches per kernel case")
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        parser.error(f"--parts: unknown {unknown}; choose from {', '.join(PARTS)}")
    session = Session(args.out, args.budget_s)
    failed = False
    for part in parts:
        started = session.elapsed()
        status = "done"
        try:
            session.check_time()
            if part == "ceilings":
                run_ceilings(session)
            elif part == "e2e":
                run_e2e(session)
            else:
                run_kernels(session, args.spec, args.cases, args.repeats)
        except _OutOfTimeError as err:
            status = f"stopped: {err}"
        except _SkippedError as err:
            status = f"skipped: {err}"
        except Exception as err:  # a part that fails leaves the others to run
            status = f"failed: {type(err).__name__}: {err}"
            failed = True
            traceback.print_exc()
        session.summary["parts"][part] = {"status": status, "seconds": round(session.elapsed() - started, 1)}
        session.save()
        session.log(f"{part}: {status}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
