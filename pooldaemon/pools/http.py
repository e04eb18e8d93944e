"""The HTTP plumbing every adapter shares: timeouts, retries, token renewal, decoding, errors.

Adapters describe a call; this module decides whether to retry it and translates whatever went
wrong into the error vocabulary of `pooldaemon.errors`.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp

from pooldaemon import jsonstrict
from pooldaemon.errors import (
    AuthError,
    IncompleteAnswer,
    NotFound,
    PoolDaemonError,
    ProtocolError,
    RateLimited,
    TokenExpired,
    TransientError,
)
from pooldaemon.log import redact_text
from pooldaemon.retry import backoff_s, parse_retry_after

Decode = Literal["json", "xml", "text", "bytes", "none"]

#: Largest API answer we read (docs/reliability.md M3: cap the response size).
MAX_BODY_BYTES = 50 * 1024 * 1024


class TokenKeeper:
    """Holds one account token and renews it at most once at a time (docs/reliability.md T3).

    `renew(stale)` is a no-op when the token already changed since `stale` was read, so eight
    chunk workers and two pollers that all see a 401 cause exactly one sign-in.
    """

    def __init__(self, fetch: Callable[[], Awaitable[tuple[str, float | None]]]) -> None:
        self._fetch = fetch
        self._lock = asyncio.Lock()
        self.value: str | None = None
        self.expires_at: float | None = None
        self.generation = 0

    async def get(self, *, now: float, margin_s: float = 60.0) -> str:
        """The current token, renewed first when missing or about to expire."""
        if self.value is None or (
            self.expires_at is not None and now >= self.expires_at - margin_s
        ):
            await self.renew(self.generation)
        assert self.value is not None
        return self.value

    async def renew(self, seen_generation: int) -> None:
        async with self._lock:
            if self.generation != seen_generation and self.value is not None:
                return  # someone renewed while we waited
            self.value, self.expires_at = await self._fetch()
            self.generation += 1

    def set(self, value: str, expires_at: float | None) -> None:
        self.value, self.expires_at = value, expires_at
        self.generation += 1


@dataclass(frozen=True, slots=True)
class Auth:
    """How a call authenticates: headers from the current token, and how to renew it."""

    keeper: TokenKeeper
    headers: Callable[[str], Mapping[str, str]]
    #: Statuses that mean "the token was refused" for this pool.
    refused: frozenset[int] = frozenset({401})
    #: Unix-time source for expiry checks.
    clock: Callable[[], float] = time.time


@dataclass(frozen=True, slots=True)
class Answer:
    """A decoded answer."""

    status: int
    headers: Mapping[str, str]
    body: Any
    url: str


class PoolHttp:
    """One pool's view of the shared `aiohttp.ClientSession`."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        pool: str,
        *,
        timeout_s: float = 60.0,
        attempts: int = 4,
        backoff_s: float = 1.0,
        max_wait_s: float = 120.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.session = session
        self.pool = pool
        self.timeout = aiohttp.ClientTimeout(total=timeout_s, sock_read=timeout_s)
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.max_wait_s = max_wait_s
        self._sleep = sleep
        #: Host → unix time before which no call goes there (shared Retry-After, docs/reliability.md
        #: H7).
        self.not_before: dict[str, float] = {}

    async def call(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        auth: Auth | None = None,
        idempotent: bool | None = None,
        decode: Decode = "json",
        endpoint: str | None = None,
        ok: frozenset[int] = frozenset({200, 201, 202, 204}),
    ) -> Answer:
        """Make one logical call: retried when safe, renewed once on a refused token."""
        safe = method.upper() in {"GET", "HEAD"} if idempotent is None else idempotent
        name = endpoint or urlsplit(url).path
        renewed = False
        attempt = 0
        while True:
            attempt += 1
            await self._wait_for_host(url)
            all_headers = dict(headers or {})
            generation = auth.keeper.generation if auth else 0
            if auth is not None:
                token = await auth.keeper.get(now=auth.clock())
                generation = auth.keeper.generation
                all_headers.update(auth.headers(token))
            try:
                answer = await self._once(
                    method, url, params, json_body, data, all_headers, decode, name, safe
                )
            except TransientError as err:
                if not safe or attempt >= self.attempts:
                    raise
                await self._sleep(self._delay(attempt, err.retry_after_s))
                continue
            if auth is not None and answer.status in auth.refused:
                if renewed:
                    raise AuthError(
                        f"{self.pool}: {name} refused our credentials after renewing them "
                        f"(HTTP {answer.status}{_message(answer.body)})"
                    )
                renewed = True
                await auth.keeper.renew(generation)
                continue
            if answer.status in ok:
                return answer
            error = self._error_for(answer, name)
            if isinstance(error, TransientError) and safe and attempt < self.attempts:
                await self._sleep(self._delay(attempt, error.retry_after_s))
                continue
            raise error

    async def _once(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None,
        json_body: Any,
        data: Any,
        headers: dict[str, str],
        decode: Decode,
        name: str,
        safe: bool = True,
    ) -> Answer:
        try:
            async with self.session.request(
                method,
                url,
                params=params,
                json=json_body,
                data=data,
                headers=headers,
                timeout=self.timeout,
                max_redirects=5,
                # aiohttp re-sends a GET by itself once after a disconnect; a call with a side
                # effect must not be repeated behind our back (docs/reliability.md §0, C6).
                middlewares=None if safe else (_no_silent_retry,),
            ) as resp:
                raw = await _read_capped(resp, name, self.pool)
                status = resp.status
                resp_headers = dict(resp.headers)
                final_url = str(resp.url)
        except TimeoutError as err:
            raise TransientError(f"{self.pool}: {name} timed out") from err
        except aiohttp.TooManyRedirects as err:
            raise ProtocolError(f"{self.pool}: {name}: too many redirects") from err
        except aiohttp.ClientConnectorCertificateError as err:
            raise PoolDaemonError(f"{self.pool}: {name}: TLS certificate refused: {err}") from err
        except aiohttp.ClientError as err:
            raise TransientError(
                f"{self.pool}: {name}: {type(err).__name__}: {redact_text(str(err))}"
            ) from err
        if status in {429} or status >= 500:
            retry_after = parse_retry_after(resp_headers.get("Retry-After"))
            if retry_after is not None:
                self.not_before[urlsplit(url).netloc] = time.time() + min(
                    retry_after, self.max_wait_s
                )
        body: Any = None
        if 200 <= status < 300 and status != 204:
            body = self._decode(raw, decode, name)
        elif raw:
            body = _best_effort(raw)
        return Answer(status=status, headers=resp_headers, body=body, url=final_url)

    def _decode(self, raw: bytes, decode: Decode, name: str) -> Any:
        if decode == "bytes":
            return raw
        if decode == "none":
            return None
        text = (
            raw.decode("utf-8", errors="strict")
            if decode != "text"
            else raw.decode("utf-8", "replace")
        )
        if decode == "text":
            return text
        if not text.strip():
            raise IncompleteAnswer(f"{self.pool}: {name} answered with an empty body")
        if decode == "xml":
            return parse_xml(text, f"{self.pool}: {name}")
        return loads_strict(text, f"{self.pool}: {name}")

    def _error_for(self, answer: Answer, name: str) -> PoolDaemonError:
        status = answer.status
        message = f"{self.pool}: {name}: HTTP {status}{_message(answer.body)}"
        retry_after = parse_retry_after(answer.headers.get("Retry-After"))
        if status == 429:
            return RateLimited(message, retry_after_s=retry_after)
        if status >= 500 or status == 408:
            return TransientError(message, retry_after_s=retry_after)
        if status in (401, 403):
            return TokenExpired(message)
        if status == 404:
            return NotFound(message)
        return ProtocolError(message)

    def _delay(self, attempt: int, retry_after_s: float | None) -> float:
        if retry_after_s is not None:
            return min(retry_after_s, self.max_wait_s)
        # Exponential back-off with jitter: many clients never retry in step.
        return backoff_s(attempt, self.backoff_s, self.max_wait_s)

    async def _wait_for_host(self, url: str) -> None:
        until = self.not_before.get(urlsplit(url).netloc)
        if until is not None:
            delay = until - time.time()
            if delay > 0:
                await self._sleep(delay)


class _NotResent(aiohttp.ClientConnectionError):
    """A lost connection on a call that must not be re-sent."""


async def _no_silent_retry(
    request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
) -> aiohttp.ClientResponse:
    try:
        return await handler(request)
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as err:
        raise _NotResent(f"{type(err).__name__}: {err}") from err


async def _read_capped(resp: aiohttp.ClientResponse, name: str, pool: str) -> bytes:
    length = resp.content_length
    if length is not None and length > MAX_BODY_BYTES:
        raise ProtocolError(f"{pool}: {name}: answer of {length} bytes is over the limit")
    chunks: list[bytes] = []
    total = 0
    async for chunk in resp.content.iter_chunked(1 << 16):
        total += len(chunk)
        if total > MAX_BODY_BYTES:
            raise ProtocolError(f"{pool}: {name}: answer over {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _best_effort(raw: bytes) -> Any:
    text = raw[:4096].decode("utf-8", "replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


def _message(body: Any) -> str:
    """The pool's own words from an error body (docs/pools/crateq.md: `{"status", "message"}`)."""
    if isinstance(body, dict):
        for key in ("message", "Message", "msg", "error", "Error", "description"):
            value = body.get(key)
            if isinstance(value, dict):
                value = value.get("Description") or value.get("description")
            if isinstance(value, str) and value:
                return f": {redact_text(value[:200])}"
    if isinstance(body, str) and body.strip() and not body.lstrip().startswith("<"):
        return f": {redact_text(body.strip()[:200])}"
    return ""


def loads_strict(text: str, where: str) -> Any:
    """Strict JSON: no NaN/Infinity, no duplicate keys, no overflowing floats (docs/reliability.md
    M3).

    Errors name the place, the offset and a short snippet with secrets removed (docs/reliability.md
    M1).
    """
    try:
        return jsonstrict.loads(text)
    except json.JSONDecodeError as err:
        start = max(0, err.pos - 20)
        snippet = redact_text(text[start : err.pos + 20]).replace("\n", " ")
        raise ProtocolError(
            f"{where}: malformed JSON at byte {err.pos}: {err.msg} near {snippet!r}"
        ) from err
    except ValueError as err:
        raise ProtocolError(f"{where}: unusable JSON: {redact_text(str(err))}") from err


_THOUSANDS = re.compile(r'("(?:records|pages)"\s*:\s*)(\d{1,3}(?:,\d{3})+)(?=\s*[,}])')


def repair_thousands(text: str) -> tuple[str, bool]:
    """docs/pools/crateq.md writes `"records":174,420`: drop separators in `records`/`pages` only.

    The caller must still check the result is consistent (docs/reliability.md M1's narrow repair).
    """
    repaired, count = _THOUSANDS.subn(lambda m: m.group(1) + m.group(2).replace(",", ""), text)
    return repaired, count > 0


def parse_xml(text: str, where: str) -> Any:
    """Parse XML with entity expansion and DTDs refused (docs/reliability.md M4)."""
    # Imported here: only XML-speaking pools need the XML parser (issue 13: idle RSS).
    import defusedxml.ElementTree as SafeET
    from defusedxml import DefusedXmlException

    head = text.lstrip()[:100].lower()
    if head.startswith("<!doctype html") or head.startswith("<html"):
        raise ProtocolError(f"{where}: answered with an HTML page, not XML")
    try:
        return SafeET.fromstring(text, forbid_dtd=True)
    except DefusedXmlException as err:
        raise ProtocolError(
            f"{where}: XML with DTD or entities refused ({type(err).__name__})"
        ) from err
    except SafeET.ParseError as err:
        raise ProtocolError(f"{where}: malformed XML: {err}") from err
