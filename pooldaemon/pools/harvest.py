"""Harvest Media (docs/pools/harvest.md, docs/interface.md §6): the token chain, polled lists,
multi-part ZIP downloads.

Only Harvest's URLs, fields and token rules live here; both wires are read into
one shape by `pools/harvest_wire.py`, retries and HTTP errors are `pools/http.py`'s. Every answer
is checked for Harvest's error envelope, which usually arrives with HTTP 200. Records are read
into tracks by `harvest_wire.read_track`. What is left (~880 lines) is one concept, the account's
protocol: every call needs the service and member tokens, and paging, queue and downloads share
them, so splitting it further would split that token chain.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol
from urllib.parse import quote, urlsplit

from pydantic import SecretStr

from pooldaemon.errors import (
    AccountError,
    AuthError,
    BadRequest,
    IncompleteAnswer,
    NotFound,
    ProtocolError,
    TokenExpired,
    Unsupported,
)
from pooldaemon.log import get_logger, redact_text
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
from pooldaemon.pools import harvest_wire as wire
from pooldaemon.pools.base import Capability, Clock, PoolAdapter, PoolSettings, secret_text
from pooldaemon.pools.fields import Quarantined, track_meta, whole_number_or_none
from pooldaemon.pools.http import PoolHttp, TokenKeeper

log = get_logger(__name__)

#: docs/pools/harvest.md: `<error><code>5</code><description>Invalid Token</description>`;
#: docs/interface.md §6 adds 21. Both mean "renew the tokens and retry once".
TOKEN_CODES = frozenset({5, 21})
#: docs/interface.md §6: downloads not allowed or limit reached – final, shown in `poolctl status`.
BLOCK_REASONS: dict[int, str] = {
    12: "downloads not allowed",
    13: "downloads not allowed",
    14: "download limit reached",
    18: "downloads not allowed",
}
#: docs/pools/harvest.md: download tokens "have a very brief expiry time"; no figure is given, so a
#: plan's sources are taken to last this long (the engine asks again when the host refuses one).
DOWNLOAD_TOKEN_LIFETIME_S = 300.0
#: Renew account tokens this long before their expiry.
RENEW_MARGIN_S = 60.0
#: An expiry closer than this is not believed (clock skew, docs/reliability.md T4): a refusal
#: decides.
_MIN_BELIEVED_S = 90.0
#: docs/pools/harvest.md: "Favorites uses myfavourites.zip".
FAVOURITES_NAME = "myfavourites"
_ACCEPT = {"json": "application/json", "xml": "application/xml"}
_PLACEHOLDER = re.compile(r"\{downloadtoken\}", re.IGNORECASE)
#: Formats a config may name, and the file extensions getserviceinfo lists for each.
_FORMAT_EXTENSIONS = {"mp3": ("mp3",), "wav": ("wav", "wave"), "aiff": ("aiff", "aif")}
#: Safety stop for paging: Harvest's lists are a member's, not a whole catalog.
_MAX_ITEMS = 100_000

TokenUse = Literal["service", "member"] | None


class HarvestBlocked(AccountError):
    """Harvest refused downloads for this account (codes 12, 13, 14, 18): final until the user
    acts. The daemon records `reason` with store/pools.set_blocked; `poolctl status` shows it."""

    blocked = True

    def __init__(self, pool: str, harvest_code: int, description: str) -> None:
        self.harvest_code = harvest_code
        self.reason = BLOCK_REASONS.get(harvest_code, "downloads not allowed")
        self.description = description
        said = f": {description}" if description else ""
        super().__init__(
            f"{pool}: downloads stopped: {self.reason} (Harvest error {harvest_code}{said})",
            detail={"harvest_code": harvest_code, "reason": self.reason, "blocked": True},
        )


@dataclass(frozen=True, slots=True)
class ServiceInfo:
    """What getserviceinfo says: the download URL template and the file formats."""

    download_url: str
    #: (format ID, file extension, bitrate or None) as listed.
    formats: tuple[tuple[str, str, int | None], ...]
    fetched_at: float


class HarvestSettings(PoolSettings, Protocol):
    """What the adapter reads of its `[pools.<name>]` section (config.HarvestConfig): client
    credentials or a service token (config.py requires one of the two), and the member login."""

    @property
    def base_url(self) -> str: ...
    @property
    def auth_url(self) -> str: ...
    @property
    def client_id(self) -> str | None: ...
    @property
    def client_secret(self) -> SecretStr | None: ...
    @property
    def access_key(self) -> SecretStr | None: ...
    @property
    def service_token(self) -> SecretStr | None: ...
    @property
    def username(self) -> str: ...
    @property
    def password(self) -> SecretStr: ...
    @property
    def format(self) -> str: ...
    @property
    def wire(self) -> wire.Wire: ...
    @property
    def auto_download_from(self) -> tuple[str, ...]: ...


class HarvestAdapter(PoolAdapter):
    """A Harvest Media member account (service via OAuth client credentials or a fixed token)."""

    type_name: ClassVar[str] = "harvest"
    # No redownload endpoint (a plain download again), no queue editing, no lookups.
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.CATALOG, Capability.QUEUE}
    )
    kinds: ClassVar[tuple[str, ...]] = ("track", "playlist", "album", "favourites")
    #: The "catalog" is a window (latest albums, playlists, favourites, history), not the whole
    #: library: a track leaving it is not removed from the pool, so sync must not mark it so.
    catalog_window: ClassVar[bool] = True
    config: HarvestSettings

    def __init__(
        self,
        name: str,
        config: HarvestSettings,
        http: PoolHttp,
        clock: Clock = time.time,
        *,
        page_size: int = 100,
        latest_top: int = 25,
        catalog_page_size: int = 500,
        download_token_lifetime_s: float = DOWNLOAD_TOKEN_LIFETIME_S,
        service_info_ttl_s: float = 3600.0,
    ) -> None:
        super().__init__(name, config, http, clock)
        self.base_url = config.base_url.rstrip("/")
        self.wire: wire.Wire = config.wire
        self.page_size = page_size
        self.latest_top = latest_top
        self.catalog_page_size = catalog_page_size
        self.download_token_lifetime_s = download_token_lifetime_s
        self.service_info_ttl_s = service_info_ttl_s
        self._fixed_service = config.service_token is not None
        self._service = TokenKeeper(self._fetch_service_token)
        if self._fixed_service:
            # docs/interface.md §2: a service token handed out by the pool; it cannot be renewed.
            self._service.set(secret_text(config.service_token), None)
        self._member = TokenKeeper(self._fetch_member_token)
        self._persistent: str | None = None
        self._info: ServiceInfo | None = None
        #: (kind, id) → name of albums and playlists seen in polls, for download folder names.
        self._names: dict[tuple[str, str], str] = {}
        #: Tracks seen in lists, by id: a single track's plan carries its fields (names, tags).
        self._tracks: dict[str, Track] = {}

    # -- state kept across restarts ------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The persistent login token (and live tokens), so a restart needs no password login."""
        state: dict[str, Any] = {}
        if self._persistent:
            state["persistent_login_token"] = self._persistent
        if self._member.value is not None:
            state["member_token"] = self._member.value
            state["member_expires_at"] = self._member.expires_at
        if not self._fixed_service and self._service.value is not None:
            state["service_token"] = self._service.value
            state["service_expires_at"] = self._service.expires_at
        return state

    def restore_state(self, state: Mapping[str, Any]) -> None:
        persistent = state.get("persistent_login_token")
        if isinstance(persistent, str) and persistent:
            self._persistent = persistent
        now = self.clock()
        for keeper, key in ((self._member, "member"), (self._service, "service")):
            if key == "service" and self._fixed_service:
                continue
            value, expires_at = state.get(f"{key}_token"), state.get(f"{key}_expires_at")
            if not isinstance(value, str) or not value:
                continue
            if isinstance(expires_at, int | float) and expires_at <= now + RENEW_MARGIN_S:
                continue  # expired while we were down: the next call renews it
            keeper.set(value, float(expires_at) if isinstance(expires_at, int | float) else None)

    # -- tokens ---------------------------------------------------------------------------------

    async def sign_in(self) -> None:
        """Fresh service and member tokens (the chain from the top)."""
        if not self._fixed_service:
            await self._service.renew(self._service.generation)
        await self._member.renew(self._member.generation)

    def token_expires_at(self) -> float | None:
        known = [t for t in (self._service.expires_at, self._member.expires_at) if t is not None]
        return min(known) if known else None

    async def renew(self) -> None:
        """Renew ahead of expiry: the service token when due, the member token always (with the
        persistent login token, so no password goes over the wire)."""
        now = self.clock()
        due = self._service.expires_at
        if not self._fixed_service and (
            self._service.value is None or (due is not None and now >= due - 2 * RENEW_MARGIN_S)
        ):
            await self._service.renew(self._service.generation)
        await self._member.renew(self._member.generation)

    async def _access_token(self) -> str:
        """OAuth client credentials → access_token (docs/interface.md §6)."""
        try:
            answer = await self.http.call(
                "POST",
                self.config.auth_url,
                data={
                    "grant_type": "client_credentials",
                    "client_id": self.config.client_id,
                    "client_secret": secret_text(self.config.client_secret),
                },
                headers={"Accept": "application/json"},
                # Asking for a token changes nothing on the pool: safe to retry.
                idempotent=True,
                decode="json",
                endpoint="oauth2/token",
            )
        except (TokenExpired, ProtocolError, NotFound) as err:
            raise AuthError(f"{self.name}: client credentials refused: {err.message}") from err
        body = answer.body
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token.strip():
            raise AuthError(f"{self.name}: the OAuth answer has no access_token")
        return token.strip()

    async def _fetch_service_token(self) -> tuple[str, float | None]:
        """TokenKeeper's fetch: OAuth access token → getservicetoken."""
        if self._fixed_service:
            raise AuthError(
                f"{self.name}: the configured service_token was refused; a configured token "
                "cannot be renewed, so set a new one or give client_id, client_secret and "
                "access_key"
            )
        access = await self._access_token()
        body = await self._api(
            "GET",
            "getservicetoken",
            token=None,
            headers={
                "Authorization": f"Bearer {access}",
                "AccessKey": secret_text(self.config.access_key),
            },
            sign_in=True,
        )
        value, expires_at = self._token(body, "token", "getservicetoken")
        log.info("harvest.service_token", pool=self.name, expires_at=expires_at)
        return value, expires_at

    async def _fetch_member_token(self) -> tuple[str, float | None]:
        """TokenKeeper's fetch: the persistent login token if we hold one, else the password."""
        if self._persistent:
            try:
                body = await self._api(
                    "POST",
                    "validatepersistentlogintoken",
                    token="service",
                    fields={"PersistentLoginToken": self._persistent},
                    root="requestpersistentlogin",
                    idempotent=True,
                    sign_in=True,
                )
                return self._take_member(body, "validatepersistentlogintoken")
            except (AuthError, ProtocolError, NotFound) as err:
                # The persistent login has lapsed or was revoked: log in with the password.
                log.info("harvest.persistent_login_refused", pool=self.name, error=err.message)
                self._persistent = None
        body = await self._api(
            "POST",
            "getmembertoken",
            token="service",
            fields={
                "UserName": self.config.username,
                "Password": secret_text(self.config.password),
                "PersistentLogin": True,
            },
            root="requestmembertoken",
            idempotent=True,
            sign_in=True,
        )
        return self._take_member(body, "getmembertoken")

    def _take_member(self, body: dict[str, Any], endpoint: str) -> tuple[str, float | None]:
        value, expires_at = self._token(body, "membertoken", endpoint)
        persistent = body.get("persistentlogintoken")
        if isinstance(persistent, dict):
            persistent = wire.first(persistent, "value", "token")
        persistent_text = wire.text(persistent)
        if persistent_text:
            self._persistent = persistent_text
        log.info("harvest.member_token", pool=self.name, via=endpoint, expires_at=expires_at)
        return value, expires_at

    def _token(self, body: dict[str, Any], key: str, endpoint: str) -> tuple[str, float | None]:
        """`Token{Value, Expiry, UTCOffset}` → (value, unix expiry); Expiry is local wall-clock
        time at UTCOffset hours (docs/interface.md §6)."""
        where = f"{self.name}: {endpoint}"
        record = body.get(key)
        if isinstance(record, str | int):
            record = {"value": record, **{k: v for k, v in body.items() if k != key}}
        if not isinstance(record, dict):
            raise ProtocolError(f"{where}: the answer has no {key}")
        value = wire.text(wire.first(record, "value", "tokenvalue", "token"))
        if not value or not wire.TOKEN_PATTERN.match(value):
            raise ProtocolError(f"{where}: the {key} has no usable value")
        try:
            offset = wire.parse_offset(wire.first(record, "utcoffset"))
            if offset is None:
                offset = wire.parse_offset(wire.first(body, "utcoffset"))
            raw_expiry = wire.first(record, "expiry", "expires", "expirydate")
            expires_at = None if raw_expiry is None else wire.parse_expiry(raw_expiry, offset)
        except ProtocolError as err:
            raise ProtocolError(f"{where}: {err.message}") from err
        if expires_at is not None and expires_at < self.clock() + _MIN_BELIEVED_S:
            # docs/reliability.md T4: the expiry is a hint; an implausible one is ignored and the
            # server's refusal (codes 5 and 21) decides.
            log.warning(
                "harvest.expiry_ignored", pool=self.name, endpoint=endpoint, expires_at=expires_at
            )
            expires_at = None
        return value, expires_at

    # -- calls ----------------------------------------------------------------------------------

    async def _api(
        self,
        method: str,
        name: str,
        *,
        token: TokenUse,
        suffix: str = "",
        params: Mapping[str, Any] | None = None,
        fields: Mapping[str, Any] | None = None,
        root: str = "request",
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
        member_in_body: bool = False,
        sign_in: bool = False,
    ) -> dict[str, Any]:
        """One service call: tokens in the path (and body), the error envelope checked on every
        answer, tokens renewed and the call retried once on codes 5 and 21."""
        where = f"{self.name}: {name}"
        renewed = False
        while True:
            service_gen = member_gen = -1
            service = member = None
            if token is not None or member_in_body:
                service = await self._service.get(now=self.clock(), margin_s=RENEW_MARGIN_S)
                service_gen = self._service.generation
            if token == "member" or member_in_body:
                member = await self._member.get(now=self.clock(), margin_s=RENEW_MARGIN_S)
                member_gen = self._member.generation
            path_token = member if token == "member" else service if token == "service" else None
            url = f"{self.base_url}/{name}"
            if path_token is not None:
                url += "/" + quote(path_token, safe="")
            url += suffix
            all_headers = {"Accept": _ACCEPT[self.wire], **(headers or {})}
            data: bytes | None = None
            if fields is not None or member_in_body:
                body_fields: dict[str, Any] = {}
                if member_in_body:
                    # docs/pools/harvest.md's XML form: service token in the path, `<membertoken>`
                    # first.
                    body_fields["MemberToken"] = member
                body_fields.update(fields or {})
                data, content_type = wire.encode(root, body_fields, self.wire)
                all_headers["Content-Type"] = content_type
            problem: tuple[int | str, str] | None
            try:
                answer = await self.http.call(
                    method,
                    url,
                    params=params,
                    data=data,
                    headers=all_headers,
                    idempotent=idempotent,
                    decode="text",
                    endpoint=name,
                )
                body = wire.decode(str(answer.body), self.wire, where)
                problem = wire.error_of(body)
            except TokenExpired as err:
                # HTTP 401/403: the same as Harvest's own "invalid token".
                problem = ("HTTP", err.message)
            if problem is None:
                return body
            code, description = problem
            description = redact_text(description)[:300]
            if isinstance(code, int) and code in BLOCK_REASONS:
                raise HarvestBlocked(self.name, code, description)
            if code in TOKEN_CODES or code == "HTTP":
                if token is None and not member_in_body:
                    raise AuthError(f"{where}: credentials refused ({_said(code, description)})")
                if renewed:
                    raise AuthError(
                        f"{where}: tokens refused again after renewing them "
                        f"({_said(code, description)})"
                    )
                renewed = True
                if member_gen >= 0:
                    await self._member.renew(member_gen)
                else:
                    await self._service.renew(service_gen)
                continue
            if sign_in:
                raise AuthError(f"{where}: sign-in refused ({_said(code, description)})")
            raise ProtocolError(f"{where}: {_said(code, description)}")

    async def _paged(
        self,
        name: str,
        *,
        list_names: tuple[str, ...],
        singular: str,
        suffix: str = "",
        params: Mapping[str, Any] | None = None,
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Every item of a list paged with Skip/Limit, and the first answer's holder object."""
        items: list[dict[str, Any]] = []
        seen: set[str] = set()
        holder: dict[str, Any] | None = None
        total: int | None = None
        where = f"{self.name}: {name}"
        while True:
            query = {**(params or {}), "Skip": len(items), "Limit": self.page_size}
            body = await self._api("GET", name, token="member", suffix=suffix, params=query)
            found, page_holder = wire.find_list(body, list_names, singular, where)
            if holder is None:
                holder = page_holder
            count = whole_number_or_none(
                wire.first(page_holder, "totalcount", "total", "totalrecords")
            )
            if count is None:
                count = whole_number_or_none(
                    wire.first(body, "totalcount", "total", "totalrecords")
                )
            total = count if count is not None else total
            page_ids = [i for i in wire.ids(found) if i]
            if found and page_ids and all(i in seen for i in page_ids):
                raise ProtocolError(f"{where}: the same page came back (Skip ignored?)")
            seen.update(page_ids)
            items.extend(found)
            if len(found) < self.page_size or (total is not None and len(items) >= total):
                break
            if len(items) > _MAX_ITEMS:
                raise ProtocolError(f"{where}: more than {_MAX_ITEMS} items; refusing to go on")
        if total is not None and len(items) != total:
            raise IncompleteAnswer(f"{where}: listed {len(items)} of {total} items")
        return items, holder or {}

    # -- polled lists ---------------------------------------------------------------------------

    async def favourites(self) -> list[dict[str, Any]]:
        """`GET /getfavourites/{memberToken}`: the member's favourite tracks."""
        items, _ = await self._paged("getfavourites", list_names=("tracks",), singular="track")
        return items

    async def playlists(self) -> list[dict[str, Any]]:
        """`GET /getmemberplaylistsnotracks/{memberToken}`: the member's playlists."""
        items, _ = await self._paged(
            "getmemberplaylistsnotracks", list_names=("playlists",), singular="playlist"
        )
        for playlist in items:
            ident, name = wire.text(wire.first(playlist, "id")), wire.title(playlist)
            if ident and name:
                self._names[("playlist", ident)] = name
        return items

    async def playlist(self, playlist_id: str) -> tuple[str | None, list[dict[str, Any]]]:
        """`GET /getmemberplaylist/{memberToken}/{PlaylistID}?returntracks=true`: name, tracks."""
        items, holder = await self._paged(
            "getmemberplaylist",
            list_names=("tracks",),
            singular="track",
            suffix="/" + quote(playlist_id, safe=""),
            params={"returntracks": "true"},
        )
        name = wire.title(holder)
        if name:
            self._names[("playlist", playlist_id)] = name
        return name, items

    async def latest_albums(self) -> list[dict[str, Any]]:
        """`GET /getlatestalbums/{memberToken}/{Top}`: the newest albums, with their tracks."""
        items, _ = await self._paged(
            "getlatestalbums",
            list_names=("albums",),
            singular="album",
            suffix=f"/{int(self.latest_top)}",
        )
        for album in items:
            ident, name = wire.text(wire.first(album, "id")), wire.title(album)
            if ident and name:
                self._names[("album", ident)] = name
        return items

    async def download_history(self) -> list[dict[str, Any]]:
        """`GET /getdownloadhistorybymembertoken/{memberToken}`: what the member downloaded."""
        items, _ = await self._paged(
            "getdownloadhistorybymembertoken",
            list_names=("downloadhistory", "downloads", "history"),
            singular="download",
        )
        return items

    # -- catalog and queue ----------------------------------------------------------------------

    def track(
        self,
        record: Any,
        *,
        album: Mapping[str, Any] | None = None,
        downloaded: bool | None = None,
    ) -> Track:
        """A Harvest track record (either wire) as a Track; Quarantined when it has no id."""
        track = wire.read_track(self.name, record, album=album, downloaded=downloaded)
        if track.title:
            # A single-track download's folder is named after it, not its opaque id.
            label = f"{track.artist} - {track.title}" if track.artist else track.title
            self._names[("track", track.id)] = label
            self._tracks[track.id] = track
        return track

    async def catalog(
        self, since: float | None = None, offload: Offload = INLINE
    ) -> AsyncIterator[CatalogPage]:
        """Tracks of the latest albums, the member's playlists and favourites, and the download
        history (marked downloaded), for the mirror and offline search. `since` is not used:
        Harvest lists cannot be read "changed since", and they are small (nothing to offload)."""
        tracks: dict[str, Track] = {}
        quarantined: list[str] = []

        def add(records: Iterable[Any], **kwargs: Any) -> None:
            for record in records:
                try:
                    track = self.track(record, **kwargs)
                except Quarantined as err:
                    quarantined.append(wire.record_id(record))
                    log.warning("harvest.record_quarantined", pool=self.name, reason=str(err))
                    continue
                known = tracks.get(track.id)
                if known is not None and track.downloaded:
                    track = dataclasses.replace(known, downloaded=True)
                elif known is not None:
                    continue
                tracks[track.id] = track

        albums = await self.latest_albums()
        if not albums:
            # A library always has albums: an empty list is a failed answer, never data.
            raise IncompleteAnswer(f"{self.name}: getlatestalbums listed no albums")
        for album in albums:
            add(wire.as_list(album.get("tracks"), "track"), album=album)
        for playlist in await self.playlists():
            ident = wire.text(wire.first(playlist, "id"))
            if ident:
                _, records = await self.playlist(ident)
                add(records)
        add(await self.favourites())
        add(
            [wire.history_track(entry) for entry in await self.download_history()],
            downloaded=True,
        )
        ordered = list(tracks.values())
        size = max(1, self.catalog_page_size)
        pages = max(1, -(-len(ordered) // size))
        for index in range(pages):
            yield CatalogPage(
                tracks=ordered[index * size : (index + 1) * size],
                page=index + 1,
                pages=pages,
                total=len(ordered),
                quarantined=tuple(quarantined) if index == 0 else (),
            )

    async def remote_queue(self) -> list[QueueItem]:
        """docs/interface.md §2 `auto_download_from`: favourites and named playlists give track
        items, "latest" gives album items; an item in several sources is listed once."""
        items: dict[tuple[str, str], QueueItem] = {}

        def add(item: QueueItem, source: str) -> None:
            key = (item.kind, item.item_id)
            if key in items:
                items[key].extra.setdefault("sources", []).append(source)
            else:
                item.extra["sources"] = [source]
                items[key] = item

        for source in self.config.auto_download_from:
            if source == "favourites":
                for record in await self.favourites():
                    if (item := self._track_item(record)) is not None:
                        add(item, source)
            elif source == "latest":
                for album in await self.latest_albums():
                    if (item := self._album_item(album)) is not None:
                        add(item, source)
            elif source.startswith("playlist:"):
                try:
                    _, records = await self.playlist(source.partition(":")[2])
                except (ProtocolError, NotFound) as err:
                    # Name the config entry: the user may have a stale playlist id there.
                    raise type(err)(
                        f'{err.message} (auto_download_from "{source}")', detail=err.detail
                    ) from err
                for record in records:
                    if (item := self._track_item(record)) is not None:
                        add(item, source)
            else:  # config.py refuses anything else; a newer config must not crash us
                log.warning("harvest.unknown_queue_source", pool=self.name, source=source)
        return list(items.values())

    def _track_item(self, record: Any) -> QueueItem | None:
        try:
            track = self.track(record)
        except Quarantined as err:
            log.warning("harvest.queue_record_skipped", pool=self.name, reason=str(err))
            return None
        extra: dict[str, Any] = {}
        album_id = wire.text(wire.first(record, "albumid"))
        if album_id:
            extra["album_id"] = album_id
        added = wire.text(wire.first(record, "dateadded", "datefavourited", "datecreated"))
        return QueueItem(
            pool=self.name,
            item_id=track.id,
            kind="track",
            queued_at=added,
            track=track,
            extra=extra,
        )

    def _album_item(self, album: Mapping[str, Any]) -> QueueItem | None:
        ident = wire.text(wire.first(album, "id", "albumid"))
        if not ident or not wire.ID_PATTERN.match(ident):
            log.warning("harvest.queue_album_skipped", pool=self.name, album=str(ident)[:40])
            return None
        name = wire.title(album)
        date = wire.day(wire.first(album, "releasedate", "datereleased"))
        # A stand-in Track so job titles and `poolctl queue` have something to show.
        shown = Track(
            pool=self.name,
            id=ident,
            artist=wire.text(wire.first(album, "artist", "artistname", "libraryname")),
            title=name,
            genre=wire.genre(wire.first(album, "genre", "genres")),
            date=date,
            audio=True,
            video=False,
        )
        extra: dict[str, Any] = {"name": name} if name else {}
        return QueueItem(
            pool=self.name, item_id=ident, kind="album", queued_at=date, track=shown, extra=extra
        )

    # -- downloads ------------------------------------------------------------------------------

    async def service_info(self, *, refresh: bool = False) -> ServiceInfo:
        """`GET /getserviceinfo/{serviceToken}`: DirectDownloadURL and FileFormats (cached)."""
        now = self.clock()
        if (
            not refresh
            and self._info is not None
            and now - self._info.fetched_at < self.service_info_ttl_s
        ):
            return self._info
        where = f"{self.name}: getserviceinfo"
        body = await self._api("GET", "getserviceinfo", token="service")
        # docs/interface.md §6: ServiceInfoURLs.DirectDownloadURL; docs/pools/harvest.md calls it
        # AssetUrls.
        urls = wire.first(body, "serviceinfourls", "asseturls", "asseturl")
        template = (
            wire.text(wire.first(urls, "directdownloadurl")) if isinstance(urls, dict) else None
        )
        template = template or wire.text(wire.first(body, "directdownloadurl"))
        if not template:
            raise ProtocolError(f"{where}: no DirectDownloadURL")
        if not _PLACEHOLDER.search(template):
            raise ProtocolError(f"{where}: DirectDownloadURL has no {{downloadtoken}}")
        if urlsplit(template).scheme not in ("http", "https"):
            raise ProtocolError(f"{where}: DirectDownloadURL is not an http(s) URL")
        formats: list[tuple[str, str, int | None]] = []
        listed = wire.first(body, "fileformats", "trackformats", "formats")
        for record in wire.as_list(listed, "fileformat"):
            if not isinstance(record, dict):
                continue
            ident = wire.text(wire.first(record, "id", "identifier", "formatid"))
            extension = wire.text(wire.first(record, "fileextension", "extension")) or ""
            if ident:
                bitrate = wire.number(wire.first(record, "bitrate"))
                formats.append((ident, extension.lower().lstrip("."), bitrate))
        self._info = ServiceInfo(download_url=template, formats=tuple(formats), fetched_at=now)
        return self._info

    def format_id(self, info: ServiceInfo) -> str:
        """docs/interface.md §2 `format`: mp3/wav/aiff → the best listed format ID; an ID as
        given."""
        wanted = self.config.format
        extensions = _FORMAT_EXTENSIONS.get(wanted.lower())
        if extensions is None:
            if not any(ident == wanted for ident, _, _ in info.formats):
                log.warning("harvest.format_not_listed", pool=self.name, format=wanted)
            return wanted
        matching = [f for f in info.formats if f[1] in extensions]
        if not matching:
            # docs/pools/harvest.md: "mp3", "wav" or "aiff" may be sent instead of an ID ("the best
            # available formats for these types").
            log.warning("harvest.format_by_name", pool=self.name, format=wanted)
            return wanted
        return max(matching, key=lambda f: f[2] or 0)[0]

    async def plan(self, request: Request, known: QueueItem | None = None) -> DownloadPlan:
        """`POST /getmusicdownload`: one ZIP part per token, or "sent by e-mail"."""
        if request.kind not in self.kinds:
            raise Unsupported(f"{self.name}: cannot download a {request.kind}")
        if request.kind != "favourites" and not request.item_id:
            raise BadRequest(f"{self.name}: a {request.kind} download needs an id")
        name = await self._package_name(request, known)
        return await self._request_download(request, name)

    async def renew_plan(self, plan: DownloadPlan, part_key: str | None = None) -> DownloadPlan:
        """Ask again for fresh tokens (docs/pools/harvest.md: they expire within minutes). The part
        keys stay "1".."n" – but if the pool now splits the package differently the new plan has
        another number of parts, and the engine must restart the set (docs/reliability.md T5)."""
        item_id = plan.item_id or None
        request = Request(plan.pool, None if plan.kind == "favourites" else item_id, plan.kind)
        name = plan.name or await self._package_name(request, None)
        fresh = await self._request_download(request, name)
        if not fresh.sent_by_email and len(fresh.parts) != len(plan.parts):
            log.warning(
                "harvest.split_changed",
                pool=self.name,
                item=plan.item_id,
                parts_before=len(plan.parts),
                parts_now=len(fresh.parts),
            )
        return fresh

    async def redownload(self, item_ids: list[str], reason: str) -> str:
        # Harvest has no redownload request: downloading again is a plain download.
        return f"{self.name} needs no redownload request; the download is requested again"

    async def _package_name(self, request: Request, known: QueueItem | None) -> str:
        """docs/interface.md §5 `download_dir/<pool>/<download name>/`: the playlist or album name,
        "myfavourites", or the track id."""
        if request.kind == "favourites":
            return FAVOURITES_NAME
        ident = str(request.item_id)
        if request.kind == "track":
            return self._names.get(("track", ident), ident)
        name = known.extra.get("name") if known is not None else None
        if not isinstance(name, str) or not name:
            name = self._names.get((request.kind, ident))
        if name is None:
            # Not seen by a poll yet: read the list that names it (an album outside the latest
            # ones keeps its id as the folder name).
            await (self.playlists() if request.kind == "playlist" else self.latest_albums())
            name = self._names.get((request.kind, ident))
        return name or ident

    def _track_meta(self, ident: str) -> dict[str, Any]:
        """A track's fields from the lists already read; {} when none listed it (the
        downloader then reads artist and title from the file's name in the archive)."""
        return track_meta(self._tracks.get(ident))

    async def _request_download(self, request: Request, name: str) -> DownloadPlan:
        info = await self.service_info()
        format_id = self.format_id(info)
        fields = {
            "DownloadType": request.kind,
            "Identifier": request.item_id or "",  # favourites: none means all of them
            "Format": format_id,
            "TrimStartSecs": 0,
            "TrimEndSecs": 0,
            "IsShare": False,
            "ForceEmail": False,
            "IncludeVersions": False,
            "DownloadFileName": name,
        }
        xml = self.wire == "xml"
        body = await self._api(
            "POST",
            "getmusicdownload",
            # docs/pools/harvest.md's XML form: service token in the path, member token in the body.
            token="service" if xml else "member",
            member_in_body=xml,
            fields=fields,
            root="downloadextended",
            # Each request may count against the member's limit: never repeated blindly.
            idempotent=False,
        )
        return self._plan_from(request, body, info, format_id, name)

    def _plan_from(
        self,
        request: Request,
        body: dict[str, Any],
        info: ServiceInfo,
        format_id: str,
        name: str,
    ) -> DownloadPlan:
        where = f"{self.name}: getmusicdownload"
        sent = wire.as_bool(wire.first(body, "requestsent"), "RequestSent")
        identifier = request.item_id or ""

        def made(parts: list[PlanPart], context: dict[str, Any]) -> DownloadPlan:
            return DownloadPlan(
                pool=self.name,
                item_id=identifier,
                kind=request.kind,
                format=self.config.format,
                parts=parts,
                # A single track lands like any other pool's (docs/interface.md §9): its fields
                # name and tag it. A set's meta titles the job with the set's name.
                meta={"id": identifier, "kind": request.kind}
                | (self._track_meta(identifier) if request.kind == "track" else {"title": name}),
                archive=True,
                name=name,
                context={"identifier": identifier, "format_id": format_id, **context},
                sent_by_email=sent,
            )

        if sent:
            # docs/pools/harvest.md: "requestsent=true" – the member gets an e-mail; not a failure.
            return made([], {})
        tokens = wire.download_parts(
            wire.as_list(wire.first(body, "downloadtokens"), "downloadtoken"), where
        )
        expires_at = self.clock() + self.download_token_lifetime_s
        parts = []
        for number, token in tokens:
            url = _fill(info.download_url, token)
            parts.append(
                PlanPart(
                    key=str(number),
                    sources=[Source(url=url, server=urlsplit(url).netloc or self.name)],
                    extension="zip",
                    expires_at=expires_at,
                )
            )
        count = len(parts)
        # docs/reliability.md T5: the set is one package; another split is another package.
        package = f"{request.kind}:{identifier}:{format_id}:{count}"
        return made(parts, {"package": package, "part_count": count})


# -- helpers ------------------------------------------------------------------------------------


def _fill(template: str, token: str) -> str:
    """DirectDownloadURL with `{downloadtoken}` replaced (docs/pools/harvest.md: "merge each
    TokenValue")."""
    quoted = quote(token, safe="")
    return _PLACEHOLDER.sub(lambda _match: quoted, template)


def _said(code: int | str, description: str) -> str:
    if code == "HTTP":
        return description
    return f"Harvest error {code}" + (f": {description}" if description else "")
