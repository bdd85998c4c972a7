"""Vocabulary shared by every Decodex package: error types and numeric formats.

``workloads`` and ``hw_models`` both use these; neither imports the other for them.
"""

from decodex.core.dtypes import DType
from decodex.core.errors import ArgumentError, DecodexError, InfeasibleError, SpecError

__all__ = ["ArgumentError", "DType", "DecodexError", "InfeasibleError", "SpecError"]
