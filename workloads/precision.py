"""Numeric formats of weights, activations and KV cache, and N:M weight sparsity."""

from __future__ import annotations

import math
from dataclasses import dataclass

from decodex.core.dtypes import DType
from decodex.core.errors import ArgumentError
from decodex.workloads.batch import is_number, is_whole

MAX_SPARSITY_M = 256  # the M of N:M sparsity: weights per group


@dataclass(frozen=True)
class Sparsity:
    """N:M structured weight sparsity: at most ``n`` non-zeros in every ``m`` consecutive weights.

    Stored weights are the non-zeros plus ``ceil(log2(m))`` bits of position metadata per
    non-zero (2 bits for NVIDIA's 2:4 format).
    """

    n: int
    m: int

    def __post_init__(self) -> None:
        if not is_whole(self.m) or not 1 <= self.m <= MAX_SPARSITY_M:
            raise ArgumentError(f"sparsity: m={self.m!r} must be an integer in [1, {MAX_SPARSITY_M}]")
        if not is_whole(self.n) or not 0 <= self.n <= self.m:
            raise ArgumentError(f"sparsity: n={self.n!r} must be an integer in [0, m={self.m}]")
        object.__setattr__(self, "n", int(self.n))
        object.__setattr__(self, "m", int(self.m))

    @property
    def density(self) -> float:
        """Fraction of weights kept, n/m."""
        return self.n / self.m

    @property
    def pattern(self) -> str:
        """The pattern as text, e.g. ``"2:4"``."""
        return f"{self.n}:{self.m}"

    @property
    def metadata_bits_per_nonzero(self) -> int:
        """Bits of position index stored with each kept weight."""
        return 0 if self.m == 1 else math.ceil(math.log2(self.m))

    def stored_bytes_per_weight(self, dtype: DType) -> float:
        """Average bytes stored per dense weight position, values plus metadata."""
        return self.density * (dtype.nbytes + self.metadata_bits_per_nonzero / 8.0)

    @classmethod
    def parse(cls, text: str) -> Sparsity:
        """Parse ``"N:M"``."""
        if not isinstance(text, str):
            raise ArgumentError(f"sparsity: {text!r} is not of the form N:M (e.g. 2:4)")
        try:
            n_text, m_text = text.split(":")
            return cls(int(n_text), int(m_text))
        except ValueError:
            raise ArgumentError(f"sparsity: {text!r} is not of the form N:M (e.g. 2:4)") from None


@dataclass(frozen=True)
class Precision:
    """Formats of weights, activations and KV cache, and optional N:M weight sparsity.

    Matmuls compute in the activation format (weights narrower than the activations are
    dequantized on the fly, W4A16 style; W8A8 computes in int8). ``weight_bits``: average stored
    bits per weight of a mixed-precision model (e.g. 4.1 for mostly 4-bit weights with some
    8-bit layers, FlightLLM); None stores every weight in the ``weights`` format. ``head``: the
    format of the embedding table and the LM head when they are kept out of the quantization
    (as NVIDIA ModelOpt's FP8/INT8/INT4 recipes do by default: ``"*lm_head*"`` in
    ``_default_disabled_quantizer_cfg``, modelopt/torch/quantization/config.py); the LM head then
    computes in that format. None: they are stored like every other weight.
    """

    weights: DType = DType.BF16
    activations: DType = DType.BF16
    kv_cache: DType = DType.BF16
    sparsity: Sparsity | None = None
    weight_bits: float | None = None
    head: DType | None = None

    def __post_init__(self) -> None:
        for name, label in (("weights", "w"), ("activations", "a"), ("kv_cache", "kv")):
            value = getattr(self, name)
            if isinstance(value, str) and not isinstance(value, DType):
                object.__setattr__(self, name, DType.parse(value, f"precision.{label}"))
            elif not isinstance(value, DType):
                allowed = ", ".join(d.value for d in DType)
                raise ArgumentError(f"precision.{label}: {value!r} is not a format; allowed: {allowed}")
        if isinstance(self.head, str) and not isinstance(self.head, DType):
            object.__setattr__(self, "head", DType.parse(self.head, "precision.head"))
        elif self.head is not None and not isinstance(self.head, DType):
            raise ArgumentError(f"precision.head: {self.head!r} is not a format or None")
        if self.sparsity is not None and not isinstance(self.sparsity, Sparsity):
            raise ArgumentError(f"precision.sparsity: must be a Sparsity (N:M) or None, got {self.sparsity!r}")
        if self.weight_bits is not None:
            if not is_number(self.weight_bits) or not 1.0 <= self.weight_bits <= 32.0:
                raise ArgumentError(f"precision.wbits: {self.weight_bits!r} outside [1, 32] bits per weight")
            object.__setattr__(self, "weight_bits", float(self.weight_bits))

    @property
    def compute(self) -> DType:
        """The format matmuls execute in."""
        return self.activations

    @property
    def vector(self) -> DType:
        """The format of element-wise work (norms, activations, softmax): the activation format
        when it is 16 or 32 bits wide, else bf16 (8-bit activations are dequantized for it)."""
        if self.activations in (DType.FP32, DType.BF16, DType.FP16):
            return self.activations
        return DType.BF16

    @property
    def attention(self) -> DType:
        """The format attention computes in: float activations as they are, bf16 for integer ones."""
        return self.activations if self.activations.is_float else DType.BF16

    @property
    def name(self) -> str:
        """A compact label: the preset name where one matches, else ``w=..,a=..,kv=..``."""
        for preset, value in PRECISION_PRESETS.items():
            if value == self:
                return preset
        text = f"w={self.weights},a={self.activations},kv={self.kv_cache}"
        if self.sparsity is not None:
            text += f",sparsity={self.sparsity.pattern}"
        if self.weight_bits is not None:
            text += f",wbits={self.weight_bits:g}"
        if self.head is not None:
            text += f",head={self.head}"
        return text

    @property
    def head_weights(self) -> DType:
        """The stored format of the embedding table and LM head."""
        return self.weights if self.head is None else self.head

    def weight_bytes_per_param(self) -> float:
        """Stored bytes per dense weight parameter (mixed-precision average and sparsity metadata
        if any)."""
        value = self.weight_bits / 8.0 if self.weight_bits is not None else self.weights.nbytes
        if self.sparsity is None:
            return value
        return self.sparsity.density * (value + self.sparsity.metadata_bits_per_nonzero / 8.0)

    @classmethod
    def parse(cls, text: str | Precision) -> Precision:
        """Parse a preset name (``bf16``, ``fp8``, ``w4a16`` ...) or
        ``w=int4,a=bf16,kv=fp8[,sparsity=2:4][,wbits=4.1][,head=bf16]``."""
        if isinstance(text, Precision):
            return text
        if not isinstance(text, str):
            raise ArgumentError(f"precision: must be a preset name ({', '.join(PRECISION_PRESETS)}), "
                                f"w=..,a=..,kv=.. text or a Precision, got {type(text).__name__} {text!r}")
        key = text.strip().lower()
        if key in PRECISION_PRESETS:
            return PRECISION_PRESETS[key]
        if "=" not in key:
            allowed = ", ".join(PRECISION_PRESETS)
            raise ArgumentError(
                f"precision: unknown preset {text!r}; allowed: {allowed}, or w=..,a=..,kv=..[,sparsity=N:M]"
            )
        fields: dict[str, str] = {}
        for part in key.split(","):
            name, _, value = part.partition("=")
            fields[name.strip()] = value.strip()
        unknown = set(fields) - {"w", "a", "kv", "sparsity", "wbits", "head"}
        if unknown:
            raise ArgumentError(f"precision: unknown keys {sorted(unknown)}; allowed: w, a, kv, sparsity, wbits, head")
        try:
            bits = float(fields["wbits"]) if "wbits" in fields else None
        except ValueError:
            raise ArgumentError(f"precision.wbits: {fields['wbits']!r} is not a number of bits") from None
        base = PRECISION_PRESETS["bf16"]
        return cls(
            weights=DType.parse(fields["w"], "precision.w") if "w" in fields else base.weights,
            activations=DType.parse(fields["a"], "precision.a") if "a" in fields else base.activations,
            kv_cache=DType.parse(fields["kv"], "precision.kv") if "kv" in fields else base.kv_cache,
            sparsity=Sparsity.parse(fields["sparsity"]) if "sparsity" in fields else None,
            weight_bits=bits,
            head=DType.parse(fields["head"], "precision.head") if "head" in fields else None,
        )


PRECISION_PRESETS: dict[str, Precision] = {
    "fp32": Precision(DType.FP32, DType.FP32, DType.FP32),
    "bf16": Precision(DType.BF16, DType.BF16, DType.BF16),
    "fp16": Precision(DType.FP16, DType.FP16, DType.FP16),
    "fp8": Precision(DType.FP8, DType.FP8, DType.FP8),
    "int8": Precision(DType.INT8, DType.INT8, DType.INT8),
    "w8a16": Precision(DType.INT8, DType.BF16, DType.BF16),
    "w4a16": Precision(DType.INT4, DType.BF16, DType.BF16),
    "w4a8": Precision(DType.INT4, DType.INT8, DType.INT8),
}
