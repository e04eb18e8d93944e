"""structlog set-up and the redaction every log line passes through (docs/reliability.md S3)."""

from __future__ import annotations

import base64
import binascii
import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog

MASK = "********"

# Query parameters and headers that carry credentials in the pools' own documents:
# CrateQ `?key=` and `?token=`/`auth=` (docs/pools/crateq.md), `Authorization: Bearer …`
# (docs/pools/promoonly.md).
_QUERY = re.compile(
    r"(?i)([?&;](?:key|token|auth|api_key|apikey|access_token|password|secret|dl_token|"
    r"membertoken|servicetoken)=)[^&#\s\"']+"
)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
_KV = re.compile(
    r"(?i)(\"?(?:password|token|auth|api_key|secret|client_secret|access_key|dl_token|"
    r"authorization)\"?\s*[:=]\s*\"?)([^\s\"',}&]{4,})"
)
# Long hex runs are what the pools' tokens look like (docs/pools/promoonly.md §2 `dl_token`,
# docs/pools/crateq.md `auth`).
_HEX = re.compile(r"\b[0-9a-fA-F]{32,}\b")


class Redactor:
    """Masks configured secrets, their base64 forms, and anything that looks like a token."""

    def __init__(self) -> None:
        self._secrets: list[str] = []

    def add(self, secrets: Iterable[str]) -> None:
        """Register secret values; their base64 forms are caught too (`userid:token`)."""
        found = set(self._secrets)
        for secret in secrets:
            if len(secret) < 4:
                continue
            found.add(secret)
            found.add(base64.b64encode(secret.encode()).decode().rstrip("="))
        self._secrets = sorted(found, key=len, reverse=True)

    def text(self, value: str) -> str:
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, MASK)
        value = _QUERY.sub(lambda m: m.group(1) + MASK, value)
        value = _BEARER.sub(lambda m: m.group(1) + " " + MASK, value)
        value = _JWT.sub(MASK, value)
        value = _KV.sub(lambda m: m.group(1) + MASK, value)
        value = _HEX.sub(MASK, value)
        return _b64_credentials(value)

    def __call__(
        self, logger: Any, method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key, value in list(event.items()):
            event[key] = self._value(value)
        return event

    def _value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self._value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._value(v) for v in value]
        if isinstance(value, BaseException):
            return self.text(f"{type(value).__name__}: {value}")
        return value


_B64 = re.compile(r"\b[A-Za-z0-9+/]{16,}={0,2}")


def _b64_credentials(value: str) -> str:
    """Mask base64 runs that decode to `something:something` (Promo Only's Bearer payload)."""

    def check(match: re.Match[str]) -> str:
        blob = match.group(0)
        try:
            decoded = base64.b64decode(blob + "=" * (-len(blob) % 4), validate=True)
        except (binascii.Error, ValueError):
            return blob
        return MASK if b":" in decoded and decoded.isascii() else blob

    return _B64.sub(check, value)


#: The process-wide redactor; the daemon registers its configured secrets at start.
REDACTOR = Redactor()


def redact_text(value: str) -> str:
    """Redact a string the same way log lines are (for error messages shown to users)."""
    return REDACTOR.text(value)


def _escape_controls(
    logger: Any, method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    # Titles from servers may hold newlines or escapes: never let them forge log lines (N2).
    for key, value in list(event.items()):
        if isinstance(value, str) and any(ord(c) < 32 and c != "\t" for c in value):
            event[key] = value.encode("unicode_escape").decode("ascii")
    return event


def configure_logging(
    log_format: str = "auto", *, stream: TextIO | None = None, level: int = logging.INFO
) -> None:
    """JSON lines when not on a TTY (and so under systemd), console output on a TTY."""
    stream = stream or sys.stderr
    if log_format == "auto":
        log_format = "console" if stream.isatty() else "json"
    renderer: Any
    if log_format == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            REDACTOR,
            _escape_controls,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
