"""Bearer-token authentication for writes.

Tokens are configured hashed (``sha256:<hex>``), never in clear, and a presented token is hashed and compared
with every configured digest in constant time, so neither timing nor logs reveal a token.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac

from schema.context import Viewer


@dataclasses.dataclass(frozen=True)
class TokenStore:
    """The configured token digests, with their rights."""

    writers: tuple[bytes, ...]
    readers: tuple[bytes, ...]

    @classmethod
    def parse(cls, raw: str) -> TokenStore:
        writers: list[bytes] = []
        readers: list[bytes] = []
        for item in filter(None, (p.strip() for p in raw.split(","))):
            read_only = item.startswith("read:")
            digest = bytes.fromhex(item.removeprefix("read:").removeprefix("sha256:"))
            (readers if read_only else writers).append(digest)
        return cls(tuple(writers), tuple(readers))

    def viewer(self, authorization: str | None) -> Viewer:
        """Who presents ``authorization``; a malformed or unknown token is reported, not silently anonymous."""
        if authorization is None or not authorization.strip():
            return Viewer()
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return Viewer(auth_problem="use 'Authorization: Bearer <token>'")
        presented = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        # Compare against every digest (no early exit) so timing does not depend on which one matched.
        is_writer = False
        for digest in self.writers:
            is_writer |= hmac.compare_digest(presented, digest)
        is_reader = False
        for digest in self.readers:
            is_reader |= hmac.compare_digest(presented, digest)
        if not (is_writer or is_reader):
            return Viewer(auth_problem="the bearer token is not valid")
        return Viewer(authenticated=True, can_write=is_writer, token_digest=presented.hex())


def hash_token(token: str) -> str:
    """The form a token is configured in: ``sha256:<hex>``."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()
