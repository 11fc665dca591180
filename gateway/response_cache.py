"""The whole-response cache: the encoded ``data`` of shareable queries, so a hit runs no GraphQL at all.

What is cached: the ``data`` of a query operation that reads data, that ended with no error, and whose
resolvers all said the result may be shared (deep and backward search pages say not, as in the row cache).
What never is: mutations, introspection-only operations (``{ __typename }``, ``__schema``), responses with
errors, and anything read for a request whose entry could not be given a WAL position.

The rules are the row cache's:

* The key is the document's hash, the operation name, the variables (canonical JSON) and the staleness class.
  The entry records the data generation it was computed under; every write bumps the generation, so a write
  retires every entry at once. The generation and the entry come back in one round trip.
* The entry records a lower bound of the WAL position its data was read at; a request that carries a
  consistency token is only served an entry at or past the token.
* Staleness classes: requests that accept the default staleness (or more) share entries; a request asking for
  less is served only entries younger than what it asked for.

``extensions`` (trace id, statements, routing) are per request and never stored: a hit gets its own. For
clients that accept gzip, each process keeps, per entry, the body's prefix (``{"data":`` and the data) deflated
once, so a hit is gzipped by appending its own extensions (gateway.compression) instead of compressing the whole
body again. It is kept in process memory (a bounded LRU keyed by the entry's key, generation and time stored), not
in the entry: in Redis it would travel as base64 on every hit, make each entry about 20 % larger, and measured no
cheaper (docs/performance.md, "Cache hits sent gzipped"). The cost is one compression per entry per process.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections import OrderedDict
from typing import Any

import orjson

from gateway.cache import ResultCache
from gateway.compression import DeflatedPrefix
from schema.context import Context


@dataclasses.dataclass(frozen=True, slots=True)
class StoredResponse:
    """A cache hit: the encoded data and what the hit must still record."""

    data: bytes
    operation: str
    searches: tuple[str, ...]
    #: The body's prefix deflated, when this process has it for this entry.
    deflated: DeflatedPrefix | None = None
    #: Which stored entry this is (key, generation, time stored): what its deflated prefix is kept under.
    identity: tuple[str, int, float] | None = None


#: Deflated prefixes kept per process (about a third of the body each: 2 to 3 kB for a 20-result search). Those of
#: expired or retired entries are never looked up again and age out of the LRU.
DEFLATED_ENTRIES = 1024


class ResponseCache:
    """Encoded responses in the result cache's store, under their own key prefix."""

    def __init__(self, store: ResultCache, *, enabled: bool, ttl_s: float, default_staleness_ms: int) -> None:
        self._store = store
        self.enabled = enabled and store.enabled and ttl_s > 0
        self._ttl_s = ttl_s
        self._default_staleness_ms = default_staleness_ms
        self.hits = 0
        self.misses = 0
        self.stores = 0
        self._deflated: OrderedDict[tuple[str, int, float], DeflatedPrefix] = OrderedDict()

    def staleness_class(self, max_staleness_ms: int | None) -> str:
        if max_staleness_ms is None or max_staleness_ms >= self._default_staleness_ms:
            return "d"
        return "t"

    def key(self, document: str, operation: str | None, variables: dict[str, Any], staleness_ms: int | None) -> str:
        material = orjson.dumps(
            [document, operation, variables, self.staleness_class(staleness_ms)], option=orjson.OPT_SORT_KEYS
        )
        return "r:" + hashlib.sha256(material).hexdigest()

    async def lookup(
        self, key: str, *, min_lsn: int | None, max_staleness_ms: int | None
    ) -> tuple[int | None, StoredResponse | None]:
        """The current generation and a usable entry for ``key`` (None when absent, retired or too old)."""
        gen, entry = await self._store.generation_and(key)
        if gen is None or not isinstance(entry, dict) or entry.get("gen") != gen:
            self.misses += 1
            return gen, None
        lsn = entry.get("lsn")
        if min_lsn is not None and lsn is not None and (not isinstance(lsn, int) or lsn < min_lsn):
            self.misses += 1
            return gen, None
        if self.staleness_class(max_staleness_ms) == "t":
            at = entry.get("at")
            if not isinstance(at, (int, float)) or (time.time() - at) * 1000 > (max_staleness_ms or 0):
                self.misses += 1
                return gen, None
        data = entry.get("data")
        if not isinstance(data, str):
            self.misses += 1
            return gen, None
        self.hits += 1
        searches = entry.get("searches")
        at = entry.get("at")
        identity = (key, gen, float(at)) if isinstance(at, (int, float)) else None
        deflated = self._deflated.get(identity) if identity is not None else None
        if deflated is not None and identity is not None:
            self._deflated.move_to_end(identity)
        return gen, StoredResponse(
            data=data.encode(),
            operation=str(entry.get("op") or ""),
            searches=tuple(s for s in searches if isinstance(s, str)) if isinstance(searches, list) else (),
            deflated=deflated,
            identity=identity,
        )

    async def store(
        self, key: str, ctx: Context, generation: int, data: bytes, deflated: DeflatedPrefix | None = None
    ) -> None:
        """Keep a response for the next reader, stamped with its generation and WAL lower bound; keep its body's
        prefix, deflated (when given), in this process."""
        lsns = [d.lsn for d in ctx.routing.decisions if d.lsn is not None]
        if len(lsns) != len(ctx.routing.decisions):
            return  # a read whose position is unknown cannot be promised to token holders: not shared
        at = time.time()
        entry = {
            "gen": generation,
            "lsn": min(lsns) if lsns else None,  # None: no data was read, any reader may have it
            "at": at,
            "op": ctx.operation_name or "",
            "searches": ctx.searches,
            "data": data.decode(),
        }
        if await self._store.put(key, entry, ttl_s=self._ttl_s):
            self.stores += 1
            if deflated is not None:
                self.remember((key, generation, at), deflated)

    def remember(self, identity: tuple[str, int, float], deflated: DeflatedPrefix) -> None:
        """Keep an entry's deflated prefix in this process, for its next gzipped hits."""
        self._deflated[identity] = deflated
        self._deflated.move_to_end(identity)
        while len(self._deflated) > DEFLATED_ENTRIES:
            self._deflated.popitem(last=False)

