"""CUDA kernels on Numba's CUDA simulator, in a fresh interpreter (``cuda_sim_check.py``): the
simulator is chosen by ``NUMBA_ENABLE_CUDASIM=1`` before numba is imported, which this pytest
process (which already imported numba for the CPU kernels) cannot do."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from decodex.validation.kernels import SIM_CASES

SCRIPT = Path(__file__).with_name("cuda_sim_check.py")

pytestmark = pytest.mark.skipif(importlib.util.find_spec("numba_cuda") is None,
                                reason="numba-cuda not installed (pip install -e '.[dev]')")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True,
                          timeout=300)


def test_simulator_is_available_and_nvidia():
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    code = "from numba import cuda; print(cuda.is_available(), cuda.implementation)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "NVIDIA"]


@pytest.mark.long  # ~40-60 s in the CUDA simulator
def test_every_cuda_kernel_matches_reference_on_simulator():
    result = _run()
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("ok  ") == len(SIM_CASES) and "FAIL" not in result.stdout
