"""Uploaded recordings: the request body read into memory under a size and time limit.

server/multipart.py finds the file in the body; server/decoding.py decodes it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

# A file held in memory: the request body, or a view of the part of it that is the file.
Data = bytes | bytearray | memoryview


class UploadError(ValueError):
    """A refused upload: ``status`` and ``code`` as in the protocol's error table."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


async def read_limited(
    chunks: AsyncIterator[bytes],
    max_bytes: int,
    timeout_s: float,
    min_rate_bytes_s: float = 0,
    grace_s: float = 0,
) -> bytearray:
    """The whole body, refused past ``max_bytes`` or when it has not all come in ``timeout_s``.

    With ``min_rate_bytes_s``, after ``grace_s`` the body must also keep up that average
    rate (from the start): a trickle is refused with 408 as soon as it falls behind, not
    only at ``timeout_s``. Each wait for the next chunk has the deadline by which the bytes
    so far stop being enough.
    """
    body = bytearray()
    loop = asyncio.get_running_loop()
    started = loop.time()
    final = started + timeout_s
    iterator = aiter(chunks)
    while True:
        deadline = final
        if min_rate_bytes_s > 0:
            deadline = min(deadline, started + grace_s + len(body) / min_rate_bytes_s)
        try:
            async with asyncio.timeout_at(deadline):
                chunk = await anext(iterator)
        except StopAsyncIteration:
            return body
        except TimeoutError:
            raise _too_slow(body, deadline >= final, timeout_s, min_rate_bytes_s) from None
        body += chunk
        if len(body) > max_bytes:
            raise UploadError(413, "too_large", f"request body exceeds {max_bytes} bytes")


def _too_slow(body: bytearray, whole: bool, timeout_s: float, rate: float) -> UploadError:
    if whole:
        reason = f"request body not received within {timeout_s:g} s"
    else:
        reason = f"request body arriving slower than {rate:g} bytes/s"
    return UploadError(408, "bad_request", f"{reason} ({len(body)} bytes came)")
