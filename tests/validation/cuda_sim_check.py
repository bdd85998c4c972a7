"""Run every CUDA kernel of ``validation.kernels`` (``cuda_matmul``, ``cuda_attention``, ``cuda_rowwise``,
launched by ``cuda_launch``) on Numba's CUDA simulator and compare it with its
numpy reference; exit status 0 when all match.

Run as a script (``tests/validation/test_cuda_sim.py`` does, in a fresh interpreter): the
simulator must be selected before numba is first imported, which a pytest process that already
imported numba cannot do. ``--case N`` runs only ``SIM_CASES[N]``.
"""

from __future__ import annotations

import os

os.environ["NUMBA_ENABLE_CUDASIM"] = "1"  # before anything imports numba

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np


def main(argv: list[str] | None = None) -> int:
    """Check the selected simulator cases; return the number of failures (0: all passed)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--case", type=int, action="append", help="index into SIM_CASES (repeatable)")
    args = parser.parse_args(argv)

    from numba import cuda

    from decodex.validation.kernels import KERNELS, SIM_CASES, cuda_warp, relative_error, time_cuda, to_device
    from decodex.validation.kernels.cuda_launch import sm_count
    from decodex.validation.kernels.launch_geometry import case_blocks

    assert cuda_warp.SIMULATOR, "NUMBA_ENABLE_CUDASIM was not honoured"
    assert cuda.is_available(), "the CUDA simulator reports no device"
    failures = 0
    indices = args.case if args.case else range(len(SIM_CASES))
    for i in indices:
        c = SIM_CASES[i]
        spec = KERNELS[c.kernel]
        inputs = spec.make_inputs(c.shape, c.dtype, np.random.default_rng(i))
        ref = spec.reference(inputs)
        start = time.perf_counter()
        run = spec.run_cuda(to_device(inputs))
        out = run.output.copy_to_host()
        err = relative_error(out, ref)
        ok = out.shape == ref.shape and bool(np.all(np.isfinite(out))) and err <= spec.tolerance[c.dtype]
        blocks = int(np.prod(run.launches[0].grid))  # the SM-fill prediction reads the grid from the shape
        if blocks != case_blocks(c.kernel, dict(c.shape), sm_count()):
            print(f"FAIL [{i}] {c.label}: launched {blocks} blocks, case_blocks says "
                  f"{case_blocks(c.kernel, dict(c.shape), sm_count())}")
            ok = False
        names = ",".join(f"{cfg.kernel}{cfg.grid}x{cfg.block}" for cfg in run.launches)
        print(f"{'ok  ' if ok else 'FAIL'} [{i}] {c.label}: rel err {err:.2e} ({names}, "
              f"{time.perf_counter() - start:.1f} s)", flush=True)
        failures += not ok
    # the timing path runs under the simulator too (events carry no time there)
    c = SIM_CASES[0]
    spec = KERNELS[c.kernel]
    timing = time_cuda(spec, to_device(spec.make_inputs(c.shape, c.dtype, np.random.default_rng(0))), repeats=2,
                       max_copies=3)
    if timing.repeats != 2 or timing.copies != 3:
        print(f"FAIL time_cuda under the simulator: {timing}")
        failures += 1
    return failures


if __name__ == "__main__":
    sys.exit(1 if main() else 0)
