"""The one door to numba-cuda: import ``numba.cuda`` for the GPU path, or say in one line why not.

Importing this module needs neither numba-cuda nor a GPU. The CUDA kernel modules
(``cuda_warp``, ``cuda_matmul``, ``cuda_attention``, ``cuda_rowwise``, ``cuda_launch``) call
:func:`numba_cuda` when they are imported, and ``decodex validate gpu`` calls :func:`require_gpu`
first, so a missing numba-cuda (the ``gpu`` extra) or a machine without a CUDA GPU / driver ends
in a :class:`NoGpuError`, which the CLI prints as one line (exit status 2), never a traceback.
The CPU path (``validate cpu``, :mod:`validation.kernels.cases`) never comes here.
"""

from __future__ import annotations

import os
from types import ModuleType

from decodex.core.errors import DecodexError

NEEDS_NUMBA_CUDA = "validate gpu needs numba-cuda (pip install 'decodex[gpu]')"


class NoGpuError(DecodexError):
    """numba-cuda is not installed, or no CUDA GPU (or driver) is usable on this machine."""


def simulator_selected() -> bool:
    """True when Numba's CUDA simulator is selected (``NUMBA_ENABLE_CUDASIM`` set and not 0)."""
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _numpy_aliases() -> None:
    """numba-cuda 0.30.4 registers a CUDA overload of ``np.row_stack``, which NumPy 2.5 removed
    (it was an alias of ``np.vstack``): without the alias its typing registry fails to load at the
    first kernel compile (seen on an H200 with NumPy 2.5.2, 2026-12-04). Restore the alias."""
    import numpy as np

    if not hasattr(np, "row_stack"):
        np.row_stack = np.vstack


def numba_cuda() -> ModuleType:
    """``numba.cuda`` as NVIDIA's numba-cuda provides it (the simulator under
    ``NUMBA_ENABLE_CUDASIM=1``); needs no GPU. Raises NoGpuError when numba-cuda is missing (numba's
    own built-in CUDA target lacks the extension API the kernels use) or fails to import."""
    try:
        import numba_cuda  # noqa: F401  (present: numba.cuda is redirected to it)
    except ImportError:
        raise NoGpuError(NEEDS_NUMBA_CUDA) from None
    _numpy_aliases()
    try:
        from numba import cuda
    except Exception as err:  # ImportError, or numba's own error when its CUDA target cannot load
        raise NoGpuError(f"numba-cuda is installed but numba.cuda does not import: {_one_line(err)}") from None
    return cuda


def require_gpu() -> ModuleType:
    """``numba.cuda`` with a usable CUDA GPU (or the simulator). Raises NoGpuError naming the reason
    (one line) when numba-cuda is missing or no GPU / driver is found."""
    cuda = numba_cuda()
    try:
        available = bool(cuda.is_available())
    except Exception as err:  # a broken driver install raises from the probe itself
        raise NoGpuError(f"validate gpu: no CUDA GPU found: {_one_line(err)}") from None
    if not available:
        probe = getattr(cuda, "cuda_error", None)
        reason = _one_line(probe() or "") if callable(probe) else ""
        raise NoGpuError(f"validate gpu: no CUDA GPU found: {reason or 'numba.cuda.is_available() is False'}")
    return cuda
