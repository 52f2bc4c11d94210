"""
Logs: one JSON object per line (or plain text at a terminal), a request id on every line written
while a request is handled, and no personal data.

What keeps phone numbers and tokens out, in depth:
- SQLAlchemy never logs bound parameters (`hide_parameters` in store.engine), where rosters,
  contacts and keyed hashes would pass;
- uvicorn's access log is off: it prints raw paths, and `/b/<token>` and `/t/<ticket>` are
  secrets. RequestLog logs each request instead, path redacted, query string dropped;
- a filter on the handler scrubs what still looks like a mobile number, a ballot or ticket path,
  an API key or a bearer token from every message, whoever logged it (httpx, a traceback…).
"""

from __future__ import annotations

import json
import logging
import logging.config
import re
import secrets
import sys
import time
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID: ContextVar[str | None] = ContextVar("collect_request_id", default=None)
_INCOMING_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_FIELDS = ("method", "path", "status", "duration_ms", "client")

# Secret paths, API keys, bearer tokens, mobile numbers (mainland, with or without +86), e-mail.
_SCRUB = (
    (re.compile(r"/(b|t)/[^\s\"'?#<>]+"), r"/\1/[redacted]"),
    (re.compile(r"\bck_[A-Za-z0-9_-]{8,}"), "ck_[redacted]"),
    (re.compile(r"(?i)(bearer\s+)[^\s\"']+"), r"\1[redacted]"),
    (re.compile(r"(?<!\d)(?:\+?86[\s-]?)?1[3-9]\d[\s-]?\d{4}[\s-]?\d{4}(?!\d)"), "[phone]"),
    (re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+"), "[email]"),
)


def scrub(text: str) -> str:
    for pattern, replacement in _SCRUB:
        text = pattern.sub(replacement, text)
    return text


def redact_path(path: str) -> str:
    """A request path as logs may show it: no query string, no token."""
    return scrub(path.split("?", 1)[0])


class ScrubFilter(logging.Filter):
    """Renders each record's message now and scrubs it; also stamps the request id."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = scrub(record.getMessage())
        record.msg, record.args = message, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        record.request_id = getattr(record, "request_id", None) or REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        for name in _FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_text:
            entry["error"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")


def logging_config(level: str = "INFO", fmt: str = "json", stream: TextIO | None = None) -> dict[str, Any]:
    """A dictConfig for the app (also given to uvicorn as its log_config)."""
    handler: dict[str, Any] = {
        "class": "logging.StreamHandler",
        "formatter": fmt,
        "filters": ["scrub"],
    }
    if stream is not None:
        handler["stream"] = stream
    else:
        handler["stream"] = "ext://sys.stderr"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"scrub": {"()": ScrubFilter}},
        "formatters": {"json": {"()": JsonFormatter}, "text": {"()": TextFormatter}},
        "handlers": {"main": handler},
        "root": {"level": level.upper(), "handlers": ["main"]},
        "loggers": {
            "uvicorn": {"level": level.upper(), "handlers": [], "propagate": True},
            "uvicorn.error": {"level": level.upper(), "handlers": [], "propagate": True},
            # Raw paths with tokens: replaced by RequestLog's line.
            "uvicorn.access": {"level": "CRITICAL", "handlers": [], "propagate": False},
        },
    }


def configure(level: str = "INFO", fmt: str = "json", stream: TextIO | None = None) -> None:
    logging.config.dictConfig(logging_config(level, fmt, stream))


def default_format() -> str:
    return "text" if sys.stderr.isatty() else "json"


log = logging.getLogger("collect.request")


class RequestLog:
    """
    ASGI middleware: a request id (the proxy's X-Request-ID when it is sane, else a new one) on
    every log line of the request and on the response; one line per request, path redacted.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _INCOMING_ID.match(incoming) else secrets.token_hex(8)
        token = REQUEST_ID.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                MutableHeaders(scope=message)["x-request-id"] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            log.info(
                "%s %s %s",
                scope["method"],
                redact_path(scope["path"]),
                status,
                extra={
                    "method": scope["method"],
                    "path": redact_path(scope["path"]),
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                },
            )
            REQUEST_ID.reset(token)
