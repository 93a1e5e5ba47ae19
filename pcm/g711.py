"""G.711 (ITU-T) μ-law and A-law expansion to 16-bit linear PCM, by lookup table.

Python 3.13 removed ``audioop``; the expansion is a 256-entry table per law, built once
from the standard's segment/mantissa formulas and indexed with numpy.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

_MULAW_BIAS = 0x84


def _mulaw_table() -> npt.NDArray[np.int16]:
    table = np.empty(256, dtype=np.int16)
    for code in range(256):
        inverted = ~code & 0xFF
        exponent = (inverted >> 4) & 0x07
        mantissa = inverted & 0x0F
        magnitude = (((mantissa << 3) + _MULAW_BIAS) << exponent) - _MULAW_BIAS
        table[code] = -magnitude if inverted & 0x80 else magnitude
    return table


def _alaw_table() -> npt.NDArray[np.int16]:
    table = np.empty(256, dtype=np.int16)
    for code in range(256):
        toggled = code ^ 0x55
        exponent = (toggled >> 4) & 0x07
        mantissa = toggled & 0x0F
        # Segment 0 is linear; segment e ≥ 1 has the implicit leading bit 0x100, scaled by 2^(e-1).
        leading = 0x100 if exponent else 0
        magnitude = ((mantissa << 4) + 8 + leading) << max(exponent - 1, 0)
        table[code] = magnitude if toggled & 0x80 else -magnitude
    return table


MULAW_TO_LINEAR = _mulaw_table()
ALAW_TO_LINEAR = _alaw_table()
MULAW_TO_LINEAR.flags.writeable = False
ALAW_TO_LINEAR.flags.writeable = False


def mulaw_to_int16(data: bytes | bytearray | memoryview) -> npt.NDArray[np.int16]:
    """μ-law bytes (one a sample) to 16-bit linear samples: 0xFF → 0, 0x00 → -32124."""
    return MULAW_TO_LINEAR[np.frombuffer(data, dtype=np.uint8)]


def alaw_to_int16(data: bytes | bytearray | memoryview) -> npt.NDArray[np.int16]:
    """A-law bytes (one a sample) to 16-bit linear samples: 0xD5 → 8, 0x55 → -8."""
    return ALAW_TO_LINEAR[np.frombuffer(data, dtype=np.uint8)]


def _ranked(table: npt.NDArray[np.int16]) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.int32]]:
    order = np.argsort(table, kind="stable")
    return order, table[order].astype(np.int32)


_RANKED = {"mulaw": _ranked(MULAW_TO_LINEAR), "alaw": _ranked(ALAW_TO_LINEAR)}


def encode(samples: npt.NDArray[np.int16], law: str) -> bytes:
    """16-bit linear samples to G.711 bytes (``law``: ``"mulaw"`` or ``"alaw"``), each sample
    as the code whose expansion is nearest to it (ties to the lower value), so that
    decoding the result gives back every value of the law's table exactly."""
    if law not in _RANKED:
        raise ValueError(f"unknown G.711 law {law!r}: expected 'mulaw' or 'alaw'")
    order, ranked = _RANKED[law]
    x = np.asarray(samples, dtype=np.int32).reshape(-1)
    above = np.clip(np.searchsorted(ranked, x), 1, 255)
    nearer = np.where(x - ranked[above - 1] <= ranked[above] - x, above - 1, above)
    return order[nearer].astype(np.uint8).tobytes()
