"""gzip for responses: who gets it, the middleware that applies it, and gzip bodies assembled from stored parts.

A response-cache hit is the cached ``data`` plus this request's ``extensions``. Compressing the whole body again
on every hit cost a quarter of a hit's CPU (docs/performance.md). So each process keeps, per cache entry, the
body's prefix (``{"data":`` and the data) already deflated and ended by a sync flush, with its CRC-32 and length
(gateway.response_cache); a hit then only appends its own suffix and the gzip trailer:

    gzip header | stored prefix blocks (sync flush: byte-aligned, not final) | final block(s) of the suffix |
    CRC-32 of the whole body (the prefix's CRC continued over the suffix) | length of the whole body mod 2**32

which is one valid gzip member (RFC 1952 over RFC 1951). The suffix is a few dozen bytes of trace id and counters
that barely compress, so it goes into *stored* (uncompressed) deflate blocks: no compressor is set up per hit.

Such a response carries ``Content-Encoding: gzip``; Starlette's gzip responders pass a response that already has
a Content-Encoding through untouched, so it is not compressed twice.
"""

from __future__ import annotations

import dataclasses
import struct
import zlib

from starlette.datastructures import Headers
from starlette.middleware.gzip import GZipMiddleware, GZipResponder, IdentityResponder
from starlette.types import Receive, Scope, Send

#: zlib level for responses. Level 1: on a search response 4 % more bytes than level 4 for about half its CPU.
LEVEL = 1
#: The headers of a gzipped response besides its length.
GZIP_HEADERS = {"Content-Encoding": "gzip", "Vary": "Accept-Encoding"}

# ID1 ID2, CM=deflate, no flags, MTIME=0 (none: the same body gets the same bytes), XFL=4 (fastest), OS=255.
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x04\xff"
_STORED_MAX = 0xFFFF  # a stored deflate block holds at most 65,535 bytes


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether a client's Accept-Encoding admits gzip (RFC 9110 12.5.3): listed (or as x-gzip) with q > 0.

    Absent header or ``identity``: no. ``gzip;q=0`` is a refusal (Starlette's own check, a substring test,
    took it for a yes). ``*`` alone is not taken as gzip: a client that names no coding gets none, as before.
    """
    if not accept_encoding:
        return False
    for item in accept_encoding.split(","):
        coding, _, params = item.partition(";")
        if coding.strip().lower() not in ("gzip", "x-gzip"):
            continue
        return _quality(params) > 0
    return False


def _quality(params: str) -> float:
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                return float(value.strip())
            except ValueError:
                return 0.0  # a malformed weight: do not guess in the client's favour of a coding it may not read
    return 1.0


class Compression(GZipMiddleware):
    """Starlette's GZipMiddleware, deciding who gets gzip with :func:`accepts_gzip`.

    The gateway's own gzip bodies (cache hits) and everything this middleware compresses must agree on who
    accepts gzip, so both use the one function; the responders (threshold, Vary, Content-Length, passing through
    a response that is already encoded) are Starlette's.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if accepts_gzip(Headers(scope=scope).get("accept-encoding")):
            responder: IdentityResponder = GZipResponder(
                self.app,
                self.minimum_size,
                compresslevel=self.compresslevel,
                thread_minimum_size=self.thread_minimum_size,
                exclude_content_types=self.exclude_content_types,
            )
        else:
            responder = IdentityResponder(self.app, self.minimum_size, exclude_content_types=self.exclude_content_types)
        await responder(scope, receive, send)


@dataclasses.dataclass(frozen=True, slots=True)
class DeflatedPrefix:
    """The start of a body, deflated once: raw deflate blocks ended by a sync flush, with the CRC-32 and length
    of the bytes they hold."""

    deflate: bytes
    crc: int
    size: int


def deflate_prefix(prefix: bytes, *, level: int = LEVEL) -> DeflatedPrefix:
    """Compress ``prefix`` into blocks that any final block can follow (a sync flush leaves them byte-aligned)."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    blocks = compressor.compress(prefix) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return DeflatedPrefix(deflate=blocks, crc=zlib.crc32(prefix), size=len(prefix))


def gzip_body(prefix: DeflatedPrefix, suffix: bytes) -> bytes:
    """One gzip member whose content is the prefix's bytes followed by ``suffix``."""
    parts = [_GZIP_HEADER, prefix.deflate]
    start = 0
    while True:
        chunk = suffix[start : start + _STORED_MAX]
        start += len(chunk)
        last = start >= len(suffix)
        # A stored block: BFINAL and BTYPE=00 in the first byte (the rest of it padding), LEN, NLEN.
        parts.append(struct.pack("<BHH", 1 if last else 0, len(chunk), len(chunk) ^ 0xFFFF))
        parts.append(chunk)
        if last:
            break
    parts.append(struct.pack("<II", zlib.crc32(suffix, prefix.crc), (prefix.size + len(suffix)) & 0xFFFFFFFF))
    return b"".join(parts)
