"""Structured logs: one line per event, with timestamp, level, logger, trace id and request id.

``GATEWAY_LOG_FORMAT=json`` writes each event as one JSON object (python-json-logger over orjson); ``text``
(the default) writes the same fields as one readable line. The trace id and request id of the HTTP request
being served come from context variables that :class:`gateway.telemetry.RequestContextMiddleware` sets, so
every line logged while a request runs (the access line, the slow-request line, a resolver's error) can be
joined to its trace and to the ``x-request-id`` the client got back. Lines logged outside a request carry
neither.

The access log is the logger ``gateway.access`` on stdout; everything else goes to stderr. Nothing here logs
headers or query strings: the ``Authorization`` header and tokens never reach a log line.
"""

from __future__ import annotations

import contextvars
import logging
import re
import secrets
import time
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.orjson import OrjsonFormatter

#: (trace id, request id) of the request this task serves, set by the request middleware.
REQUEST_IDS: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar(
    "gateway_request_ids", default=None
)
ACCESS_LOGGER = "gateway.access"
# A client's X-Request-Id is echoed and logged only when it is this tame; any other value is replaced.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def request_id(given: str) -> str:
    """The request id of a request: the client's ``X-Request-Id`` when it is tame, else a new random one."""
    return given if _REQUEST_ID.match(given) else secrets.token_hex(8)

#: The attributes every LogRecord has; anything else on a record came from ``extra=`` and is logged as a field.
_RECORD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "trace_id", "request_id"}


class RequestIdsFilter(logging.Filter):
    """Puts ``trace_id`` and ``request_id`` on every record (empty strings outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        ids = REQUEST_IDS.get()
        record.trace_id, record.request_id = ids if ids is not None else ("", "")
        return True


def _timestamp(record: logging.LogRecord) -> str:
    """RFC 3339 in UTC with milliseconds: sorts as text and needs no time zone to read."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


class JsonFormatter(OrjsonFormatter):
    """``{"timestamp", "level", "logger", "message", "trace_id", "request_id", ...extra fields}`` per line."""

    def __init__(self) -> None:
        super().__init__(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger"},
            # Added below only when set, so lines outside a request carry no empty ids.
            reserved_attrs=[*RESERVED_ATTRS, "trace_id", "request_id"],
        )

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        log_data["timestamp"] = _timestamp(record)
        super().add_fields(log_data, record, message_dict)
        for key in ("trace_id", "request_id"):
            value = getattr(record, key, "")
            if value:
                log_data[key] = value


class TextFormatter(logging.Formatter):
    """``<timestamp> <LEVEL> <logger> trace_id=… request_id=… <message> key=value…`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [_timestamp(record), record.levelname, record.name]
        trace_id = getattr(record, "trace_id", "")
        if trace_id:
            parts.append(f"trace_id={trace_id} request_id={getattr(record, 'request_id', '')}")
        parts.append(record.getMessage())
        parts.extend(f"{k}={v}" for k, v in record.__dict__.items() if k not in _RECORD_ATTRIBUTES)
        line = " ".join(parts)
        if record.exc_info:
            # One event, one line: the traceback's newlines are escaped, not printed.
            line += " exc_info=" + self.formatException(record.exc_info).replace("\n", "\\n")
        return line


def log_config(*, fmt: str, level: str, access_log: bool) -> dict[str, Any]:
    """The ``logging.config.dictConfig`` for the server, uvicorn's loggers included (uvicorn applies it in
    every worker process)."""
    formatter = "gateway.logs.JsonFormatter" if fmt == "json" else "gateway.logs.TextFormatter"
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_ids": {"()": "gateway.logs.RequestIdsFilter"}},
        "formatters": {"line": {"()": formatter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "filters": ["request_ids"],
                "formatter": "line",
            },
            "access": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
                "filters": ["request_ids"],
                "formatter": "line",
            },
        },
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": level, "propagate": False},
            # uvicorn's own access line has no timestamp or ids: ours (gateway.access) replaces it.
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
            ACCESS_LOGGER: {
                "handlers": ["access"] if access_log else [],
                "level": "INFO" if access_log else "WARNING",
                "propagate": False,
            },
        },
        "root": {"handlers": ["stderr"], "level": level},
    }
