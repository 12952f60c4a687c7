"""The uploaded files, read from the request's multipart stream with every limit checked as
the bytes arrive.

Starlette's form parser refuses too many files with a 400 only after counting them, and spools
every file to a temporary file; here the file count, each file's size and the body's size are
checked while the body streams in, so an oversized upload gets its 413 before it is all read.

The body is parsed once, here, and no file is copied: each is kept as views into the body
chunks it arrived in (ASGI's ``bytes``, never changed after; only pieces under 1 KiB are
copied), and ``triton.py`` writes those views straight into the request it sends. See
``triton.py`` for the copies counted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from perf.gateway.errors import GatewayError

FIELD = "files"
# A piece of a file smaller than this is copied out of its chunk instead of viewed: a view
# costs about 200 bytes of its own, so a body trickled in tiny chunks would hold several times
# its size in views.
VIEW_MIN_BYTES = 1024


@dataclass(frozen=True)
class Upload:
    """One file: its name, and its bytes as the pieces they arrived in (views into the body,
    but for pieces under ``VIEW_MIN_BYTES``)."""

    name: str
    pieces: tuple[bytes | memoryview, ...]
    size: int

    def head(self, size: int) -> bytes:
        """The first ``size`` bytes (fewer if the file is shorter), to recognise a format."""
        head = bytearray()
        for piece in self.pieces:
            head += piece[: size - len(head)]
            if len(head) == size:
                break
        return bytes(head)

    def joined(self) -> bytes:
        """The whole file in one buffer: a copy, for the rare caller that needs one (decoding)."""
        return b"".join(self.pieces)


@dataclass(frozen=True)
class UploadLimits:
    max_files: int
    max_file_bytes: int
    max_request_bytes: int


def _mib(size: int) -> str:
    return f"{size / 2**20:.3g} MiB"


@dataclass
class _File:
    name: str
    pieces: list[bytes | memoryview] = field(default_factory=list)
    size: int = 0


@dataclass
class _Collector:
    """python-multipart's callbacks: keep the parts of the field ``files``, skip the others."""

    limits: UploadLimits
    files: list[_File] = field(default_factory=list)
    ended: bool = False
    _header: bytearray = field(default_factory=bytearray)
    _value: bytearray = field(default_factory=bytearray)
    _disposition: bytes = b""
    _current: _File | None = None

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": lambda data, start, end: self._header.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._value.extend(data[start:end]),
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_end": self.on_end,
        }

    def on_part_begin(self) -> None:
        self._disposition = b""
        self._current = None

    def on_header_end(self) -> None:
        if bytes(self._header).lower() == b"content-disposition":
            self._disposition = bytes(self._value)
        self._header.clear()
        self._value.clear()

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        if options.get(b"name") != FIELD.encode():
            return
        if len(self.files) == self.limits.max_files:
            raise GatewayError(
                413, "too_many_files", f"more than {self.limits.max_files} files in one request: send them in parts"
            )
        self._current = _File(options.get(b"filename", b"").decode("utf-8", "replace"))
        self.files.append(self._current)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        current = self._current
        if current is None:
            return
        # A view, not data[start:end]: python-multipart passes the body chunk itself (or its
        # own boundary constant), both immutable bytes.
        current.pieces.append(memoryview(data)[start:end] if end - start >= VIEW_MIN_BYTES else data[start:end])
        current.size += end - start
        if current.size > self.limits.max_file_bytes:
            raise GatewayError(
                413,
                "file_too_large",
                f"file {len(self.files)} ({current.name!r}) is larger than the limit of "
                f"{_mib(self.limits.max_file_bytes)}",
                file=current.name,
            )

    def on_end(self) -> None:
        self.ended = True


async def read_uploads(headers: Mapping[str, str], body: AsyncIterator[bytes], limits: UploadLimits) -> list[Upload]:
    """The files of the multipart field ``files``, in upload order; GatewayError for a body
    that is not multipart, malformed, has no files, or passes a limit."""
    content_type, params = parse_options_header(headers.get("content-type", ""))
    if content_type != b"multipart/form-data":
        got = f"content type {content_type.decode('latin-1')!r}" if content_type else "no content type"
        raise GatewayError(
            422, "no_files", f"no files: send images as multipart/form-data in the field {FIELD!r} (got {got})"
        )
    boundary = params.get(b"boundary")
    if not boundary:
        raise GatewayError(400, "bad_multipart", "the multipart/form-data content type has no boundary")
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_request_bytes:
        raise _request_too_large(limits)
    collector = _Collector(limits)
    try:
        parser = MultipartParser(boundary, collector.callbacks())
        received = 0
        async for chunk in body:
            received += len(chunk)
            if received > limits.max_request_bytes:
                raise _request_too_large(limits)
            parser.write(chunk)
    except FormParserError as error:
        raise GatewayError(400, "bad_multipart", f"the body is not valid multipart/form-data: {error}") from None
    if not collector.ended:
        raise GatewayError(400, "bad_multipart", "the multipart body ended before its closing boundary")
    if not collector.files:
        raise GatewayError(422, "no_files", f"no files: send one or more images in the multipart field {FIELD!r}")
    return [Upload(part.name, tuple(part.pieces), part.size) for part in collector.files]


def _request_too_large(limits: UploadLimits) -> GatewayError:
    return GatewayError(
        413, "request_too_large", f"the request is larger than the limit of {_mib(limits.max_request_bytes)}"
    )
