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


async def read_limited(chunks: AsyncIterator[bytes], max_bytes: int, timeout_s: float) -> bytearray:
    """The whole body, refused past ``max_bytes`` or when it has not all come in ``timeout_s``."""
    body = bytearray()
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in chunks:
                body += chunk
                if len(body) > max_bytes:
                    raise UploadError(413, "too_large", f"request body exceeds {max_bytes} bytes")
    except TimeoutError:
        raise UploadError(
            408,
            "bad_request",
            f"request body not received within {timeout_s:g} s ({len(body)} bytes came)",
        ) from None
    return body
