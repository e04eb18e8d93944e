"""CrateQ (docs/pools/crateq.md): login → JWT, the paged catalog, lookup tables, the queue and its
toggle.

Only CrateQ's URLs, fields and token rules live here; retries, decoding and error
mapping are `pools/http.py`'s. Assumptions beyond the pool document are docs/interface.md §6's.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, ClassVar, Protocol, TypeVar
from urllib.parse import quote, urlsplit

from pydantic import SecretStr

from pooldaemon.errors import (
    AccountError,
    AuthError,
    IncompleteAnswer,
    NotFound,
    ProtocolError,
    TokenExpired,
    TransientError,
)
from pooldaemon.log import get_logger
from pooldaemon.models import (
    CatalogPage,
    DownloadPlan,
    PlanPart,
    QueueItem,
    Request,
    Source,
    Track,
)
from pooldaemon.offload import INLINE, Offload
from pooldaemon.pools.base import Capability, Clock, PoolAdapter, PoolSettings
from pooldaemon.pools.crateq_wire import (
    DecodedPage,
    Envelope,
    check_envelope,
    decode_media_page,
    jwt_expiry,
    login_account,
    media_track,
    record_id,
)
from pooldaemon.pools.fields import Quarantined, flag_or_none, track_meta, whole_number
from pooldaemon.pools.http import Auth, PoolHttp, TokenKeeper, loads_strict

log = get_logger(__name__)

#: docs/pools/crateq.md: the per-track `auth` "has a 15 minute validation period from the time it is
#: displayed".
AUTH_LIFETIME_S = 15 * 60
#: docs/interface.md §6: an `auth` older than 14 minutes is refreshed before use (a minute of
#: slack).
AUTH_FRESH_S = 14 * 60
#: docs/pools/crateq.md lists these account states; the example answers "active"
#: (docs/reliability.md §0 drift).
GOOD_STATUSES = frozenset({"current", "active"})


class CrateQSettings(PoolSettings, Protocol):
    """What the adapter reads of its `[pools.<name>]` section (config.CrateQConfig)."""

    @property
    def base_url(self) -> str: ...
    @property
    def api_key(self) -> SecretStr: ...
    @property
    def username(self) -> str: ...
    @property
    def password(self) -> SecretStr: ...
    @property
    def originator(self) -> str: ...
    @property
    def download_url(self) -> str: ...


class CrateQ(PoolAdapter):
    """A CrateQ account (docs/pools/crateq.md)."""

    config: CrateQSettings

    type_name: ClassVar[str] = "crateq"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.CATALOG,
            Capability.INCREMENTAL,
            Capability.LOOKUPS,
            Capability.QUEUE,
            Capability.QUEUE_EDIT,
        }
    )
    kinds: ClassVar[tuple[str, ...]] = ("track",)

    def __init__(
        self,
        name: str,
        config: CrateQSettings,
        http: PoolHttp,
        clock: Clock = time.time,
        *,
        rows: int = 1000,
        page_attempts: int = 3,
        offload_after: int = 3,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        super().__init__(name, config, http, clock)
        self.base_url = config.base_url.rstrip("/")
        self.rows = rows
        self.page_attempts = page_attempts
        #: Catalogs of more pages than this decode pages 2… in `catalog()`'s worker.
        self.offload_after = offload_after
        self._sleep = sleep
        self.user_id: int | None = None
        self.account: dict[str, Any] = {}
        self._keeper = TokenKeeper(self._login)
        self._auth = Auth(
            keeper=self._keeper,
            headers=lambda token: {"Authorization": f"Bearer {token}"},
            # docs/pools/crateq.md: 403 means the API key is wrong, so only a 401 is worth a new
            # JWT.
            refused=frozenset({401}),
            clock=clock,
        )

    # -- state kept across restarts ------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        if self._keeper.value is None:
            return {}
        return {
            "token": self._keeper.value,
            "expires_at": self._keeper.expires_at,
            "user_id": self.user_id,
        }

    def restore_state(self, state: Mapping[str, Any]) -> None:
        token, expires_at = state.get("token"), state.get("expires_at")
        if not isinstance(token, str) or not token:
            return
        if isinstance(expires_at, int | float) and expires_at <= self.clock():
            return  # expired while we were down: the next call signs in
        self._keeper.set(token, float(expires_at) if isinstance(expires_at, int | float) else None)
        user_id = state.get("user_id")
        self.user_id = user_id if isinstance(user_id, int) else None

    # -- tokens ---------------------------------------------------------------------------------

    async def sign_in(self) -> None:
        await self._keeper.renew(self._keeper.generation)

    def token_expires_at(self) -> float | None:
        return self._keeper.expires_at

    async def _login(self) -> tuple[str, float | None]:
        """`Auth/Login`: username/password → an array holding one account with its JWT."""
        body: dict[str, Any] = {
            "username": self.config.username,
            "password": self.config.password.get_secret_value(),
        }
        if self.config.originator:
            body["originator"] = self.config.originator
        try:
            answer = await self.http.call(
                "POST",
                f"{self.base_url}/Auth/Login",
                params={"key": self.config.api_key.get_secret_value()},
                json_body=body,
                headers={"Content-Type": "application/json"},
                # Signing in changes nothing on the pool: safe to retry after a timeout.
                idempotent=True,
                endpoint="Auth/Login",
            )
        except TokenExpired as err:
            # docs/pools/crateq.md: 403 is a missing or wrong API key; 401 refuses the
            # username/password.
            raise AuthError(f"{self.name}: sign-in refused: {err.message}") from err
        account = login_account(answer.body, self.name)
        status = str(account.get("status") or "").strip().lower()
        if status not in GOOD_STATUSES and not flag_or_none(account.get("crateq")):
            message = str(account.get("msg") or "").strip()
            raise AccountError(
                f"{self.name}: account is {status or 'not active'}"
                + (f": {message}" if message else ""),
                detail={"status": status, "msg": message},
            )
        token = account.get("token")
        if not isinstance(token, str) or not token.strip():
            raise ProtocolError(f"{self.name}: Auth/Login answered without a token")
        user_id = account.get("userId")
        self.user_id = whole_number(user_id) if user_id is not None else None
        self.account = {k: v for k, v in account.items() if k != "token"}
        expires_at = jwt_expiry(token)
        log.info("signed in", pool=self.name, status=status, expires_at=expires_at)
        return token.strip(), expires_at

    # -- calls ------------------------------------------------------------------------------------

    async def _get(self, path: str, params: Mapping[str, Any] | None = None) -> str:
        """An authenticated GET; the body comes back as text so thousands can be repaired."""
        answer = await self.http.call(
            "GET",
            f"{self.base_url}/{path}",
            # docs/pools/crateq.md: the API key is a URL parameter of every call.
            params={"key": self.config.api_key.get_secret_value(), **(params or {})},
            headers={"Content-Type": "application/json"},
            auth=self._auth,
            decode="text",
            endpoint=path,
        )
        return str(answer.body)

    async def _get_json(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        text = await self._get(path, params)
        if not text.strip():
            raise IncompleteAnswer(f"{self.name}: {path} answered with an empty body")
        return loads_strict(text, f"{self.name}: {path}")

    async def _page(
        self, path: str, params: Mapping[str, Any], decode: _Decode[P], turn: asyncio.Lock
    ) -> P:
        """One page of a paged list, retried with back-off while the answer is unusable.

        `turn` keeps a pass to one request at a time; decoding is outside it.
        """
        attempt = 0
        page = int(params.get("page") or 1)
        while True:
            attempt += 1
            try:
                async with turn:
                    text = await self._get(path, params)
                return await decode(text, f"{self.name}: {path} page {page}", page)
            except ProtocolError as err:
                # docs/interface.md §6: empty, truncated or malformed answers are errors, retried
                # with back-off; pages applied before stay applied (docs/reliability.md T2).
                if attempt >= self.page_attempts:
                    raise
                delay = min(30.0, 2.0 ** (attempt - 1))
                log.info("page retried", pool=self.name, endpoint=path, error=err.message)
                await self._sleep(delay)

    async def _pages(
        self, path: str, params: Mapping[str, Any], decode: _Decode[P], *, ahead: int = 1
    ) -> AsyncIterator[P]:
        """Every page of a paged list, 1 to the last page the pool announces.

        Up to `ahead` next pages are asked for while the caller works on this one, still one
        request at a time: the pool's answer time, and a worker's decoding, are off the
        critical path of a 175-page sync.
        """
        turn = asyncio.Lock()

        def fetch(page: int) -> asyncio.Future[P]:
            page_params = {**params, "page": page, "rows": self.rows}
            return asyncio.ensure_future(self._page(path, page_params, decode, turn))

        waiting = {1: fetch(1)}
        page = 1
        try:
            while True:
                answer = await waiting.pop(page)
                for later in range(page + 1, min(answer.pages, page + ahead) + 1):
                    if later not in waiting:
                        waiting[later] = fetch(later)
                yield answer
                if page >= answer.pages:
                    return
                page += 1
        finally:
            for pending in waiting.values():
                pending.cancel()
            await asyncio.gather(*waiting.values(), return_exceptions=True)

    async def _queue_page(self, text: str, where: str, page: int) -> Envelope:
        envelope, repaired = check_envelope(text, where, page, self.rows)
        if repaired:
            log.warning(
                "repaired",
                pool=self.name,
                endpoint="Content/Queue",
                records=envelope.records,
                pages=envelope.pages,
            )
        return envelope

    # -- catalog --------------------------------------------------------------------------------

    async def catalog(
        self, since: float | None = None, offload: Offload = INLINE
    ) -> AsyncIterator[CatalogPage]:
        """`Content/Media` newest first; with `since`, only the last `days` (docs/pools/crateq.md).

        Pages after the first of a catalog longer than `offload_after` pages are decoded by
        `offload` (a worker process), the rest here.
        """
        params: dict[str, Any] = {"sort": "date", "dir": "desc"}
        if since is not None:
            # Whole days, rounded up, plus one so a track published late on the boundary day
            # (in the pool's time zone) is not missed.
            params["days"] = max(1, math.ceil((self.clock() - since) / 86400)) + 1
        pages = 0  # as page 1 says; page 2 is asked for only once page 1 is decoded

        async def decode(text: str, where: str, page: int) -> DecodedPage:
            nonlocal pages
            args = (self.name, text, where, page, self.rows)
            if page > 1 and pages > self.offload_after:
                return await offload.run(decode_media_page, *args)
            decoded = decode_media_page(*args)
            pages = decoded.pages
            return decoded

        async for decoded in self._pages("Content/Media", params, decode, ahead=2):
            if decoded.repaired:
                log.warning(
                    "repaired",
                    pool=self.name,
                    endpoint="Content/Media",
                    records=decoded.page.total,
                    pages=decoded.pages,
                )
            for ident, reason in decoded.quarantined:
                log.warning("record quarantined", pool=self.name, media_id=ident, reason=reason)
            yield decoded.page

    def track(self, record: Any) -> Track:
        """A catalog or queue record as a Track; Quarantined when a field breaks its rule."""
        return media_track(self.name, record)

    # -- lookups --------------------------------------------------------------------------------

    async def lookups(self) -> dict[str, dict[str, Any]]:
        """Genres, genre categories, video qualities and mixes, keyed by their ids
        (docs/pools/crateq.md)."""
        tables: dict[str, dict[str, Any]] = {}
        for kind, path, key in (
            ("genres", "Content/Genres", "genreId"),
            ("genre_categories", "Content/GenreCategories", "categoryId"),
            ("video_qualities", "Content/VideoQualities", "qualityId"),
            ("video_mixes", "Content/VideoMixes", None),
        ):
            body = await self._get_json(path)
            if not isinstance(body, list):
                raise ProtocolError(f"{self.name}: {path}: expected a list")
            if not body:
                # docs/pools/crateq.md's timeout answer is `[]` too: an empty table is never
                # believed.
                raise IncompleteAnswer(f"{self.name}: {path} answered with an empty list")
            table: dict[str, Any] = {}
            for entry in body:
                if key is None and isinstance(entry, str):
                    table[entry] = entry
                elif key is not None and isinstance(entry, dict) and entry.get(key) is not None:
                    table[str(entry[key])] = entry
                else:
                    log.warning("lookup entry skipped", pool=self.name, endpoint=path)
            tables[kind] = table
        return tables

    # -- queue ----------------------------------------------------------------------------------

    async def remote_queue(self) -> list[QueueItem]:
        """Every page of `Content/Queue`, each item with its `auth` and when it was seen."""
        items: dict[str, QueueItem] = {}
        async for envelope in self._pages("Content/Queue", {}, self._queue_page):
            # docs/pools/crateq.md: `auth` is valid 15 minutes from when it is displayed; take the
            # time before the answer arrived so the age is never underestimated.
            seen = self.clock()
            for record in envelope.data:
                try:
                    track = self.track(record)
                except Quarantined as err:
                    log.warning(
                        "queue record quarantined",
                        pool=self.name,
                        media_id=record_id(record),
                        reason=str(err),
                    )
                    continue
                auth = record.get("auth")
                items[track.id] = QueueItem(
                    pool=self.name,
                    item_id=track.id,
                    queue_id=_opt_str(record.get("queueId")),
                    queued_at=_opt_str(record.get("queueDate")),
                    track=track,
                    extra={
                        "auth": auth if isinstance(auth, str) and auth else None,
                        "auth_seen": seen,
                        "record": track.raw,
                    },
                )
            if envelope.records and len(items) > envelope.records:
                raise ProtocolError(f"{self.name}: Content/Queue lists more items than it counts")
        return list(items.values())

    async def queue_add(self, item_id: str) -> str:
        """Add to the queue, checking first: UpdateQueue would *remove* a queued track."""
        media_id = _media_id(item_id)
        queue = await self.remote_queue()
        return await self._add_checked(media_id, queue)

    async def queue_remove(self, item_id: str) -> str:
        media_id = _media_id(item_id)
        queue = {item.item_id: item for item in await self.remote_queue()}
        item = queue.get(str(media_id))
        if item is None:
            return f"{media_id} is not in the {self.name} queue"
        try:
            message = await self._update_queue(media_id, whole_number(item.queue_id) or 0)
        except TransientError as err:
            # docs/reliability.md C6: the toggle may have happened; look before doing anything else.
            if not await self._in_queue(media_id):
                return f"{media_id} removed from the {self.name} queue (confirmed by re-reading it)"
            raise TransientError(
                f"{self.name}: removing {media_id} failed ({err.message}); it is still queued"
            ) from err
        return message or f"{media_id} removed from the {self.name} queue"

    async def _add_checked(self, media_id: int, queue: list[QueueItem]) -> str:
        if any(item.item_id == str(media_id) for item in queue):
            return f"{media_id} is already in the {self.name} queue"
        try:
            message = await self._update_queue(media_id, 0)
        except TransientError as err:
            # docs/reliability.md C6: never POST the toggle again blindly – it would remove the
            # track if the first call got through. Read the queue to find out what happened.
            if await self._in_queue(media_id):
                return f"{media_id} added to the {self.name} queue (confirmed by re-reading it)"
            raise TransientError(
                f"{self.name}: adding {media_id} to the queue failed ({err.message}); "
                "it is not queued, try again later"
            ) from err
        if "remov" in message.lower():
            # Someone queued it between our read and our POST, so the toggle took it out.
            log.warning("queue toggle removed", pool=self.name, media_id=media_id, said=message)
        return message or f"{media_id} added to the {self.name} queue"

    async def _in_queue(self, media_id: int) -> bool:
        return any(item.item_id == str(media_id) for item in await self.remote_queue())

    async def _update_queue(self, media_id: int, queue_id: int) -> str:
        """`Content/UpdateQueue`: a toggle, so it is never retried on its own."""
        body: dict[str, Any] = {"queueId": queue_id, "mediaId": media_id}
        if self.user_id is not None:
            body["userId"] = self.user_id
        answer = await self.http.call(
            "POST",
            f"{self.base_url}/Content/UpdateQueue",
            params={"key": self.config.api_key.get_secret_value()},
            json_body=body,
            headers={"Content-Type": "application/json"},
            auth=self._auth,
            idempotent=False,
            decode="text",
            endpoint="Content/UpdateQueue",
        )
        text = str(answer.body)
        if not text.strip():
            return ""
        reply = loads_strict(text, f"{self.name}: Content/UpdateQueue")
        if isinstance(reply, list):
            reply = reply[0] if reply else {}
        if isinstance(reply, dict):
            message = reply.get("message")
            return str(message) if message else ""
        return ""

    # -- downloads ------------------------------------------------------------------------------

    async def plan(self, request: Request, known: QueueItem | None = None) -> DownloadPlan:
        """docs/interface.md §6: the download URL with a fresh `auth` from the queue (queued
        first)."""
        if request.kind != "track" or request.item_id is None:
            raise NotFound(f"{self.name}: only tracks can be downloaded (got {request.ref})")
        media_id = _media_id(request.item_id)
        item = known if known is not None and self._fresh(known) else None
        if item is None:
            item = await self._fresh_queue_item(media_id)
        return self._plan_for(request, item, await self._jwt())

    async def renew_plan(self, plan: DownloadPlan, part_key: str | None = None) -> DownloadPlan:
        """A fresh `auth` (and JWT) from re-reading the queue; the part key stays "main"."""
        request = Request(plan.pool, plan.item_id, plan.kind)
        item = await self._fresh_queue_item(_media_id(plan.item_id))
        return self._plan_for(request, item, await self._jwt())

    async def _jwt(self) -> str:
        """The current JWT for the download's Bearer header (renewed first when near `exp`)."""
        return await self._keeper.get(now=self.clock())

    def _fresh(self, item: QueueItem) -> bool:
        seen, auth = item.extra.get("auth_seen"), item.extra.get("auth")
        return (
            isinstance(auth, str)
            and bool(auth)
            and isinstance(seen, int | float)
            and 0 <= self.clock() - seen < AUTH_FRESH_S
        )

    async def _fresh_queue_item(self, media_id: int) -> QueueItem:
        queue = await self.remote_queue()
        found = _find(queue, media_id)
        if found is None:
            # docs/interface.md §6: a track not in the queue is added first, so its `auth` comes
            # from it.
            message = await self._add_checked(media_id, queue)
            log.info("queued for download", pool=self.name, media_id=media_id, said=message)
            found = _find(await self.remote_queue(), media_id)
            if found is None:
                raise NotFound(
                    f"{self.name}: {media_id} is not in the queue after adding it"
                    + (f" (the pool said: {message})" if message else "")
                )
        if not self._fresh(found):
            raise ProtocolError(f"{self.name}: the queue lists {media_id} without an auth token")
        return found

    def _plan_for(self, request: Request, item: QueueItem, token: str) -> DownloadPlan:
        track = item.track
        if track is None:
            record = item.extra.get("record")
            track = self.track(record) if isinstance(record, dict) else None
        auth = str(item.extra["auth"])
        url = self.config.download_url.format(
            base_url=self.base_url,
            mediaId=quote(str(request.item_id), safe=""),
            api_key=quote(self.config.api_key.get_secret_value(), safe=""),
            auth=quote(auth, safe=""),
        )
        # docs/interface.md §6: the download is sent with the JWT Bearer header like every CrateQ
        # call.
        headers = {"Authorization": f"Bearer {token}"}
        host = urlsplit(url).hostname or self.name
        video = bool(track and track.video)
        part = PlanPart(
            key="main",
            sources=[Source(url=url, server=host, headers=headers)],
            # The catalog's "75.26 MB" is rounded: the downloader learns the real size.
            expected_size=None,
            extension="mp4" if video else "mp3",
            expires_at=float(item.extra["auth_seen"]) + AUTH_LIFETIME_S,
        )
        return DownloadPlan(
            pool=self.name,
            item_id=str(request.item_id),
            kind="track",
            format="",
            parts=[part],
            meta=track_meta(track),
            context={"queue_id": item.queue_id},
        )

    async def redownload(self, item_ids: list[str], reason: str) -> str:
        # CrateQ has no redownload request: downloading again is allowed as it is.
        return f"{self.name} needs no redownload request; the track is downloaded again"


# -- helpers ------------------------------------------------------------------------------------


# -- decoding pages (pure functions: they may run in a worker process, see offload.py) --------


class _Paged(Protocol):
    @property
    def pages(self) -> int: ...


P = TypeVar("P", bound=_Paged)
#: Decodes one page's text: (text, where for messages, page number) → the checked page.
_Decode = Callable[[str, str, int], Awaitable[P]]


def _media_id(item_id: str | None) -> int:
    try:
        media_id = whole_number(item_id, "id")
    except Quarantined:
        media_id = None
    if media_id is None or media_id <= 0:
        raise NotFound(f"{item_id!r} is not a CrateQ mediaId (a whole number)")
    return media_id


def _find(queue: list[QueueItem], media_id: int) -> QueueItem | None:
    return next((item for item in queue if item.item_id == str(media_id)), None)


def _opt_str(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)
