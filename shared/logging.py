"""Structured logs: JSON lines with request and task ids, secrets redacted everywhere."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import IO, Any

import structlog

REDACTED = "***"

_SECRET_KEYS = frozenset(
    {"apikey", "api_key", "x-api-key", "password", "token", "secret", "authorization", "cookie"}
)
_SECRET_PATTERNS = (
    # ?apiKey=... and &api_key=... in URLs and access lines.
    (re.compile(r"(?i)(\bapi[_-]?key=)[^&\s\"'#]+"), r"\1***"),
    # Credentials inside URLs: scheme://user:password@host.
    (re.compile(r"(://[^:/@\s]+:)[^@\s]+@"), r"\1***@"),
    # Header-like mentions: "X-API-Key: value", "Authorization: Bearer value".
    (
        re.compile(r"(?i)(\b(?:x-api-key|authorization)\s*[:=]\s*(?:bearer\s+)?)[^\s,;\"']+"),
        r"\1***",
    ),
    # Webhook secrets.
    (re.compile(r"(whsec_)[A-Za-z0-9+/=]+"), r"\1***"),
)


def redact_text(text: str) -> str:
    """Replace every secret that can appear inside a string (URLs, headers)."""
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _redact_value(key: str, value: Any) -> Any:
    if key.lower() in _SECRET_KEYS:
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: _redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value("", v) for v in value]
    return value


def _redact_event(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in event_dict.items():
        event_dict[key] = _redact_value(key, value)
    return event_dict


def configure_logging(
    level: str = "info", fmt: str = "json", stream: IO[str] | None = None
) -> None:
    """Route structlog and the standard library (aiohttp, aio-pika) through one redacting output."""
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        _redact_event,
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            # A call below the level stops here, before it is stamped and redacted.
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's own access log would print raw query strings; ours is redacted.
    logging.getLogger("aiohttp.access").disabled = True


def get_logger(name: str) -> Any:
    """Return a structlog logger bound to a module name."""
    return structlog.get_logger(name)
