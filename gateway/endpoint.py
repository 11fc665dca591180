"""``/graphql``: the gateway's own GraphQL-over-HTTP endpoint, built for the cost of each request.

The path of a request, cheapest first:

1. Read the HTTP request (bounded body, orjson); anything malformed is a 4xx with a GraphQL-shaped error.
2. A query that reads data looks in the response cache: a hit is the stored ``data`` bytes with this request's
   ``extensions`` spliced on, and runs no GraphQL at all.
3. The document comes from the prepared-document cache (parsed, validated and checked against the operation
   limits once per distinct text); only a new document is parsed and validated.
4. graphql-core executes the Strawberry schema directly, with no per-field wrapper: resolvers that do no I/O
   are plain attribute reads, and the connection resolvers batch what their edges show up front.
5. The response is encoded once with orjson and, when shareable, stored for the next client; its
   ``{"data":…`` prefix, deflated once when it is large enough to be gzipped, is kept in this process, so a hit
   sent gzipped costs no compression of the data (gateway.compression).

Spans: the operation, parsing and validation (when they run), execution, each SQL statement, cache calls and
each DataLoader batch. No span wraps an individual field.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
from graphql import ExecutionResult, GraphQLError, GraphQLSchema, OperationType, execute
from opentelemetry import trace
from starlette.datastructures import Headers
from starlette.types import Receive, Scope, Send

from gateway.admission import Admission
from gateway.auth import TokenStore
from gateway.cache import ResultCache
from gateway.compression import GZIP_HEADERS, DeflatedPrefix, accepts_gzip, deflate_prefix, gzip_body
from gateway.concurrency import DatabaseGate
from gateway.documents import DocumentCache, PreparedDocument
from gateway.http_request import GraphQLRequest, RequestError, from_get, from_post
from gateway.metrics import Metrics
from gateway.persisted import PersistedQueries
from gateway.ratelimit import RateLimiter
from gateway.response_cache import ResponseCache, StoredResponse
from gateway.search_log import SearchLog
from gateway.settings import Settings
from gateway.web import PAGE_HEADERS, graphiql_html
from routing import RequestRouting, Router, TokenCodec
from schema.context import Context, Viewer
from schema.cursors import CursorCodec
from schema.db import connection_attributes
from schema.errors import BAD_USER_INPUT, INTERNAL, OVERLOADED, RATE_LIMITED, TIMEOUT, client_code
from schema.queryids import QueryIds

log = logging.getLogger("gateway.errors")

MAX_STALENESS_HEADER = "x-max-staleness-ms"
CONSISTENCY_HEADER = "x-consistency-token"
GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"
PERSISTED_QUERY_NOT_FOUND = "PERSISTED_QUERY_NOT_FOUND"
#: Every response body starts so; what follows it up to the extensions is the (cacheable) data.
BODY_OPEN = b'{"data":'
#: The shortest ending of a cache hit's body: a prefix shorter than the threshold by more than this is never
#: gzipped, so it is not deflated for the cache.
_HIT_SUFFIX_MIN = len(b',"extensions":{"statements":0,"cache":"hit"}}')


class HeaderError(ValueError):
    """A request header the gateway reads is malformed; answered as BAD_USER_INPUT."""


def request_routing(headers: Headers, *, default_staleness_ms: int, tokens: TokenCodec) -> RequestRouting:
    """Read X-Max-Staleness-Ms and X-Consistency-Token; a malformed value is an error, never ignored."""
    staleness = default_staleness_ms
    raw = headers.get(MAX_STALENESS_HEADER)
    if raw is not None:
        value = raw.strip()
        if not value.isascii() or not value.isdigit() or len(value) > 9:
            raise HeaderError("X-Max-Staleness-Ms must be a whole number of milliseconds")
        staleness = int(value)
    min_lsn = None
    token = headers.get(CONSISTENCY_HEADER)
    if token is not None and token.strip():
        try:
            min_lsn = tokens.decode(token.strip())
        except ValueError:
            raise HeaderError("X-Consistency-Token is not a token this gateway issued") from None
    return RequestRouting(max_staleness_ms=staleness, min_lsn=min_lsn)


def shape_error(error: GraphQLError) -> dict[str, Any]:
    """The client's view of one error: the message and code, or a masked internal error."""
    code = client_code(error)
    if code is None:
        shaped: dict[str, Any] = {"message": "internal error", "extensions": {"code": INTERNAL}}
    else:
        shaped = dict(error.formatted)
        extensions = dict(shaped.get("extensions") or {})
        extensions["code"] = code or BAD_USER_INPUT
        shaped["extensions"] = extensions
    if error.path:
        shaped["path"] = list(error.path)
    return shaped


def _persisted_hash(extensions: dict[str, Any]) -> str | None:
    pq = extensions.get("persistedQuery")
    if not isinstance(pq, dict) or pq.get("version") != 1:
        return None
    digest = pq.get("sha256Hash")
    if isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest.lower()):
        return digest.lower()
    return None


def _media_type(headers: Headers) -> str | None:
    """The response media type the client accepts (None: neither JSON type, a 406)."""
    accept = headers.get("accept")
    if not accept:
        return JSON
    types = [part.split(";", 1)[0].strip().lower() for part in accept.split(",")]
    for media in types:
        if media == GRAPHQL_RESPONSE:
            return GRAPHQL_RESPONSE
        if media in (JSON, "*/*", "application/*"):
            return JSON
    return None


class Reply:
    """A response about to be sent: status, media type, body bytes and extra headers."""

    __slots__ = ("body", "headers", "media", "status")

    def __init__(
        self, body: bytes, *, status: int = 200, media: str = JSON, headers: dict[str, str] | None = None
    ):
        self.body = body
        self.status = status
        self.media = media
        self.headers = headers or {}

    async def send(self, send: Send) -> None:
        raw = [
            (b"content-type", f"{self.media}; charset=utf-8".encode()),
            (b"content-length", str(len(self.body)).encode()),
        ]
        raw.extend((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.headers.items())
        await send({"type": "http.response.start", "status": self.status, "headers": raw})
        await send({"type": "http.response.body", "body": self.body})


def error_reply(
    message: str,
    code: str,
    status: int,
    *,
    trace_id: str | None,
    media: str = JSON,
    headers: dict[str, str] | None = None,
) -> Reply:
    """A GraphQL-shaped error for failures before execution, with the trace id."""
    payload: dict[str, Any] = {"errors": [{"message": message, "extensions": {"code": code}}]}
    if trace_id:
        payload["extensions"] = {"traceId": trace_id}
    return Reply(orjson.dumps(payload), status=status, media=media, headers=headers)


class GraphQLEndpoint:
    """The ASGI endpoint of ``/graphql`` (GET and POST; GraphiQL for a browser's GET)."""

    def __init__(
        self,
        schema: GraphQLSchema,
        *,
        settings: Settings,
        router: Callable[[], Router | None],
        documents: DocumentCache,
        cache: ResultCache,
        responses: ResponseCache,
        admission: Admission,
        gate: DatabaseGate,
        limiter: RateLimiter,
        tracer: trace.Tracer,
        queryids: QueryIds,
        metrics: Metrics,
        search_log: SearchLog,
        persisted: PersistedQueries,
    ) -> None:
        self._schema = schema
        self._settings = settings
        self._router = router
        self._documents = documents
        self._cache = cache
        self._responses = responses
        self._admission = admission
        self._gate = gate
        self._limiter = limiter
        self._tracer = tracer
        self._db_attributes = connection_attributes(settings.node_dsns)
        self._queryids = queryids
        self._metrics = metrics
        self._search_log = search_log
        self._persisted = persisted
        self._tokens = TokenStore.parse(settings.write_tokens)
        self._codec = CursorCodec(settings.cursor_key)
        self._token_codec = TokenCodec(settings.token_key)
        self._max_body = settings.max_body_bytes
        self._compress_min = settings.compress_min_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        trace_id: str | None = scope.get("gateway.trace_id")
        headers = Headers(scope=scope)
        method = scope["method"]
        if method == "GET" and not scope.get("query_string") and "text/html" in headers.get("accept", ""):
            await Reply(graphiql_html().encode(), media="text/html", headers=PAGE_HEADERS).send(send)
            return
        media = _media_type(headers)
        if media is None:
            await error_reply(
                "this endpoint answers application/json or application/graphql-response+json",
                BAD_USER_INPUT,
                406,
                trace_id=trace_id,
            ).send(send)
            return
        if method not in ("GET", "POST"):
            await error_reply(
                f"{method} is not supported: use GET or POST",
                BAD_USER_INPUT,
                405,
                trace_id=trace_id,
                headers={"Allow": "GET, POST"},
                media=media,
            ).send(send)
            return
        viewer = self._tokens.viewer(headers.get("authorization"))
        ticket = self._admission.enter(priority=viewer.can_write)
        if ticket is None:
            await error_reply(
                "the gateway is at capacity; retry shortly",
                OVERLOADED,
                503,
                trace_id=trace_id,
                media=media,
                headers={"Retry-After": str(self._admission.retry_after_s)},
            ).send(send)
            return
        try:
            async with asyncio.timeout(self._settings.request_timeout_s):
                reply = await self._handle(scope, receive, headers, viewer, method, media, trace_id, started)
        except TimeoutError:
            reply = error_reply(
                f"the request took longer than {self._settings.request_timeout_s:g} s; narrow it and retry",
                TIMEOUT,
                504,
                trace_id=trace_id,
                media=media,
            )
            self._refused(TIMEOUT, started, trace_id)
        except RequestError as exc:
            reply = error_reply(exc.message, exc.code, exc.status, trace_id=trace_id, media=media)
            self._refused(exc.code, started, trace_id)
        finally:
            self._admission.leave(ticket)
        await reply.send(send)

    def is_writer(self, authorization: str | None) -> bool:
        """Whether ``authorization`` (a header value) holds a valid token with write rights."""
        return authorization is not None and self._tokens.viewer(authorization).can_write

    def _refused(self, code: str, started: float, trace_id: str | None, *, operation: str = "") -> None:
        """Count a request answered with an error before (or instead of) execution."""
        self._metrics.observe(
            operation=operation, outcome="error", seconds=time.perf_counter() - started, statements=0,
            codes=[code], trace_id=trace_id or "",
        )

    async def _read_body(self, receive: Receive, headers: Headers) -> bytes:
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self._max_body):
            raise RequestError(f"request body larger than {self._max_body} bytes", status=413)
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise RequestError("the client went away", status=400)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body:
                raise RequestError(f"request body larger than {self._max_body} bytes", status=413)
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)

    async def _handle(
        self,
        scope: Scope,
        receive: Receive,
        headers: Headers,
        viewer: Viewer,
        method: str,
        media: str,
        trace_id: str | None,
        started: float,
    ) -> Reply:
        if method == "POST":
            req = from_post(headers.get("content-type", ""), await self._read_body(receive, headers))
        else:
            req = from_get(scope.get("query_string", b""))
        try:
            routing = request_routing(
                headers, default_staleness_ms=self._settings.max_staleness_ms, tokens=self._token_codec
            )
        except HeaderError as exc:
            raise RequestError(str(exc)) from None
        # The same decision the compression middleware makes for every other response (gateway.compression).
        gzip_ok = self._compress_min > 0 and accepts_gzip(headers.get("accept-encoding"))

        prepared, register = await self._prepared(req)
        if prepared is None:  # an APQ hash the gateway does not know: the client resends the text
            return error_reply(
                "PersistedQueryNotFound", PERSISTED_QUERY_NOT_FOUND, 200, trace_id=trace_id, media=media
            )
        if not prepared.ok:
            status = 400 if media == GRAPHQL_RESPONSE else 200
            self._refused(BAD_USER_INPUT, started, trace_id)
            refusal = {
                "errors": [shape_error(e) for e in prepared.errors],
                "extensions": {"traceId": trace_id},
            }
            return Reply(orjson.dumps(refusal), status=status, media=media)
        op_type = prepared.operation_type(req.operation_name)
        if op_type is None:
            raise RequestError(
                f"unknown operation {req.operation_name[:100]!r}"
                if req.operation_name
                else "the document has several operations: name one with operationName"
            )
        if method == "GET" and op_type is not OperationType.QUERY:
            return error_reply(
                "only queries may be sent with GET; use POST",
                BAD_USER_INPUT,
                405,
                trace_id=trace_id,
                media=media,
                headers={"Allow": "POST"},
            )
        client = scope.get("client")
        client_key = self._limiter.client_key(
            token_hash=viewer.token_digest,
            peer=client[0] if client else None,
            forwarded_for=headers.get("x-forwarded-for"),
        )
        decision = self._limiter.check(client_key, "write" if op_type is OperationType.MUTATION else "read")
        limit_headers = decision.headers()
        if not decision.allowed:
            self._refused(RATE_LIMITED, started, trace_id, operation=req.operation_name or "")
            return error_reply(
                f"too many {decision.kind}s from this client: at most {decision.limit} a minute; retry in "
                f"{decision.reset_s} s",
                RATE_LIMITED,
                429,
                trace_id=trace_id,
                media=media,
                headers=limit_headers,
            )
        router = self._router()
        if register is not None and router is not None and req.query:
            # Only a valid document from a client within its rate limit is kept, and never on the request path.
            self._persisted.register_later(router, register, req.query, client_key)

        shareable = (
            op_type is OperationType.QUERY
            and self._responses.enabled
            and prepared.reads_data(req.operation_name)
        )
        # GET and persisted-query responses can be kept by HTTP caches: they say for how long.
        http_cacheable = op_type is OperationType.QUERY and (
            method == "GET" or _persisted_hash(req.extensions) is not None
        )
        key = ""
        generation: int | None = None
        if shareable:
            key = self._responses.key(
                prepared.key, req.operation_name, req.variables, routing.max_staleness_ms
            )
            generation, stored = await self._responses.lookup(
                key, min_lsn=routing.min_lsn, max_staleness_ms=routing.max_staleness_ms
            )
            if stored is not None:
                reply = self._hit(stored, trace_id, media, started, gzip_ok=gzip_ok)
                reply.headers.update(limit_headers)
                if http_cacheable:
                    reply.headers["Cache-Control"] = self._cache_control(True, routing)
                return reply

        # Queries that reach this point go to the databases; their number is bounded by what the servers were
        # seen to carry (gateway.concurrency). Writes are not: they are few, and refusing one for a crowd of
        # readers would lose the one request that cannot simply be retried elsewhere.
        gate_ticket = self._gate.enter() if op_type is OperationType.QUERY else None
        if gate_ticket is None and op_type is OperationType.QUERY:
            self._metrics.overloaded("databases", "endpoint")
            self._refused(OVERLOADED, started, trace_id, operation=req.operation_name or "")
            return error_reply(
                "the databases are at capacity; retry shortly",
                OVERLOADED,
                503,
                trace_id=trace_id,
                media=media,
                headers={**limit_headers, "Retry-After": str(self._admission.retry_after_s)},
            )
        ctx = self._context(req, routing, viewer)
        if shareable:
            # One layer of caching at a time: this response is about to be cached whole, so caching the rows
            # it is made of as well would only add round trips to Redis.
            ctx.cache = None
        try:
            result = await self._execute(prepared, req, ctx)
        finally:
            self._gate.leave(gate_ticket)
        errors = [shape_error(e) for e in result.errors or ()]
        for error, shaped in zip(result.errors or (), errors, strict=True):
            if shaped["extensions"]["code"] == INTERNAL:
                log.error("unexpected error in %s", error.path, exc_info=error.original_error)
        data_bytes = orjson.dumps(result.data)
        extensions = self._extensions(ctx, trace_id)
        if self._settings.routing_metadata:
            extensions["estimatedStatements"] = prepared.estimated_statements(req.operation_name)
        prefix = BODY_OPEN + data_bytes
        suffix = b',"errors":' + orjson.dumps(errors) if errors else b""
        suffix += b',"extensions":' + orjson.dumps(extensions) + b"}"
        codes = [str(e["extensions"]["code"]) for e in errors]
        self._metrics.observe(
            operation=ctx.operation_name or "",
            outcome="error" if codes else "ok",
            seconds=time.perf_counter() - started,
            statements=ctx.statements,
            codes=codes,
            trace_id=trace_id or "",
        )
        deflated: DeflatedPrefix | None = None
        if shareable and not errors and ctx.shareable and generation is not None:
            # Deflated once here, for every later gzipped hit (and this reply); the middleware then skips it.
            deflated = self._deflated(prefix)
            await self._responses.store(key, ctx, generation, data_bytes, deflated)
        if http_cacheable:
            limit_headers = {
                **limit_headers,
                "Cache-Control": self._cache_control(shareable and not errors and ctx.shareable, routing),
            }
        status = 200
        if result.data is None and errors and media == GRAPHQL_RESPONSE:
            status = 400 if all(e["extensions"]["code"] == BAD_USER_INPUT for e in errors) else 200
        if errors and all(e["extensions"]["code"] == OVERLOADED for e in errors):
            # Nothing could be served for lack of capacity: say so the way load balancers understand.
            status = 503
            limit_headers = {**limit_headers, "Retry-After": str(self._admission.retry_after_s)}
        return self._body(prefix, suffix, deflated, gzip_ok=gzip_ok, status=status, media=media, headers=limit_headers)

    def _deflated(self, prefix: bytes) -> DeflatedPrefix | None:
        """The prefix deflated for the cache, unless no hit's body could reach the compression threshold."""
        if not self._compress_min or len(prefix) + _HIT_SUFFIX_MIN < self._compress_min:
            return None
        return deflate_prefix(prefix)

    def _body(
        self,
        prefix: bytes,
        suffix: bytes,
        deflated: DeflatedPrefix | None,
        *,
        gzip_ok: bool,
        status: int = 200,
        media: str,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """The reply of ``prefix + suffix``: gzipped from the deflated prefix when the client accepts gzip and the
        body reaches the threshold (as the middleware would have), else plain, for the middleware to handle."""
        if (
            gzip_ok
            and deflated is not None
            and deflated.size == len(prefix)  # an entry of another body layout is not spliced onto this one
            and deflated.size + len(suffix) >= self._compress_min
        ):
            gzipped = gzip_body(deflated, suffix)
            return Reply(gzipped, status=status, media=media, headers={**(headers or {}), **GZIP_HEADERS})
        return Reply(prefix + suffix, status=status, media=media, headers=headers)

    def _cache_control(self, shared: bool, routing: RequestRouting) -> str:
        """What HTTP caches may do with a GET or persisted-query response: keep it as long as the gateway's
        own cache would, and no longer than the staleness the request accepted; nothing read for a token."""
        if not shared or routing.min_lsn is not None:
            return "no-store"
        staleness_s = (routing.max_staleness_ms or 0) // 1000
        return f"public, max-age={max(0, min(int(self._settings.cache_ttl_s), staleness_s))}"

    def _hit(
        self, stored: StoredResponse, trace_id: str | None, media: str, started: float, *, gzip_ok: bool
    ) -> Reply:
        for text in stored.searches:
            self._search_log.record(text)
        extensions: dict[str, Any] = {"statements": 0, "cache": "hit"}
        if trace_id:
            extensions["traceId"] = trace_id
        self._metrics.observe(
            operation=stored.operation,
            outcome="ok",
            seconds=time.perf_counter() - started,
            statements=0,
            codes=[],
            trace_id=trace_id or "",
        )
        suffix = b',"extensions":' + orjson.dumps(extensions) + b"}"
        prefix = BODY_OPEN + stored.data
        deflated = stored.deflated
        if gzip_ok and deflated is None and stored.identity is not None:
            # The first gzipped hit in this process of an entry another process stored: deflated once, kept.
            deflated = self._deflated(prefix)
            if deflated is not None:
                self._responses.remember(stored.identity, deflated)
        return self._body(prefix, suffix, deflated, gzip_ok=gzip_ok, media=media)

    async def _prepared(self, req: GraphQLRequest) -> tuple[PreparedDocument | None, str | None]:
        """The prepared document of a request (None for an unknown persisted-query hash), and the APQ hash to
        register once the request is admitted (None when there is nothing to register)."""
        digest = _persisted_hash(req.extensions)
        register: str | None = None
        if digest is not None:
            if req.query:
                if len(req.query.encode("utf-8", "surrogatepass")) > self._settings.apq_max_bytes:
                    raise RequestError(
                        f"persisted queries are at most {self._settings.apq_max_bytes} bytes; send it without "
                        "persistedQuery"
                    )
                if req.document_key() != digest:
                    raise RequestError("provided sha does not match query")
                if self._documents.get(digest) is None:
                    register = digest
            else:
                found = self._documents.get(digest)
                if found is not None:
                    return found, None
                router = self._router()
                stored = await self._persisted.lookup(router, digest) if router is not None else None
                if stored is None:
                    return None, None
                req.query = stored
        if not req.query:
            raise RequestError("the request has no 'query': send a GraphQL document")
        key = digest or req.document_key()
        found = self._documents.get(key)
        if found is not None:
            return found, register
        with self._tracer.start_as_current_span("GraphQL Parsing"):
            parsed = self._documents.parse(req.query)
        with self._tracer.start_as_current_span("GraphQL Validation"):
            return self._documents.validate(key, parsed), register

    def _context(self, req: GraphQLRequest, routing: RequestRouting, viewer: Viewer) -> Context:
        ctx = Context(router=self._router(), routing=routing, codec=self._codec)
        ctx.viewer = viewer
        ctx.tokens = self._token_codec
        ctx.cache = self._cache
        ctx.after_write = self._after_write
        ctx.tracer = self._tracer
        ctx.db_attributes = self._db_attributes
        ctx.queryids = self._queryids
        ctx.sql_comments = self._settings.sql_comments
        ctx.operation_name = req.operation_name
        record = self._search_log.record

        def on_search(text: str) -> None:
            ctx.searches.append(text)
            record(text)

        ctx.on_search = on_search
        return ctx

    async def _after_write(self) -> None:
        await self._cache.bump()

    async def _execute(
        self, prepared: PreparedDocument, req: GraphQLRequest, ctx: Context
    ) -> ExecutionResult:
        op_type = prepared.operation_type(req.operation_name)
        kind = "Mutation" if op_type is OperationType.MUTATION else "Query"
        name = req.operation_name or _only_name(prepared)
        ctx.operation_name = name
        span_name = f"GraphQL {kind}: {name}" if name else f"GraphQL {kind}"
        with self._tracer.start_as_current_span(span_name) as span:
            span.set_attribute("graphql.operation.type", kind.lower())
            if name:
                span.set_attribute("graphql.operation.name", name[:100])
            span.set_attribute("graphql.document.sha256", prepared.key)
            with self._tracer.start_as_current_span("GraphQL Execution"):
                assert prepared.document is not None
                outcome = execute(
                    self._schema,
                    prepared.document,
                    context_value=ctx,
                    variable_values=req.variables,
                    operation_name=req.operation_name,
                )
                if asyncio.iscoroutine(outcome) or isinstance(outcome, asyncio.Future):
                    outcome = await outcome
        assert isinstance(outcome, ExecutionResult)
        return outcome

    def _extensions(self, ctx: Context, trace_id: str | None) -> dict[str, Any]:
        extensions: dict[str, Any] = {}
        if self._settings.routing_metadata and ctx.routing.decisions:
            extensions["routing"] = [
                {
                    "node": d.node,
                    "role": d.role,
                    "lagMs": d.lag_ms,
                    "waitedMs": d.waited_ms,
                    "retried": d.retried,
                }
                for d in ctx.routing.decisions
            ]
        extensions["statements"] = ctx.statements
        if ctx.consistency_token:
            extensions["consistencyToken"] = ctx.consistency_token
        if trace_id:
            extensions["traceId"] = trace_id
        return extensions


def _only_name(prepared: PreparedDocument) -> str | None:
    if len(prepared.operations) == 1:
        return next(iter(prepared.operations))
    return None


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
