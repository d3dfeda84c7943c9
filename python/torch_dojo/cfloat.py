"""Tesla's configurable floating-point formats on torch tensors, for notebooks.

    import torch
    from torch_dojo import cfloat

    x = torch.randn(1000)
    c = cfloat.to_cfloat(x, "cf8_143")             # bias chosen from amax (D7)
    c.codes, c.bias, c.flags                       # uint8 codes, int, Flags
    y = cfloat.from_cfloat(c.codes, "cf8_143", c.bias)
    cfloat.to_cfloat(x, "cf8_143", bias=7, rounding="stochastic", seed=1)

Formats (``../shared/specs/cfloat.md``): ``cf8_143``, ``cf8_152`` (codes as ``torch.uint8``),
``cf16_shp``, ``cf16_uhp`` (``torch.int16``, the 16-bit pattern), each with a bias in 0..=63,
and ``bf16`` (``torch.int16``) and ``fp32`` (``torch.int32``) with their fixed bias 127.
Conversion from float32 is exact to the spec: round-to-nearest-even or seeded stochastic
rounding, saturation on overflow, NaN to +0; float64 input is first rounded to float32, and
float16/bfloat16 input widens exactly. Decoding is exact.

Status flags (counts of elements) come with every result and from :func:`last_flags`;
``Invalid`` and ``Overflow`` also raise a :class:`CFloatWarning` unless ``warn=False``.
Bad arguments raise :class:`torch_dojo.InvalidInputError`.
"""

from __future__ import annotations

import dataclasses
import operator
import threading
import warnings

import torch

from . import _native
from ._native import InvalidInputError

__all__ = [
    "FORMATS",
    "CFloatTensor",
    "CFloatWarning",
    "Flags",
    "to_cfloat",
    "from_cfloat",
    "choose_bias",
    "limits",
    "last_flags",
]

#: Every format name, in the spec's order.
FORMATS = ("cf8_143", "cf8_152", "cf16_shp", "cf16_uhp", "bf16", "fp32")

_U64 = (1 << 64) - 1


class CFloatWarning(UserWarning):
    """A conversion raised Invalid (NaN, or a negative input to cf16_uhp) or Overflow."""


@dataclasses.dataclass(frozen=True)
class Flags:
    """Status flags of one conversion, as element counts (whitepaper p.9)."""

    invalid: int = 0
    """NaN input, or a negative input to cf16_uhp: the result is +0."""
    denormal: int = 0
    """The result is a denormal."""
    overflow: int = 0
    """The rounded magnitude exceeded the largest finite value, or ±Inf (saturated)."""
    underflow: int = 0
    """A nonzero input became ±0."""

    def __bool__(self) -> bool:
        return any(dataclasses.astuple(self))

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class CFloatTensor:
    """Codes of a tensor in a CFloat format, with what is needed to read them back."""

    codes: torch.Tensor
    """uint8 for cf8, int16 for cf16 and bf16, int32 for fp32; the input's shape."""
    format: str
    bias: int
    denormal: str = "literal"
    flags: Flags = Flags()

    @property
    def shape(self) -> torch.Size:
        return self.codes.shape

    def to_float(self) -> torch.Tensor:
        """The exact float32 values of the codes."""
        return from_cfloat(self.codes, self.format, self.bias, denormal=self.denormal)


_last = threading.local()


def last_flags() -> Flags:
    """Flags of this thread's last :func:`to_cfloat` (all zero before the first)."""
    return getattr(_last, "flags", Flags())


def to_cfloat(
    t: torch.Tensor,
    format: str,
    bias: int | None = None,
    rounding: str = "nearest",
    seed: int = 0,
    denormal: str = "literal",
    *,
    stream: int = 0,
    warn: bool = True,
) -> CFloatTensor:
    """Converts a floating-point tensor to ``format``.

    ``bias`` None chooses it from the tensor's largest magnitude (D7, see :func:`choose_bias`).
    ``rounding`` is ``"nearest"`` (ties to even) or ``"stochastic"``; stochastic rounding of
    element ``i`` draws from ``(seed, stream, i)`` only, so the same seed gives bit-identical
    codes. ``denormal`` is ``"literal"`` (the whitepaper's ``0.m·2^-bias``) or ``"ieee"``
    (``0.m·2^(1-bias)``).
    """
    bias = _optional_int("bias", bias)
    seed = _int("seed", seed) & _U64
    stream = _int("stream", stream) & _U64
    codes, bias, counts = _native.cfloat_encode(
        t, _str("format", format), bias, _str("rounding", rounding), seed, stream,
        _str("denormal", denormal),
    )
    flags = Flags(*counts)
    _last.flags = flags
    if warn and (flags.invalid or flags.overflow):
        warnings.warn(
            f"to_cfloat({format}<{bias}>): {flags.invalid} invalid (NaN, or negative to an "
            f"unsigned format: now +0), {flags.overflow} overflow (saturated) of "
            f"{codes.numel()} elements",
            CFloatWarning,
            stacklevel=2,
        )
    return CFloatTensor(codes, format, bias, denormal, flags)


def from_cfloat(
    codes: torch.Tensor | CFloatTensor,
    format: str | None = None,
    bias: int | None = None,
    denormal: str = "literal",
) -> torch.Tensor:
    """The exact float32 values of ``codes`` (a uint8 tensor for cf8, int16 for cf16 and
    bf16, int32 for fp32) in ``format`` with ``bias``; or of a :class:`CFloatTensor`."""
    if isinstance(codes, CFloatTensor):
        if format is not None and format != codes.format:
            raise InvalidInputError(f"from_cfloat: codes are {codes.format}, not {format}")
        if bias is not None and bias != codes.bias:
            raise InvalidInputError(f"from_cfloat: codes have bias {codes.bias}, not {bias}")
        return codes.to_float()
    format = _str("format", format)
    if bias is None:
        if format not in ("bf16", "fp32"):
            raise InvalidInputError(f"from_cfloat: {format} codes need their bias (0..=63)")
        bias = 127
    return _native.cfloat_decode(codes, format, _int("bias", bias), _str("denormal", denormal))


def choose_bias(t: torch.Tensor, format: str, margin: float = 1.0) -> int:
    """D7: the largest bias whose largest finite value is at least ``amax(|t|) * margin``
    (NaNs ignored; 0 when even bias 0 overflows); an all-zero tensor takes the format's
    default (cf8_143: 7, cf8_152: 15, cf16_shp: 15, cf16_uhp: 31); bf16 and fp32: 127."""
    if isinstance(margin, bool) or not isinstance(margin, (int, float)):
        raise InvalidInputError(f"choose_bias: margin must be a number, got {margin!r}")
    return _native.cfloat_choose_bias(t, _str("format", format), float(margin))


def limits(format: str, bias: int, denormal: str = "literal") -> tuple[float, float, float]:
    """``(largest finite, smallest normal, smallest denormal)`` magnitudes."""
    return _native.cfloat_limits(_str("format", format), _int("bias", bias), _str("denormal", denormal))


def _str(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidInputError(f"{name} must be a string, got {value!r}")
    return value


def _int(name: str, value: object) -> int:
    try:
        if isinstance(value, bool):
            raise TypeError
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise InvalidInputError(f"{name} must be an int, got {value!r}") from None
    if name == "bias" and not 0 <= number <= 255:
        raise InvalidInputError(f"bias {number} is out of range: a CFloat bias is 0..=63")
    return number


def _optional_int(name: str, value: object) -> int | None:
    return None if value is None else _int(name, value)
