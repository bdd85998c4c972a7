"""A default install (numba, no numba-cuda) runs every CPU feature: ``decodex validate cpu`` and the
kernel cases never import ``numba.cuda`` or the CUDA kernel modules, and ``decodex validate gpu``
says in one line what is missing (exit status 2, no traceback).

Each test runs a fresh interpreter whose ``sitecustomize`` puts a finder first on ``sys.meta_path``
that makes ``numba_cuda`` and ``numba.cuda`` fail to import, as on a machine without the ``gpu``
extra, and records every attempt, so that even an import under ``try`` shows up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BLOCKER = '''
import sys

ATTEMPTS = []


class _NoNumbaCuda:
    """numba-cuda is not installed, and numba's own CUDA target does not import either."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "numba_cuda" or name == "numba.cuda" or name.startswith("numba.cuda."):
            ATTEMPTS.append(name)
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _NoNumbaCuda())
'''

CUDA_MODULES = ("numba.cuda", "numba_cuda", "decodex.validation.kernels.cuda_warp",
                "decodex.validation.kernels.cuda_matmul", "decodex.validation.kernels.cuda_attention",
                "decodex.validation.kernels.cuda_rowwise", "decodex.validation.kernels.cuda_launch")

CPU_RUN = f'''
import json, sys
import numpy as np
import sitecustomize
from decodex.app.cli import main

status = main(["validate", "cpu", "--quick", "--cases", "1", "--no-write", "--json"])
from decodex.validation.kernels import KERNELS, SIM_CASES

rng = np.random.default_rng(0)
for c in SIM_CASES:  # every kernel and CUDA-only option (tile, reg, splits): inputs and ops stay CPU-side
    spec = KERNELS[c.kernel]
    spec.check_shape(c.shape, c.dtype)
    spec.reference(spec.make_inputs(c.shape, c.dtype, rng))
    spec.op(c.shape, c.dtype)
loaded = sorted(m for m in sys.modules if m.startswith({CUDA_MODULES!r}))
print(json.dumps({{"status": status, "attempts": sitecustomize.ATTEMPTS, "cuda_modules": loaded}}))
'''


def _without_numba_cuda(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path}
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=300,
                          check=False)


def test_blocker_hides_numba_cuda(tmp_path: Path) -> None:
    code = "import numba\ntry:\n    from numba import cuda\nexcept ImportError:\n    print('blocked')"
    proc = _without_numba_cuda(tmp_path, "-c", code)
    assert proc.stdout.strip() == "blocked", proc.stdout + proc.stderr


def test_validate_cpu_needs_no_numba_cuda(tmp_path: Path) -> None:
    proc = _without_numba_cuda(tmp_path, "-c", CPU_RUN)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    *summary, report = proc.stdout.strip().splitlines()  # the CLI's --json summary, then this script's line
    assert json.loads(report) == {"status": 0, "attempts": [], "cuda_modules": []}
    assert "matmul" in next(iter(json.loads("\n".join(summary)).values()))  # CPU_CASES[0] is a GEMV


def test_validate_gpu_without_numba_cuda_is_one_line(tmp_path: Path) -> None:
    proc = _without_numba_cuda(tmp_path, "-m", "decodex.app.cli", "validate", "gpu", "--no-write")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "decodex: error: validate gpu needs numba-cuda (pip install 'decodex[gpu]')"
    assert proc.stdout == ""
