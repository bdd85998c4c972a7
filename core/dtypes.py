"""Numeric formats (element types) shared by workloads and hardware models."""

from __future__ import annotations

from enum import StrEnum

from decodex.core.errors import ArgumentError


class DType(StrEnum):
    """A numeric format. ``nbytes`` gives its storage size in bytes per element."""

    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"
    FP8 = "fp8"
    INT8 = "int8"
    INT4 = "int4"

    nbytes: float  # storage size of one element, bytes (0.5 for int4); set on each member below

    @property
    def is_float(self) -> bool:
        """True for floating-point formats."""
        return self in (DType.FP32, DType.BF16, DType.FP16, DType.FP8)

    @classmethod
    def parse(cls, text: str, field: str = "dtype") -> DType:
        """Parse a dtype name (case-insensitive); raise ArgumentError naming the choices."""
        try:
            return cls(text.strip().lower())
        except ValueError:
            allowed = ", ".join(d.value for d in cls)
            raise ArgumentError(f"{field}: unknown dtype {text!r}; allowed: {allowed}") from None


_DTYPE_BYTES: dict[DType, float] = {
    DType.FP32: 4.0,
    DType.BF16: 2.0,
    DType.FP16: 2.0,
    DType.FP8: 1.0,
    DType.INT8: 1.0,
    DType.INT4: 0.5,
}
for _dtype, _size in _DTYPE_BYTES.items():  # a plain attribute: read for every op's bytes
    _dtype.nbytes = _size
