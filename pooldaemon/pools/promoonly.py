"""Promo Only POOL: sign-in and 5-minute tokens, the remote queue, download plans, acknowledgements.

docs/pools/promoonly.md and docs/interface.md §6. The pool has no documented catalog listing, so the
adapter offers the queue (read, add, remove), redownload requests and the `download/success` outbox
call only.

One concept in ~700 lines, the account's protocol: every call carries the 5-minute token this
module signs in and renews, a download plan is a queue call (its `dl_token` and servers), and the
outbox acknowledges what the queue handed out, so splitting it would split that token chain.
The answers' fields are read by `pools/promoonly_wire.py`, retries and HTTP errors by
`pools/http.py`.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Mapping
from typing import Any, ClassVar, Protocol
from urllib.parse import quote

import aiohttp
from pydantic import SecretStr

from pooldaemon.errors import (
    AccountError,
    AuthError,
    BadRequest,
    Conflict,
    NotFound,
    PoolDaemonError,
    ProtocolError,
    RateLimited,
    TokenExpired,
    TransientError,
    Unsupported,
)
from pooldaemon.log import get_logger
from pooldaemon.models import DownloadPlan, OutboxCall, PlanPart, QueueItem, Request, Source
from pooldaemon.pools import promoonly_wire as wire
from pooldaemon.pools.base import Capability, Clock, PoolAdapter, PoolSettings, secret_text
from pooldaemon.pools.fields import text_or_none, whole_number_or_none
from pooldaemon.pools.http import Answer, Auth, PoolHttp, TokenKeeper

log = get_logger(__name__)

#: Renew this long before the token's expiry, so a call never leaves with a dying token.
RENEW_MARGIN_S = 60.0
#: The one call this pool is owed after a verified file (docs/interface.md §6), as an OutboxCall
#: action.
SUCCESS_ACTION = "download_success"
#: Queue answers remembered while the website's queue cannot be read (a few per queued job).
REMEMBERED_ANSWERS = 2000

# Statuses we read ourselves to show the pool's `Result` text; 401 goes to token renewal, 408,
# 429 and 5xx to the shared transient handling of pools/http.py.
_ANSWERED = frozenset(range(200, 500)) - {401, 408, 429}


class PromoOnlySettings(PoolSettings, Protocol):
    """What the adapter reads of its `[pools.<name>]` section (config.PromoOnlyConfig): either
    email and password, or user_id and token (config.py requires one of the two)."""

    @property
    def base_url(self) -> str: ...
    @property
    def email(self) -> str | None: ...
    @property
    def password(self) -> SecretStr | None: ...
    @property
    def user_id(self) -> int | None: ...
    @property
    def token(self) -> SecretStr | None: ...
    @property
    def download_url(self) -> str: ...


class PromoOnlyAdapter(PoolAdapter):
    """A Promo Only POOL account (signed in with email/password, or a fixed user id and token)."""

    type_name: ClassVar[str] = "promoonly"
    # docs/interface.md §2/§6: no catalog listing is documented, so CATALOG is not claimed and the
    # daemon ignores catalog_interval for this pool.
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.QUEUE, Capability.QUEUE_EDIT, Capability.REDOWNLOAD, Capability.OUTBOX}
    )
    kinds: ClassVar[tuple[str, ...]] = ("track",)
    config: PromoOnlySettings

    SIGNIN_PATH: ClassVar[str] = "/user/authenticate/signin"
    RENEW_PATH: ClassVar[str] = "/user/authenticate"
    # docs/pools/promoonly.md §2's path first; some pages say /download/queue/ (docs/interface.md
    # §6): tried on a 404.
    QUEUE_PATHS: ClassVar[tuple[str, ...]] = ("/downloads/queue/{id}", "/download/queue/{id}")
    QUEUE_LIST_PATH: ClassVar[str] = "/download/queue"
    REMOVE_PATH: ClassVar[str] = "/download/remove/{id}"
    SERVERS_PATH: ClassVar[str] = "/download/server/{id}"
    SUCCESS_PATH: ClassVar[str] = "/download/success"
    REDOWNLOAD_PATH: ClassVar[str] = "/download/redownload_request"

    def __init__(
        self, name: str, config: PromoOnlySettings, http: PoolHttp, clock: Clock = time.time
    ) -> None:
        super().__init__(name, config, http, clock)
        self._base = config.base_url.rstrip("/")
        self._fixed = config.user_id is not None and config.token is not None
        self._user_id: int | None = config.user_id
        self._api_key: str | None = None
        self._api_secret: str | None = None
        self._keeper = TokenKeeper(self._fetch_token)
        if self._fixed:
            # docs/interface.md §6: a fixed token is never renewed: no expiry, and a 401 is final.
            self._keeper.set(secret_text(config.token), None)
        self._auth = Auth(keeper=self._keeper, headers=self._bearer, clock=self.clock)
        #: The queue path this server answered on; None until one worked.
        self._queue_path: str | None = None
        #: One queue call per track at a time: two plans for a track must not both queue it.
        self._track_locks: dict[str, asyncio.Lock] = {}
        #: The assumed list endpoint answered 404: the website's queue cannot be read (nor
        #: edited), and a lost queue answer cannot be looked up there.
        self._list_missing = False
        #: While the list is missing: the queue answers we got, by track id, kept (and written
        #: before use) so the queue GET's side effect is never repeated for them.
        self._answers: dict[str, dict[str, Any]] = {}
        #: While the list is missing: tracks whose queue GET left without an answer back.
        self._asked: dict[str, float] = {}

    # -- state kept across restarts ------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The API key and secret outlive a restart, so renewal needs no new sign-in; so do
        the queue answers held while the website's queue cannot be read."""
        state: dict[str, Any] = {}
        if not self._fixed and self._api_key is not None:
            state.update(
                email=self.config.email,
                userid=self._user_id,
                api_key=self._api_key,
                api_secret=self._api_secret,
            )
        if self._list_missing or self._answers or self._asked:
            state["queue"] = {
                "account": self._account(),
                "list_missing": self._list_missing,
                # Copies: the caller compares this with what it saved last time.
                "answers": {track: dict(entry) for track, entry in self._answers.items()},
                "asked": dict(self._asked),
            }
        return state

    def restore_state(self, state: Mapping[str, Any]) -> None:
        queue = state.get("queue")
        if isinstance(queue, dict) and queue.get("account") == self._account():
            self._list_missing = queue.get("list_missing") is True
            answers, asked = queue.get("answers"), queue.get("asked")
            if isinstance(answers, dict):
                self._answers = {str(k): v for k, v in answers.items() if isinstance(v, dict)}
            if isinstance(asked, dict):
                self._asked = {str(k): float(v) for k, v in asked.items() if _is_number(v)}
        if self._fixed or state.get("email") != self.config.email:
            return  # another account's key must not renew this one's token
        user_id, key, secret = state.get("userid"), state.get("api_key"), state.get("api_secret")
        if isinstance(user_id, int) and isinstance(key, str) and isinstance(secret, str):
            self._user_id, self._api_key, self._api_secret = user_id, key, secret

    def _account(self) -> str:
        """Whose queue answers these are: another account's must never be used."""
        return f"{self._base} {self.config.email or ''} {self.config.user_id or ''}"

    def notices(self) -> list[str]:
        if not self._list_missing:
            return []
        return [
            f"the website's download queue cannot be read ({self.QUEUE_LIST_PATH} answers "
            "404): tracks requested through pooldaemon still download, tracks queued on the "
            "website are not picked up"
        ]

    # -- tokens -------------------------------------------------------------------------------

    async def sign_in(self) -> None:
        """Sign in with email and password (with a fixed token there is nothing to fetch)."""
        if self._fixed:
            return
        token, expires_at = await self._sign_in_token()
        self._keeper.set(token, expires_at)

    def token_expires_at(self) -> float | None:
        return self._keeper.expires_at

    async def renew(self) -> None:
        """Renew the access token with the API key and secret (signing in again if refused).

        A fixed token has nothing to renew: only a refusal by the pool says it is bad.
        """
        if self._fixed:
            return
        await self._keeper.renew(self._keeper.generation)

    async def _fetch_token(self) -> tuple[str, float | None]:
        """TokenKeeper's fetch: renewal while we hold an API key, else (or if refused) sign-in."""
        if self._fixed:
            raise AuthError(
                f"{self.name}: token rejected: the pool refused the configured user_id "
                f"{self._user_id} and token (HTTP 401); a fixed token is never renewed, so set "
                "a new token or configure email and password"
            )
        if self._api_key is not None:
            try:
                return await self._renew_token()
            except (AuthError, ProtocolError, NotFound) as err:
                # docs/interface.md §6: if renewal fails, sign in again.
                log.info("promoonly.renewal_refused", pool=self.name, error=err.message)
        return await self._sign_in_token()

    async def _sign_in_token(self) -> tuple[str, float | None]:
        answer = await self._call(
            "POST",
            self.SIGNIN_PATH,
            data={"email": self.config.email or "", "password": secret_text(self.config.password)},
            signed=False,
            idempotent=True,
            also_ok=frozenset({401}),
        )
        if answer.status in (401, 403):
            said = wire.result_text(answer.body) or f"HTTP {answer.status}"
            raise AuthError(f"{self.name}: sign-in refused for {self.config.email}: {said}")
        self._raise_for(answer, "sign-in")
        fields = wire.as_object(answer.body, f"{self.name}: sign-in")
        token = text_or_none(fields.get("token"))
        user_id = whole_number_or_none(fields.get("userid"))
        api_key, api_secret = (
            text_or_none(fields.get("api_key")),
            text_or_none(fields.get("api_secret")),
        )
        if not token or user_id is None or not api_key or not api_secret:
            said = wire.result_text(fields)
            raise AuthError(
                f"{self.name}: sign-in gave no usable token"
                + (f": {said}" if said else " (token, userid, api_key or api_secret missing)")
            )
        self._user_id, self._api_key, self._api_secret = user_id, api_key, api_secret
        log.info("promoonly.signed_in", pool=self.name, userid=user_id)
        return token, wire.token_expiry(fields.get("expiration"), self.clock())

    async def _renew_token(self) -> tuple[str, float | None]:
        assert self._api_key is not None and self._api_secret is not None
        basic = base64.b64encode(f"{self._api_key}:{self._api_secret}".encode()).decode()
        answer = await self._call(
            "POST",
            self.RENEW_PATH,
            data={"userid": str(self._user_id)},
            headers={"Authorization": f"Basic {basic}"},
            signed=False,
            idempotent=True,
            also_ok=frozenset({401}),
        )
        if answer.status in (401, 403):
            said = wire.result_text(answer.body) or f"HTTP {answer.status}"
            raise AuthError(f"{self.name}: token renewal refused: {said}")
        self._raise_for(answer, "token renewal")
        fields = wire.as_object(answer.body, f"{self.name}: token renewal")
        token = text_or_none(fields.get("token"))
        if not token:
            raise ProtocolError(f"{self.name}: token renewal answered without a token")
        return token, wire.token_expiry(fields.get("expires"), self.clock())

    def _bearer(self, token: str) -> dict[str, str]:
        # docs/pools/promoonly.md: `Authorization: Bearer Base64(userid:token)`.
        pair = base64.b64encode(f"{self._user_id}:{token}".encode()).decode()
        return {"Authorization": f"Bearer {pair}"}

    # -- the remote queue ---------------------------------------------------------------------

    async def remote_queue(self) -> list[QueueItem]:
        """`GET /download/queue`: one item per track (the newest entry when one is listed twice).

        The list endpoint is assumed (docs/pools/promoonly.md): a pool that answers 404 to it
        has no readable queue, which costs that feature only, so the answer is then empty."""
        return await self._read_queue() or []

    async def _read_queue(self) -> list[QueueItem] | None:
        """The remote queue, or None when the pool has no list endpoint."""
        answer = await self._call("GET", self.QUEUE_LIST_PATH, endpoint="download/queue")
        if answer.status == 404:
            if not self._list_missing:
                self._list_missing = True
                log.warning(
                    "promoonly.queue_unreadable",
                    pool=self.name,
                    reason=f"{self.QUEUE_LIST_PATH} answers HTTP 404",
                    effect="requested tracks still download; the website's queue is not read",
                )
                await self.save_state()
            return None
        self._raise_for(answer, "queue list")
        if self._list_missing:
            self._list_missing = False
            log.info("promoonly.queue_readable_again", pool=self.name)
            # What we remembered is on the list now, which is read before any queue GET.
            self._answers.clear()
            self._asked.clear()
            await self.save_state()
        if not isinstance(answer.body, list):
            raise ProtocolError(
                f"{self.name}: queue list answered {type(answer.body).__name__}, expected a list"
            )
        items: dict[str, QueueItem] = {}
        for raw in answer.body:
            try:
                item = self._queue_item(raw)
            except ProtocolError as err:
                # docs/reliability.md M3: quarantine the one bad record, keep the rest.
                log.warning("promoonly.queue_entry_skipped", pool=self.name, reason=err.message)
                continue
            held = items.get(item.item_id)
            if held is None or (whole_number_or_none(item.queue_id) or 0) >= (
                whole_number_or_none(held.queue_id) or 0
            ):
                items[item.item_id] = item
        return list(items.values())

    async def find_in_queue(self, track_id: str) -> QueueItem | None:
        """The track's entry in the remote queue, read fresh (docs/reliability.md C6)."""
        wanted = wire.parse_track_id(track_id)
        for item in await self.remote_queue():
            if item.item_id == wanted:
                return item
        return None

    async def queue_add(self, item_id: str) -> str:
        """Queue a track for download (`GET /downloads/queue/ID`) unless it is queued already."""
        track_id = wire.parse_track_id(item_id)
        # The user's own word: asked again even after an answer was lost (see _queue_once).
        entry, fresh = await self._ensure_queued(track_id, force=True)
        if not fresh:
            return f"{self.name}:{track_id} is already in the queue"
        return f"{self.name}:{track_id}: {wire.result_text(entry) or 'queued for download'}"

    async def queue_remove(self, item_id: str) -> str:
        """`GET /download/remove/ID`: removing twice is harmless, so it is retried like a read."""
        track_id = wire.parse_track_id(item_id)
        if self._list_missing:
            raise Unsupported(
                f"{self.name}: the website's download queue cannot be read or edited here "
                f"({self.QUEUE_LIST_PATH} answers 404); remove {track_id} on the website"
            )
        answer = await self._call(
            "GET", self.REMOVE_PATH.format(id=track_id), idempotent=True, endpoint="download/remove"
        )
        if answer.status == 404:
            return f"{self.name}:{track_id} was not in the queue"
        self._raise_for(answer, f"remove {track_id}")
        return (
            f"{self.name}:{track_id}: {wire.result_text(answer.body) or 'removed from the queue'}"
        )

    async def _ensure_queued(
        self, track_id: str, *, force: bool = False
    ) -> tuple[dict[str, Any], bool]:
        """The queue entry for a track, queuing it only when the queue does not hold it.

        Returns (entry, queued_now). The queue GET has a side effect (docs/reliability.md §0), so it
        is never repeated blindly: after a failure the queue is read and an entry found there is
        used; otherwise the error goes back to the caller, whose later retry reads again first.
        A pool without the list endpoint is handled by `_queue_once`.
        """
        lock = self._track_locks.setdefault(track_id, asyncio.Lock())
        async with lock:
            listed = await self._read_queue()
            if listed is None:
                return await self._queue_once(track_id, force=force)
            found = next((item for item in listed if item.item_id == track_id), None)
            if found is not None:
                return dict(found.extra), False
            try:
                return await self._queue_call(track_id), True
            except TransientError as err:
                found = await self.find_in_queue(track_id)
                if found is None:
                    raise TransientError(
                        f"{err.message}; {self.name}:{track_id} is not in the queue, so it "
                        "will be asked for again later",
                        retry_after_s=err.retry_after_s,
                    ) from err
                log.warning(
                    "promoonly.queue_answer_lost", pool=self.name, track=track_id, error=err.message
                )
                return dict(found.extra), True

    async def _queue_once(self, track_id: str, *, force: bool) -> tuple[dict[str, Any], bool]:
        """The queue GET for a pool whose queue cannot be read: at most once per track.

        docs/reliability.md C6: the answer is written to the state database before it is used,
        so a crash after it costs nothing; a GET whose answer never came back is not sent again
        (the queue cannot be read to see whether it was applied) unless the user asks
        (`poolctl queue POOL add ID`, `force`). Answers are forgotten once the pool
        acknowledges the download.
        """
        held = self._answers.get(track_id)
        if held is not None and not force:
            return dict(held), False
        if track_id in self._asked and not force:
            raise Conflict(
                f"{self.name}: the answer to queuing track {track_id} was lost, and the website's "
                "download queue cannot be read to see whether the pool queued it; queuing it "
                "again may use up a download: check the website's queue, then "
                f"`poolctl queue {self.name} add {track_id}` and `poolctl retry` the job"
            )
        self._asked[track_id] = self.clock()
        await self.save_state()
        try:
            entry = await self._queue_call(track_id)
        except RateLimited:
            self._asked.pop(track_id, None)  # 429: refused, not applied
            raise
        except TransientError as err:
            if not isinstance(err.__cause__, aiohttp.ClientConnectorError):
                raise  # sent, answer lost: the marker stays (see above)
            self._asked.pop(track_id, None)  # never connected: nothing was sent
            raise
        except PoolDaemonError:
            self._asked.pop(track_id, None)  # the pool answered: it said what it did
            raise
        self._answers[track_id] = entry
        self._asked.pop(track_id, None)
        while len(self._answers) > REMEMBERED_ANSWERS:
            del self._answers[next(iter(self._answers))]
        await self.save_state()
        return entry, True

    async def _queue_call(self, track_id: str) -> dict[str, Any]:
        paths = (self._queue_path,) if self._queue_path else self.QUEUE_PATHS
        for index, path in enumerate(paths):
            answer = await self._call(
                "GET",
                path.format(id=track_id),
                idempotent=False,  # docs/pools/promoonly.md §2: a GET with a side effect
                endpoint="downloads/queue",
            )
            if answer.status == 404 and index + 1 < len(paths):
                continue  # docs/interface.md §6: the other documented path
            if answer.status == 404:
                said = wire.result_text(answer.body)
                raise NotFound(
                    f"{self.name}: track {track_id} not found" + (f": {said}" if said else "")
                )
            self._raise_for(answer, f"queue {track_id}")
            self._queue_path = path
            entry = wire.queue_entry(answer.body, f"{self.name}: queue {track_id}")
            if str(entry["trackid"]) != track_id:
                raise ProtocolError(
                    f"{self.name}: queue {track_id} answered for track {entry['trackid']}"
                )
            return entry
        raise AssertionError("unreachable")  # pragma: no cover

    def _queue_item(self, raw: Any) -> QueueItem:
        entry = wire.queue_entry(raw, f"{self.name}: queue list")
        extra = {key: value for key, value in entry.items() if key != "Result"}
        extra["seen_at"] = self.clock()
        queue_id = entry.get("queueid")
        return QueueItem(
            pool=self.name,
            item_id=str(entry["trackid"]),
            kind="track",
            queue_id=None if queue_id is None else str(queue_id),
            queued_at=wire.queue_time(entry.get("queue_time")),
            track=wire.entry_track(self.name, entry),
            extra=extra,
        )

    async def _servers(self, track_id: str) -> list[tuple[str, int | None]]:
        """`GET /download/server/ID` (docs/pools/promoonly.md §3): the failover list as (host,
        id)."""
        answer = await self._call(
            "GET", self.SERVERS_PATH.format(id=track_id), endpoint="download/server"
        )
        self._raise_for(answer, f"servers for {track_id}")
        if not isinstance(answer.body, list):
            raise ProtocolError(f"{self.name}: the server list for {track_id} is not a list")
        servers: list[tuple[str, int | None]] = []
        for item in answer.body:
            host = wire.server_host(item.get("host")) if isinstance(item, dict) else None
            if host is None:
                log.warning("promoonly.server_skipped", pool=self.name, server=repr(item)[:100])
                continue
            servers.append((host, whole_number_or_none(item.get("id"))))
        return servers

    # -- downloads ----------------------------------------------------------------------------

    async def plan(self, request: Request, known: QueueItem | None = None) -> DownloadPlan:
        """One part with a source per download server, using the queue entry's dl_token.

        `known` (a remote_queue item) is used as is; otherwise the queue is read and the track
        queued only when it is not there (docs/reliability.md C6).
        """
        if request.kind != "track" or request.item_id is None:
            raise Unsupported(f"{self.name}: only single tracks can be downloaded ({request.ref})")
        track_id = wire.parse_track_id(request.item_id)
        if known is not None and known.extra.get("dl_token"):
            entry = wire.queue_entry(known.extra, f"{self.name}: queue entry {track_id}")
        else:
            entry, _ = await self._ensure_queued(track_id)
        return await self._plan_from(entry)

    async def renew_plan(self, plan: DownloadPlan, part_key: str | None = None) -> DownloadPlan:
        """A fresh header, dl_token and server list for a failing plan; never a blind re-queue.

        docs/reliability.md T1: the queue is read again first (a dl_token may have been reissued);
        only a track no longer in the queue is queued again, and redownload is never spent on our
        own failures.
        """
        context = plan.context
        track_id = wire.parse_track_id(plan.item_id)
        if not self._fixed and context.get("token_generation") == self._keeper.generation:
            # The plan's header may be what a download server refused: renew it (single-flight).
            await self._keeper.renew(self._keeper.generation)
        entry, _ = await self._ensure_queued(track_id)
        if entry["dl_token"] != context.get("dl_token"):
            log.info("promoonly.dl_token_reissued", pool=self.name, track=track_id)
        return await self._plan_from(entry)

    async def _plan_from(self, entry: dict[str, Any]) -> DownloadPlan:
        track_id = str(entry["trackid"])
        try:
            refreshed = await self._servers(track_id)
        except (TransientError, NotFound, ProtocolError) as err:
            # The queue answer's own list still works; the id is looked up when acknowledging.
            log.info("promoonly.server_list_unavailable", pool=self.name, error=err.message)
            refreshed = []
        servers = [host for host, _ in refreshed] or list(entry["servers"])
        if not servers:
            raise ProtocolError(f"{self.name}: no download server for track {track_id}")
        token = await self._keeper.get(now=self.clock(), margin_s=RENEW_MARGIN_S)
        generation = self._keeper.generation
        headers = self._bearer(token)
        dl_token = str(entry["dl_token"])
        part = PlanPart(
            key="main",
            sources=[
                Source(
                    url=self.config.download_url.format(
                        server=host, dl_token=quote(dl_token, safe="")
                    ),
                    server=host,
                    headers=dict(headers),
                )
                for host in servers
            ],
            extension=wire.file_extension(entry.get("file_type")),
            # The Bearer header in the sources dies with the access token.
            expires_at=self._keeper.expires_at,
        )
        track = wire.entry_track(self.name, entry)
        meta = {
            "id": track_id,
            "artist": track.artist,
            "title": track.title,
            "genre": track.genre,
            "bpm": track.bpm,
            "mix": track.mix,
            "year": track.year,
            "advisory": track.advisory,
            "quality": track.quality,
            "source": track.source,
            "label": text_or_none(entry.get("label")),
            "length_s": track.length_s,
        }
        return DownloadPlan(
            pool=self.name,
            item_id=track_id,
            kind="track",
            format="",  # docs/pools/promoonly.md §2: the media type is the account's POOL
            # preference
            parts=[part],
            meta={key: value for key, value in meta.items() if value is not None},
            context={
                "trackid": int(track_id),
                "dl_token": dl_token,
                "queueid": entry.get("queueid"),
                "server_ids": {host: sid for host, sid in refreshed if sid is not None},
                "token_generation": generation,
                "entry": {key: value for key, value in entry.items() if key != "seen_at"},
            },
        )

    def after_download(self, plan: DownloadPlan) -> list[OutboxCall]:
        """`download/success` is owed for every verified file (docs/interface.md §6).

        The engine may set `plan.context["served_by"]` to the host that delivered the file;
        otherwise the first listed server is named.
        """
        context = plan.context
        hosts = [source.server for part in plan.parts for source in part.sources]
        host = context.get("served_by") or (hosts[0] if hosts else None)
        server_ids = context.get("server_ids") or {}
        return [
            OutboxCall(
                pool=self.name,
                action=SUCCESS_ACTION,
                payload={
                    "trackid": int(context["trackid"]),
                    "serverid": server_ids.get(host) if host else None,
                    "dl_token": str(context["dl_token"]),
                    "server": host,
                },
            )
        ]

    async def deliver(self, call: OutboxCall) -> None:
        """`POST /download/success` (trackid, serverid, dl_token); replaying it is harmless."""
        if call.action != SUCCESS_ACTION:
            raise Unsupported(f"{self.name}: no outbox action {call.action!r}")
        payload = call.payload
        track_id = wire.parse_track_id(str(payload["trackid"]))
        server_id = payload.get("serverid")
        if server_id is None:
            # The plan was made without the server list: look the id up now.
            servers = await self._servers(track_id)
            ids = [sid for host, sid in servers if host == payload.get("server") and sid]
            ids += [sid for _, sid in servers if sid is not None]
            if not ids:
                raise ProtocolError(f"{self.name}: no server id to acknowledge {track_id} with")
            server_id = ids[0]
        answer = await self._call(
            "POST",
            self.SUCCESS_PATH,
            data={"trackid": track_id, "serverid": str(server_id), "dl_token": payload["dl_token"]},
            idempotent=True,  # the outbox replays it after a crash anyway
        )
        self._raise_for(answer, f"download success for {track_id}")
        held = self._answers.get(track_id)
        if held is not None and str(held.get("dl_token")) == str(payload["dl_token"]):
            # That entry has left the pool's queue: a later request queues the track afresh.
            del self._answers[track_id]
            await self.save_state()

    async def redownload(self, item_ids: list[str], reason: str) -> str:
        """`POST /download/redownload_request` (docs/pools/promoonly.md §6): scarce, only on the
        user's word."""
        if not reason or not reason.strip():
            raise BadRequest(f"{self.name}: a redownload needs a written reason")
        ids = [wire.parse_track_id(item) for item in item_ids]
        if not ids:
            raise BadRequest(f"{self.name}: a redownload needs at least one track")
        answer = await self._call(
            "POST",
            self.REDOWNLOAD_PATH,
            data={"trackid_list": ",".join(ids), "reason": reason.strip()},
            idempotent=False,  # docs/reliability.md §0: never spent twice on a lost answer
        )
        said = wire.result_text(answer.body)
        if 400 <= answer.status < 500 and answer.status not in (403, 404):
            raise Conflict(
                f"{self.name}: redownload of {', '.join(ids)} refused: "
                f"{said or f'HTTP {answer.status}'} (only tracks downloaded before)"
            )
        self._raise_for(answer, "redownload request")
        fields = wire.as_object(answer.body, f"{self.name}: redownload request")
        result = text_or_none(fields.get("result")) or text_or_none(fields.get("Result")) or ""
        requeued = whole_number_or_none(fields.get("tracks_requeued")) or 0
        if result.lower() != "success" or requeued <= 0:
            raise Conflict(
                f"{self.name}: redownload of {', '.join(ids)} refused: {result or 'no result'}, "
                f"{requeued} requeued (only tracks downloaded before)"
            )
        return f"{requeued} of {len(ids)} track(s) requeued for download"

    # -- plumbing -----------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        signed: bool = True,
        idempotent: bool | None = None,
        endpoint: str | None = None,
        also_ok: frozenset[int] = frozenset(),
    ) -> Answer:
        """One API call; 4xx answers come back so `_raise_for` can word them with `Result`."""
        return await self.http.call(
            method,
            self._base + path,
            data=data,
            headers=headers,
            auth=self._auth if signed else None,
            idempotent=idempotent,
            endpoint=endpoint or path.strip("/"),
            ok=_ANSWERED | also_ok,
        )

    def _raise_for(self, answer: Answer, what: str) -> None:
        """Raise the error vocabulary's class for a 4xx answer, in the pool's own words."""
        status = answer.status
        if 200 <= status < 300:
            return
        said = wire.result_text(answer.body)
        message = f"{self.name}: {what}: HTTP {status}" + (f": {said}" if said else "")
        if status == 403:
            # docs/pools/promoonly.md §3: "downloads will be denied to users that do not have
            # access".
            raise AccountError(message)
        if status == 404:
            raise NotFound(message)
        if status == 401:
            raise TokenExpired(message)
        raise ProtocolError(message)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
