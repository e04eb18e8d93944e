"""A Harvest Media simulator: docs/pools/harvest.md and docs/interface.md §6, on both wires, with
its download host.

Written from the documents alone (it never imports `pooldaemon.pools`). One aiohttp server plays
the OAuth host (`/oauth2/token`) and the service (`/HMP-WS.svc/...`, paths matched without
regard to case); a `DownloadServer` on its own port serves the ZIP parts at
`/download/{downloadtoken}`, the template getserviceinfo hands out.

`wire = "json"` answers with PascalCase JSON; `wire = "xml"` with docs/pools/harvest.md's lower-case
XML, its `<tokenvalue>` wrapped in newlines, `getmusicdownload` taking the service token in the path
and `<membertoken>` in the body. Errors come in the envelope with HTTP 200, as the pool document
shows.

Fault endpoints (for `sim.faults`, `match=`): "getservicetoken", "getmembertoken",
"validatepersistentlogintoken", "getserviceinfo", "getfavourites", "getmemberplaylistsnotracks",
"getmemberplaylist", "getlatestalbums", "getdownloadhistorybymembertoken", "getmusicdownload",
"oauth2/token"; the download host has its own `sim.download.faults` (endpoint "download").

One concept in ~800 lines: a single server whose endpoints all read and write the same token
book, member lists and packages. The wire rendering is `sim/harvest_wire.py`, the seeded
library `sim/harvest_library.py`, the tokens `sim/harvest_tokens.py`, the ZIP parts
`sim/archive.py`.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from aiohttp import web

from pooldaemon.sim.answer import api_response, fault_response, json_error, start_app
from pooldaemon.sim.archive import split_parts, zip_parts
from pooldaemon.sim.download import DownloadServer
from pooldaemon.sim.faults import API_KINDS, Faults
from pooldaemon.sim.harvest_library import (
    ARCHIVE_KINDS,
    EXTENSIONS,
    WORDS,
    Package,
    SimAlbum,
    SimPlaylist,
    SimTrack,
    hex_id,
    make_album,
    make_formats,
    package_entries,
)
from pooldaemon.sim.harvest_tokens import TokenBook
from pooldaemon.sim.harvest_wire import (
    HarvestError,
    Wire,
    decode_body,
    encode,
    oauth_error,
    zone,
)
from pooldaemon.sim.harvest_wire import content_type as wire_content_type
from pooldaemon.sim.media import MediaStore
from pooldaemon.sim.requestlog import RequestLog

__all__ = ["HarvestSim"]


SERVICE_PATH = "/HMP-WS.svc"
AUTH_PATH = "/oauth2/token"


@dataclass
class _Pending:
    code: int
    endpoint: str | None
    description: str | None
    count: int


@dataclass
class _Override:
    body: bytes
    content_type: str
    endpoint: str | None
    status: int


Handler = Callable[[web.Request, list[str], dict[str, Any]], Awaitable[dict[str, Any]]]


class HarvestSim:
    """Harvest Media on 127.0.0.1: OAuth, the service on either wire, and a download host."""

    def __init__(
        self,
        *,
        wire: Wire = "json",
        seed: str = "harvest",
        utc_offset_h: float = 10.0,
        albums: int = 8,
        tracks_per_album: int = 4,
        playlists: int = 2,
        favourites: int = 5,
        history: int = 2,
        mp3_size: int = 24_000,
        wav_size: int = 90_000,
        part_size_bytes: int = 200_000,
        service_token_lifetime_s: float = 24 * 3600.0,
        member_token_lifetime_s: float = 1800.0,
        access_token_lifetime_s: float = 3600.0,
        persistent_token_lifetime_s: float = 30 * 86400.0,
        download_token_lifetime_s: float = 120.0,
        expiry_style: Literal["iso", "netdate", "zoned"] = "iso",
        client_id: str = "pooldaemon-client",
        client_secret: str = "client-secret-1",
        access_key: str = "access-key-1",
        username: str = "dj@example.com",
        password: str = "correct horse",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.wire: Wire = wire
        self.seed = seed
        self.utc_offset_h = utc_offset_h
        self.mp3_size = mp3_size
        self.wav_size = wav_size
        self.part_size_bytes = part_size_bytes
        self.service_token_lifetime_s = service_token_lifetime_s
        self.member_token_lifetime_s = member_token_lifetime_s
        self.access_token_lifetime_s = access_token_lifetime_s
        self.persistent_token_lifetime_s = persistent_token_lifetime_s
        self.download_token_lifetime_s = download_token_lifetime_s
        self.expiry_style = expiry_style
        self.client_id = client_id
        self.client_secret = client_secret
        self.access_key = access_key
        self.username = username
        self.password = password
        self.host = host
        self.port = port
        self.faults = Faults()
        self.log = RequestLog()
        self.media = MediaStore()
        self.download = DownloadServer(
            self.media, self._resolve_download, path="/download/{token}", host=host
        )
        #: Every e-mail "sent" instead of tokens: (download type, identifier).
        self.emails: list[tuple[str, str]] = []
        #: Answer RequestSent=true to every getmusicdownload while set.
        self.send_by_email = False
        #: Spoil the next new package this way (then sticky for that download), see ARCHIVE_KINDS.
        self.next_archive_kind: str | None = None
        #: Split the next package into this many parts (then sticky for that download: T5).
        self.split_next: int | None = None
        #: Rewrite the next answer's (token, part) list (tests of part validation).
        self.mangle_parts_next: Callable[[list[tuple[str, int]]], list[tuple[str, int]]] | None
        self.mangle_parts_next = None
        self.packages: dict[str, Package] = {}
        self.last_package: Package | None = None
        #: Every getmusicdownload body received (lower-case keys), oldest first.
        self.download_requests: list[dict[str, Any]] = []
        self._offset_s = 0.0
        self._pending: list[_Pending] = []
        self._overrides: list[_Override] = []
        self.tokens = TokenBook(seed, self.clock)
        self._splits: dict[tuple[str, str, str], int] = {}
        self._archive_kinds: dict[tuple[str, str], str] = {}
        self._runner: web.AppRunner | None = None
        self._handlers: dict[str, Handler] = {
            "getservicetoken": self._service_token,
            "getmembertoken": self._member_token,
            "validatepersistentlogintoken": self._validate_persistent,
            "getserviceinfo": self._service_info,
            "getfavourites": self._favourites,
            "getmemberplaylistsnotracks": self._playlists,
            "getmemberplaylist": self._playlist,
            "getlatestalbums": self._latest_albums,
            "getdownloadhistorybymembertoken": self._history,
            "getmusicdownload": self._music_download,
        }
        self.formats = make_formats(seed)
        self.albums: list[SimAlbum] = [make_album(seed, i, tracks_per_album) for i in range(albums)]
        self.tracks: dict[str, SimTrack] = {t.id: t for a in self.albums for t in a.tracks}
        ids = list(self.tracks)
        rng = random.Random(f"{seed}:lists")
        self.playlists: list[SimPlaylist] = [
            SimPlaylist(
                id=hex_id(seed, "playlist", i),
                name=f"{rng.choice(WORDS)} {rng.choice(WORDS)} Mix {i + 1}",
                track_ids=rng.sample(ids, min(3, len(ids))),
                created="2024-03-01T09:00:00",
            )
            for i in range(playlists)
        ]
        self.favourite_ids: list[str] = rng.sample(ids, min(favourites, len(ids)))
        self.history: list[dict[str, Any]] = [
            {
                "DownloadDate": "2024-04-02T10:00:00",
                "DownloadType": "track",
                "Format": "mp3",
                "Track": self.tracks[track_id].record(),
            }
            for track_id in rng.sample(ids, min(history, len(ids)))
        ]

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> HarvestSim:
        """Listen (port 0: any free one) and start the download host."""
        await self.download.start()
        app = web.Application(client_max_size=1 << 20)
        app.router.add_post(AUTH_PATH, self._oauth)
        app.router.add_route("*", SERVICE_PATH + "/{tail:.*}", self._dispatch)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        self._runner, self.port = await start_app(app, self.host, self.port)
        return self

    async def close(self) -> None:
        """Stop both servers (stalled responses are released first)."""
        self.faults.release_stalls()
        await self.download.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> HarvestSim:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def base_url(self) -> str:
        """The service URL (docs/interface.md §2 `base_url`)."""
        return f"http://{self.host}:{self.port}{SERVICE_PATH}"

    @property
    def auth_url(self) -> str:
        """The OAuth token URL (docs/interface.md §2 `auth_url`)."""
        return f"http://{self.host}:{self.port}{AUTH_PATH}"

    @property
    def download_url(self) -> str:
        """getserviceinfo's DirectDownloadURL template."""
        return f"{self.download.base_url}/download/{{downloadtoken}}"

    def config(self, **overrides: Any) -> dict[str, Any]:
        """The `[pools.<name>]` table (as a dict) that points pooldaemon at this simulator."""
        table: dict[str, Any] = {
            "type": "harvest",
            "base_url": self.base_url,
            "auth_url": self.auth_url,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "access_key": self.access_key,
            "username": self.username,
            "password": self.password,
            "wire": self.wire,
        }
        table.update(overrides)
        return {k: v for k, v in table.items() if v is not None}

    def config_toml(self, name: str = "harvest") -> str:
        """The same table as TOML text."""
        lines = [f"[pools.{name}]"]
        for key, value in self.config().items():
            lines.append(f"{key} = {json.dumps(value)}")
        lines.append('auto_download_from = ["favourites"]')
        return "\n".join(lines) + "\n"

    # -- clock and tokens -----------------------------------------------------------------------

    def clock(self) -> float:
        """The simulator's now (epoch seconds): wall time plus whatever advance() added."""
        return time.time() + self._offset_s

    def advance(self, seconds: float) -> None:
        """Move the simulator's clock forward (token expiry)."""
        self._offset_s += seconds

    def local_expiry(self, unix: float) -> str | int | float:
        """`Expiry` as the pool writes it: wall-clock time at UTCOffset (or another style)."""
        if self.expiry_style == "netdate":
            return f"/Date({int(unix * 1000)}{zone(self.utc_offset_h, colon=False)})/"
        local = datetime.fromtimestamp(unix, UTC) + timedelta(hours=self.utc_offset_h)
        text = local.replace(tzinfo=None).isoformat(timespec="seconds")
        if self.expiry_style == "zoned":
            return text + zone(self.utc_offset_h, colon=True)
        return text

    def expire_service_tokens(self) -> None:
        """Every service token issued so far expires now (code 21 next time it is used)."""
        self.tokens.expire(self.tokens.service)

    def expire_member_tokens(self) -> None:
        """Every member token issued so far expires now."""
        self.tokens.expire(self.tokens.member)

    def revoke_member_tokens(self) -> None:
        """Forget every member token (code 5 next time one is used)."""
        self.tokens.member.clear()

    def revoke_persistent_tokens(self) -> None:
        """Forget every persistent login token (only the password works after this)."""
        self.tokens.persistent.clear()

    def expire_download_tokens(self) -> None:
        """Every download token handed out so far stops working."""
        self.tokens.expire_downloads()

    def token_expiry(self, token: str) -> float:
        """The true expiry (unix time) of a service, member or download token."""
        return self.tokens.expiry(token)

    def issue_service_token(self) -> str:
        """A service token as the pool would hand one out for `service_token` in the config."""
        token, _ = self.tokens.issue(self.tokens.service, "service", self.service_token_lifetime_s)
        return token

    @property
    def download_tokens(self) -> list[str]:
        """Download tokens handed out, oldest first."""
        return list(self.tokens.download)

    @property
    def member_tokens(self) -> list[str]:
        """Member tokens issued (and not revoked), oldest first."""
        return list(self.tokens.member)

    @property
    def service_tokens(self) -> list[str]:
        """Service tokens issued, oldest first."""
        return list(self.tokens.service)

    @property
    def persistent_tokens(self) -> list[str]:
        """Persistent login tokens that still work, oldest first."""
        return list(self.tokens.persistent)

    # -- switches for tests ---------------------------------------------------------------------

    def fail_next(
        self,
        code: int,
        endpoint: str | None = None,
        *,
        description: str | None = None,
        count: int = 1,
    ) -> None:
        """Answer the next `count` calls (of `endpoint`, or any) with error `code` in the
        envelope, HTTP 200 (docs/pools/harvest.md)."""
        self._pending.append(_Pending(code, endpoint and endpoint.lower(), description, count))

    def override_next(
        self,
        body: bytes | str,
        endpoint: str | None = None,
        *,
        content_type: str | None = None,
        status: int = 200,
    ) -> None:
        """Answer the next call (of `endpoint`, or any) with exactly `body` (DTDs, HTML, …)."""
        data = body.encode() if isinstance(body, str) else body
        ctype = content_type or wire_content_type(self.wire)
        self._overrides.append(_Override(data, ctype, endpoint and endpoint.lower(), status))

    def add_favourite(self, track_id: str) -> None:
        """Mark a track as the member's favourite (last in getfavourites)."""
        if track_id not in self.tracks:
            raise KeyError(track_id)
        if track_id not in self.favourite_ids:
            self.favourite_ids.append(track_id)

    def remove_favourite(self, track_id: str) -> None:
        """Take a track out of the member's favourites."""
        self.favourite_ids.remove(track_id)

    def add_album(self, tracks: int = 4) -> SimAlbum:
        """A new album released after every other one (first in getlatestalbums)."""
        album = make_album(
            self.seed, len(self.albums), tracks, after=self.albums[0] if self.albums else None
        )
        self.albums.insert(0, album)
        self.tracks.update({t.id: t for t in album.tracks})
        return album

    def album(self, album_id: str) -> SimAlbum:
        """The album with this id."""
        return next(a for a in self.albums if a.id == album_id)

    def playlist(self, playlist_id: str) -> SimPlaylist:
        """The member playlist with this id."""
        return next(p for p in self.playlists if p.id == playlist_id)

    def format_id(self, ext: str) -> str:
        """The best format ID listed for "mp3", "wav" or "aiff"."""
        matching = [f for f in self.formats if f["FileExtension"] == EXTENSIONS[ext]]
        return str(max(matching, key=lambda f: int(f["Bitrate"]))["ID"])

    def expected_entries(
        self, download_type: str, identifier: str, fmt: str = "mp3"
    ) -> dict[str, bytes]:
        """The files a download of this item holds (truth for extraction tests)."""
        ext = fmt if fmt in EXTENSIONS else self._format_ext(fmt)
        tracks = self._resolve_tracks(download_type, identifier)
        return self._entries(download_type, tracks, ext)

    def _entries(self, download_type: str, tracks: list[SimTrack], ext: str) -> dict[str, bytes]:
        return package_entries(
            download_type, tracks, ext, mp3_size=self.mp3_size, wav_size=self.wav_size
        )

    # -- the HTTP side --------------------------------------------------------------------------

    async def _not_found(self, request: web.Request) -> web.StreamResponse:
        self.log.record(request, "404")
        return json_error(404, "Endpoint not found.")

    async def _oauth(self, request: web.Request) -> web.StreamResponse:
        """RFC 6749 client credentials: form fields (or HTTP Basic) → access_token."""
        endpoint = "oauth2/token"
        self.log.record(request, endpoint)
        active = self.faults.select(endpoint, API_KINDS)
        early = await fault_response(request, self.faults, active)
        if early is not None:
            return early
        form = await request.post()
        fields = {k.lower(): str(v) for k, v in form.items()}
        if fields.get("grant_type") != "client_credentials":
            return oauth_error(400, "unsupported_grant_type")
        if fields.get("client_id") != self.client_id or (
            fields.get("client_secret") != self.client_secret
        ):
            return oauth_error(401, "invalid_client")
        token, _ = self.tokens.issue(self.tokens.access, "access", self.access_token_lifetime_s)
        body = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": int(self.access_token_lifetime_s),
        }
        return await api_response(request, self.faults, active, json.dumps(body).encode())

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        segments = [s for s in request.match_info["tail"].split("/") if s]
        name = segments[0].lower() if segments else ""
        handler = self._handlers.get(name)
        if handler is None:
            self.log.record(request, "404")
            return json_error(404, "Endpoint not found.")
        self.log.record(request, name)
        active = self.faults.select(name, API_KINDS)
        early = await fault_response(request, self.faults, active)
        if early is not None:
            return early
        override = self._take(self._overrides, name)
        if override is not None:
            return await api_response(
                request,
                self.faults,
                active,
                override.body,
                status=override.status,
                content_type=override.content_type,
            )
        try:
            pending = self._take_pending(name)
            if pending is not None:
                raise HarvestError(pending.code, pending.description)
            body = await self._body(request)
            payload = await handler(request, segments[1:], body)
        except HarvestError as err:
            payload = {"Error": {"Code": err.code, "Description": err.description}}
        return await api_response(
            request,
            self.faults,
            active,
            encode(self.wire, name, payload),
            content_type=wire_content_type(self.wire),
        )

    def _take(self, overrides: list[_Override], name: str) -> _Override | None:
        for index, override in enumerate(overrides):
            if override.endpoint in (None, name):
                return overrides.pop(index)
        return None

    def _take_pending(self, name: str) -> _Pending | None:
        for pending in self._pending:
            if pending.endpoint in (None, name):
                pending.count -= 1
                if pending.count <= 0:
                    self._pending.remove(pending)
                return pending
        return None

    async def _body(self, request: web.Request) -> dict[str, Any]:
        """A request body of either wire as a dict with lower-case keys."""
        if request.method != "POST" or not request.can_read_body:
            return {}
        return decode_body(await request.read())

    def _token_record(self, value: str, expires_at: float) -> dict[str, Any]:
        return {
            "Value": value,
            "Expiry": self.local_expiry(expires_at),
            "UTCOffset": self.utc_offset_h,
        }

    def _issue_member(self) -> dict[str, Any]:
        tokens = self.tokens
        token, expires_at = tokens.issue(
            tokens.member, "member", self.member_token_lifetime_s, self.username
        )
        persistent, _ = tokens.issue(
            tokens.persistent, "persistent", self.persistent_token_lifetime_s, self.username
        )
        return {
            "Member": {"ID": hex_id(self.seed, "member"), "UserName": self.username},
            "MemberToken": self._token_record(token, expires_at),
            "PersistentLoginToken": persistent,
        }

    # -- endpoints ------------------------------------------------------------------------------

    async def _service_token(
        self, request: web.Request, _args: list[str], _body: dict[str, Any]
    ) -> dict[str, Any]:
        bearer = request.headers.get("Authorization", "")
        access = bearer[7:].strip() if bearer.lower().startswith("bearer ") else ""
        record = self.tokens.access.get(access)
        if record is None or self.clock() >= record.expires_at:
            raise web.HTTPUnauthorized(
                text=json.dumps({"error": "invalid_token"}), content_type="application/json"
            )
        if request.headers.get("AccessKey") != self.access_key:
            raise HarvestError(3)
        token, expires_at = self.tokens.issue(
            self.tokens.service, "service", self.service_token_lifetime_s
        )
        return {"Token": self._token_record(token, expires_at)}

    async def _member_token(
        self, _request: web.Request, args: list[str], body: dict[str, Any]
    ) -> dict[str, Any]:
        self.tokens.check(self.tokens.service, _arg(args, 0))
        if body.get("username") != self.username or body.get("password") != self.password:
            raise HarvestError(2)
        return self._issue_member()

    async def _validate_persistent(
        self, _request: web.Request, args: list[str], body: dict[str, Any]
    ) -> dict[str, Any]:
        self.tokens.check(self.tokens.service, _arg(args, 0))
        value = str(body.get("persistentlogintoken") or "")
        record = self.tokens.persistent.get(value)
        if record is None or self.clock() >= record.expires_at:
            raise HarvestError(22)
        answer = self._issue_member()
        # The persistent login stays the same one; the fresh one _issue_member made is dropped.
        self.tokens.persistent.pop(answer["PersistentLoginToken"], None)
        answer["PersistentLoginToken"] = value
        return answer

    async def _service_info(
        self, _request: web.Request, args: list[str], _body: dict[str, Any]
    ) -> dict[str, Any]:
        self.tokens.check(self.tokens.service, _arg(args, 0))
        urls_key, url_key = (
            ("ServiceInfoURLs", "DirectDownloadURL")
            if self.wire == "json"
            else ("AssetUrls", "DirectDownloadUrl")  # docs/pools/harvest.md's names
        )
        return {
            urls_key: {
                url_key: self.download_url,
                "TrackStream": f"{self.download.base_url}/stream/{{id}}",
            },
            "FileFormats": self.formats,
        }

    def _page(self, request: web.Request, items: list[Any]) -> list[Any]:
        query = {k.lower(): v for k, v in request.query.items()}
        skip = _int(query.get("skip"), 0)
        limit = _int(query.get("limit"), len(items))
        return items[skip : skip + limit]

    async def _favourites(
        self, request: web.Request, args: list[str], _body: dict[str, Any]
    ) -> dict[str, Any]:
        self.tokens.check(self.tokens.member, _arg(args, 0))
        records = [self.tracks[i].record() for i in self.favourite_ids]
        return {"Tracks": self._page(request, records), "TotalCount": len(records)}

    async def _playlists(
        self, request: web.Request, args: list[str], _body: dict[str, Any]
    ) -> dict[str, Any]:
        self.tokens.check(self.tokens.member, _arg(args, 0))
        records = [
            {"ID": p.id, "Name": p.name, "TrackCount": len(p.track_ids), "DateCreated": p.created}
            for p in self.playlists
        ]
        return {"Playlists": self._page(request, records), "TotalCount": len(records)}

    async def _playlist(
        self, request: web.Request, args: list[str], _body: dict[str, Any]
    ) -> dict[str, Any]:
        self.tokens.check(self.tokens.member, _arg(args, 0))
        wanted = _arg(args, 1)
        found = [p for p in self.playlists if p.id == wanted]
        if not found:
            raise HarvestError(9, "Playlist not found")
        playlist = found[0]
        record: dict[str, Any] = {"ID": playlist.id, "Name": playlist.name}
        query = {k.lower(): v for k, v in request.query.items()}
        if query.get("returntracks", "").lower() == "true":
            tracks = [self.tracks[i].record() for i in playlist.track_ids]
            record["TotalCount"] = len(tracks)
            record["Tracks"] = self._page(request, tracks)
        return {"Playlist": record}

    async def _latest_albums(
        self, request: web.Request, args: list[str], _body: dict[str, Any]
    ) -> dict[str, Any]:
        self.tokens.check(self.tokens.member, _arg(args, 0))
        top = _int(_arg(args, 1), 10)
        albums = sorted(self.albums, key=lambda a: a.release_date, reverse=True)[:top]
        records = [album.record() for album in albums]
        return {"Albums": self._page(request, records), "TotalCount": len(records)}

    async def _history(
        self, request: web.Request, args: list[str], _body: dict[str, Any]
    ) -> dict[str, Any]:
        self.tokens.check(self.tokens.member, _arg(args, 0))
        entries = list(reversed(self.history))
        return {"DownloadHistory": self._page(request, entries), "TotalCount": len(entries)}

    async def _music_download(
        self, _request: web.Request, args: list[str], body: dict[str, Any]
    ) -> dict[str, Any]:
        path_token = _arg(args, 0)
        self.download_requests.append(dict(body))
        if body.get("membertoken"):
            # docs/pools/harvest.md's XML form: the service token in the path, the member's in the
            # body.
            self.tokens.check(self.tokens.service, path_token)
            self.tokens.check(self.tokens.member, str(body["membertoken"]))
        else:
            self.tokens.check(self.tokens.member, path_token)
        download_type = str(body.get("downloadtype") or "").strip().lower()
        if download_type not in ("track", "playlist", "album", "favourites"):
            raise HarvestError(10)
        identifier = str(body.get("identifier") or "").strip()
        ext = self._format_ext(str(body.get("format") or ""))
        tracks = self._resolve_tracks(download_type, identifier)
        if _flag(body.get("isshare")) or _flag(body.get("forceemail")) or self.send_by_email:
            self.emails.append((download_type, identifier))
            self._record_history(download_type, tracks, ext)
            return {"RequestSent": True}
        name = str(body.get("downloadfilename") or "").strip() or self._default_name(
            download_type, identifier
        )
        package = self._package(download_type, identifier, ext, name, tracks)
        pairs = []
        for number, key in enumerate(package.media_keys, 1):
            token = self.tokens.issue_download(key, self.download_token_lifetime_s)
            pairs.append((token, number))
        if self.mangle_parts_next is not None:
            pairs = self.mangle_parts_next(pairs)
            self.mangle_parts_next = None
        self._record_history(download_type, tracks, ext)
        return {
            "RequestSent": False,
            "DownloadTokens": [{"TokenValue": token, "Part": part} for token, part in pairs],
        }

    def _format_ext(self, wanted: str) -> str:
        lowered = wanted.strip().lower()
        if lowered in EXTENSIONS:
            return lowered  # docs/pools/harvest.md: "wav", "aiff" or "mp3" instead of an ID
        for record in self.formats:
            if record["ID"] == wanted.strip():
                ext = str(record["FileExtension"])
                return "aiff" if ext == "aif" else ext
        raise HarvestError(8)

    def _resolve_tracks(self, download_type: str, identifier: str) -> list[SimTrack]:
        if download_type == "track":
            ids = [i.strip() for i in identifier.split(",") if i.strip()]
            if not ids or any(i not in self.tracks for i in ids):
                raise HarvestError(9, "Track not found")
            return [self.tracks[i] for i in ids]
        if download_type == "album":
            found = [a for a in self.albums if a.id == identifier]
            if not found:
                raise HarvestError(9, "Album not found")
            return list(found[0].tracks)
        if download_type == "playlist":
            playlists = [p for p in self.playlists if p.id == identifier]
            if not playlists:
                raise HarvestError(9, "Playlist not found")
            return [self.tracks[i] for i in playlists[0].track_ids]
        wanted = [i.strip() for i in identifier.split(",") if i.strip()]
        ids = [i for i in self.favourite_ids if not wanted or i in wanted]
        if not ids:
            raise HarvestError(9, "No favourites to download")
        return [self.tracks[i] for i in ids]

    def _default_name(self, download_type: str, identifier: str) -> str:
        # docs/pools/harvest.md's naming: {playlist.name}, {album.displaytitle}, myfavourites.
        if download_type == "favourites":
            return "myfavourites"
        if download_type == "album":
            return self.album(identifier).title
        if download_type == "playlist":
            return self.playlist(identifier).name
        return f"harvest_download_{identifier[:16]}"

    def _record_history(self, download_type: str, tracks: list[SimTrack], ext: str) -> None:
        stamp = datetime.fromtimestamp(self.clock(), UTC).replace(tzinfo=None)
        for track in tracks:
            self.history.append(
                {
                    "DownloadDate": stamp.isoformat(timespec="seconds"),
                    "DownloadType": download_type,
                    "Format": ext,
                    "Track": track.record(),
                }
            )

    # -- packages -------------------------------------------------------------------------------

    def _package(
        self,
        download_type: str,
        identifier: str,
        ext: str,
        name: str,
        tracks: list[SimTrack],
    ) -> Package:
        item = (download_type, identifier)
        if self.next_archive_kind is not None:
            if self.next_archive_kind not in ARCHIVE_KINDS:
                raise ValueError(f"unknown archive kind {self.next_archive_kind!r}")
            self._archive_kinds[item] = self.next_archive_kind
            self.next_archive_kind = None
        kind = self._archive_kinds.get(item, "normal")
        split_key = (download_type, identifier, ext)
        if self.split_next is not None:
            self._splits[split_key] = self.split_next
            self.split_next = None
        entries = self._entries(download_type, tracks, ext)
        groups = split_parts(
            list(entries.items()), self.part_size_bytes, self._splits.get(split_key)
        )
        if kind == "duplicate" and len(groups) < 2:
            groups = split_parts(list(entries.items()), self.part_size_bytes, 2)
        shape = "/".join(",".join(name for name, _ in group) for group in groups)
        sizes = (self.mp3_size, self.wav_size)
        key = hex_id(self.seed, download_type, identifier, ext, shape, kind, sizes)
        if key in self.packages:
            package = self.packages[key]
        else:
            parts, bad = zip_parts(kind, groups)
            package = Package(
                key=key,
                download_type=download_type,
                identifier=identifier,
                format_ext=ext,
                name=name,
                kind=kind,
                entries=entries,
                parts=parts,
                bad_entries=bad,
            )
            self.packages[key] = package
            for number, data in enumerate(parts, 1):
                self.media.add_bytes(
                    f"{key}/{number}",
                    data,
                    content_type="application/zip",
                    filename=f"{name}.zip" if len(parts) == 1 else f"{name}_part{number}.zip",
                )
        self.last_package = package
        return package

    def _resolve_download(self, request: web.Request) -> str | web.StreamResponse:
        """The download host's token check: unknown or expired tokens are refused (403)."""
        token = request.match_info.get("token", "")
        record = self.tokens.download.get(token)
        if record is None:
            return json_error(403, "Invalid download token")
        key, expires_at = record
        if self.clock() >= expires_at:
            return json_error(403, "Download token expired")
        return key


def _arg(args: list[str], index: int) -> str | None:
    return args[index] if len(args) > index else None


def _int(value: str | None, default: int) -> int:
    try:
        return max(0, int(value)) if value is not None else default
    except ValueError:
        return default


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value or "").strip().lower() == "true"
