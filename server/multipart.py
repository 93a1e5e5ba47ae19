"""The audio file in an upload's body: multipart/form-data parsed in memory, or a raw audio/*
body as it is."""

from __future__ import annotations

from dataclasses import dataclass, field

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from server.upload import Data, UploadError

UPLOAD_FIELD = "file"
MAX_PARTS = 16
# RFC 2046 §5.1.1: a boundary is 1 to 70 characters.
MAX_BOUNDARY_CHARS = 70


@dataclass
class _Part:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    # Where the part's data lies in the body, or a copy of a piece the parser held back.
    pieces: list[slice | bytes] = field(default_factory=list)

    def data(self, body: Data) -> Data:
        """The part's data: a view of the body when it is in one piece (no copy)."""
        view = memoryview(body)
        if len(self.pieces) == 1 and isinstance(self.pieces[0], slice):
            return view[self.pieces[0]]
        return b"".join(view[p] if isinstance(p, slice) else p for p in self.pieces)


class _PartCollector:
    """Collects the parts of a multipart body in memory (never in temporary files)."""

    def __init__(self, body: Data) -> None:
        self._body = body
        self.parts: list[_Part] = []
        self.complete = False
        self._field = b""
        self._value = b""

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_part_data": self._data,
            "on_end": self._end,
        }

    def _begin(self) -> None:
        if len(self.parts) >= MAX_PARTS:
            raise UploadError(400, "bad_request", f"multipart body has more than {MAX_PARTS} parts")
        self.parts.append(_Part())

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self.parts[-1].headers[self._field.lower()] = self._value
        self._field, self._value = b"", b""

    def _data(self, data: bytes, start: int, end: int) -> None:
        pieces = self.parts[-1].pieces
        if data is not self._body:  # a boundary look-behind the parser gives back
            pieces.append(bytes(data[start:end]))
        elif pieces and isinstance(pieces[-1], slice) and pieces[-1].stop == start:
            pieces[-1] = slice(pieces[-1].start, end)
        else:
            pieces.append(slice(start, end))

    def _end(self) -> None:
        self.complete = True


def multipart_file(body: Data, content_type: str) -> Data:
    """The contents of the ``file`` field of a multipart/form-data body."""
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise UploadError(400, "bad_request", "multipart/form-data body has no boundary")
    if len(boundary) > MAX_BOUNDARY_CHARS:
        raise UploadError(
            400,
            "bad_request",
            f"multipart boundary of {len(boundary)} characters is longer than "
            f"{MAX_BOUNDARY_CHARS} (RFC 2046)",
        )
    collector = _PartCollector(body)
    try:
        parser = MultipartParser(boundary, collector.callbacks())  # type: ignore[arg-type]
        parser.write(body)  # type: ignore[arg-type]  # any buffer: it is only indexed
        parser.finalize()
    except FormParserError as exc:
        raise UploadError(400, "bad_request", f"malformed multipart body: {exc}") from exc
    if not collector.complete:
        raise UploadError(400, "bad_request", "multipart body ends before its closing boundary")
    for part in collector.parts:
        _, disposition = parse_options_header(part.headers.get(b"content-disposition", b""))
        if disposition.get(b"name") == UPLOAD_FIELD.encode():
            return part.data(body)
    raise UploadError(400, "bad_request", f"multipart body has no {UPLOAD_FIELD!r} field")


def upload_bytes(body: Data, content_type: str) -> Data:
    """The audio file carried by a request body, by its content type."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == "multipart/form-data":
        return multipart_file(body, content_type)
    if media_type.startswith("audio/"):
        return body
    raise UploadError(
        415,
        "unsupported_media_type",
        f"content type {media_type[:60]!r} is not accepted: send multipart/form-data "
        "with a 'file' field, or the raw file as audio/*",
    )
