"""CrateQ simulator: docs/pools/crateq.md's API (login, catalog, reference lists, queue, download)
on loopback.

Written from docs/pools/crateq.md and docs/interface.md §6 alone. The download URL the pool document
leaves out is `{base_url}/Content/Download/{mediaId}?key={api_key}&token={auth}` with the JWT Bearer
header.

One concept in ~740 lines: a single server whose endpoints and test switches all read and
write the same users, queues and catalog. Its wire (record JSON, parameters) is
`sim/crateq_wire.py`, its credentials `sim/crateq_tokens.py`, the records `sim/catalog.py`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from pooldaemon.sim.answer import api_response, fault_response, json_error, start_app
from pooldaemon.sim.catalog import (
    GENRE_CATEGORIES,
    GENRES,
    MIXES,
    VIDEO_QUALITIES,
    Catalog,
)
from pooldaemon.sim.crateq_tokens import CLAIM, CrateQKeys
from pooldaemon.sim.crateq_wire import (
    Json,
    RecordRenderer,
    dumps,
    page_and_rows,
    request_params,
)
from pooldaemon.sim.download import DownloadServer
from pooldaemon.sim.faults import API_KINDS, Faults
from pooldaemon.sim.media import KINDS, MediaStore
from pooldaemon.sim.requestlog import RequestLog

__all__ = ["ENDPOINTS", "CrateQSim", "QueueEntry", "SimUser"]

# Endpoint names used in `calls`, the request log and fault `match`.
ENDPOINTS = (
    "Auth/Login",
    "Content/Media",
    "Content/Genres",
    "Content/GenreCategories",
    "Content/VideoQualities",
    "Content/VideoMixes",
    "Content/Queue",
    "Content/UpdateQueue",
    "Content/Download",
)
_TOKEN_STATUSES = ("active", "current", "pending")
_USER_KEY = web.RequestKey("crateq_sim_user", object)


@dataclass
class QueueEntry:
    """One track in a user's CrateQ download queue."""

    queue_id: int
    media_id: int
    added: float  # epoch seconds, by the simulator's clock


@dataclass
class SimUser:
    """A CrateQ account the simulator knows."""

    username: str
    password: str
    user_id: int
    status: str = "active"
    msg: str = ""
    crateq: bool = False
    country: str = ""
    queue: list[QueueEntry] = field(default_factory=list)
    downloaded: set[int] = field(default_factory=set)
    token_generation: int = 0  # bumped by revoke_tokens(): older JWTs get 401


UserRef = str | int | SimUser | None
Handler = Callable[[web.Request, SimUser | None], Awaitable[Json | web.StreamResponse]]


class CrateQSim:
    """A CrateQ API server on 127.0.0.1 for tests, benchmarks and the demo.

    `async with CrateQSim(records=1000, seed="demo") as sim:` then point a client at
    `sim.base_url` with `sim.api_key`, `sim.username`, `sim.password`."""

    def __init__(
        self,
        records: int = 1000,
        seed: str = "demo",
        *,
        api_key: str | None = None,
        username: str = "dj@example.com",
        password: str = "crateq-pass",
        user_id: int = 12345,
        account_status: str = "active",
        account_msg: str = "",
        jwt_lifetime_s: float = 3600.0,
        auth_lifetime_s: float = 900.0,
        thousands: bool = False,
        media_sizes: tuple[int, int] = (64 * 1024, 512 * 1024),
        max_rows: int = 1000,
        originator: str = "dms",
        anchor: date | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.seed = seed
        digest = hashlib.sha256(f"crateq-sim:{seed}".encode()).hexdigest()
        self.api_key = api_key or digest[:32]
        self.keys = CrateQKeys(seed)
        self.jwt_lifetime_s = jwt_lifetime_s
        self.auth_lifetime_s = auth_lifetime_s  # docs/pools/crateq.md: "a 15 minute validation
        # period"
        self.thousands = thousands  # docs/pools/crateq.md prints "records":174,420 — not JSON
        self.max_rows = max_rows
        self.originator = originator
        self.host = host
        self.port = port
        self._offset_s = 0.0
        self.users: dict[str, SimUser] = {}
        self.user = self.add_user(
            username, password, user_id=user_id, status=account_status, msg=account_msg
        )
        self.catalog = Catalog(
            records, seed, clock=self.clock, anchor=anchor, size_range=media_sizes
        )
        self.media = MediaStore(last_modified=float(int(self.clock())))
        self.faults = Faults()
        self.log = RequestLog()
        self.download_hosts: list[DownloadServer] = []
        self._file_backed: set[int] = set()
        self._next_queue_id = 1_572_989  # docs/pools/crateq.md's example queue ids
        self._downloads = DownloadServer(
            self.media,
            self._resolve_download,
            path="/api/Content/Download/{mediaId}",
            endpoint="Content/Download",
            faults=self.faults,
            log=self.log,
            on_complete=self._mark_downloaded,
        )
        self._renderer = RecordRenderer(self.catalog)
        self._runner: web.AppRunner | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def root_url(self) -> str:
        """`http://127.0.0.1:PORT`."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The API root the client is configured with: `http://127.0.0.1:PORT/api`."""
        return f"{self.root_url}/api"

    @property
    def calls(self) -> Counter[str]:
        """Requests per endpoint name (ENDPOINTS, plus "404")."""
        return self.log.calls

    async def start(self) -> CrateQSim:
        """Listen on host:port (0: a free port)."""
        app = web.Application()
        routes: list[tuple[str, str, Handler, bool]] = [
            ("POST", "/api/Auth/Login", self._login, False),
            ("GET", "/api/Content/Media", self._media_list, True),
            ("GET", "/api/Content/Genres", self._genres, True),
            ("GET", "/api/Content/GenreCategories", self._genre_categories, True),
            ("GET", "/api/Content/VideoQualities", self._video_qualities, True),
            ("GET", "/api/Content/VideoMixes", self._video_mixes, True),
            ("GET", "/api/Content/Queue", self._queue_list, True),
            ("POST", "/api/Content/UpdateQueue", self._update_queue, True),
        ]
        for method, path, handler, needs_jwt in routes:
            endpoint = path.removeprefix("/api/")
            app.router.add_route(method, path, self._api(endpoint, handler, needs_jwt))
        self._downloads.add_routes(app)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        self._runner, self.port = await start_app(app, self.host, self.port)
        self.catalog.base_url = self.base_url
        self._renderer.clear()
        return self

    async def close(self) -> None:
        """Stop the API and any extra download hosts."""
        self.faults.release_stalls()
        for host in self.download_hosts:
            await host.close()
        self.download_hosts.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> CrateQSim:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def add_download_host(self, faults: Faults | None = None) -> DownloadServer:
        """Start another server answering `/api/Content/Download/{mediaId}` with the same token
        rules (its own faults and request log); `host.base_url + "/api"` is its base URL."""
        host = DownloadServer(
            self.media,
            self._resolve_download,
            path="/api/Content/Download/{mediaId}",
            endpoint="Content/Download",
            faults=faults,
            host=self.host,
            on_complete=self._mark_downloaded,
        )
        await host.start()
        self.download_hosts.append(host)
        return host

    def warm(self) -> None:
        """Render every record now, so a benchmark's full sync measures the client, not the
        simulator's first pass (a few seconds for 174,420 records)."""
        for media_id in self.catalog.ids():
            self._renderer.render(media_id)

    def config_toml(self, name: str = "crateq") -> str:
        """The `[pools.<name>]` table that points pooldaemon at this simulator (docs/interface.md
        §2)."""
        return (
            f"[pools.{name}]\n"
            f'type = "crateq"\n'
            f'base_url = "{self.base_url}"\n'
            f'api_key = "{self.api_key}"\n'
            f"username = {json.dumps(self.user.username)}\n"
            f"password = {json.dumps(self.user.password)}\n"
        )

    # -- clock -----------------------------------------------------------------------------------

    def clock(self) -> float:
        """The simulator's now (epoch seconds): wall time plus whatever advance() added."""
        return datetime.now(UTC).timestamp() + self._offset_s

    def advance(self, seconds: float) -> None:
        """Move the simulator's clock forward (JWT exp, 15-minute auth, `days`, queue dates)."""
        self._offset_s += seconds

    # -- users, queue, media (the truth tests read and change) ----------------------------------

    @property
    def username(self) -> str:
        """The default user's login name."""
        return self.user.username

    @property
    def password(self) -> str:
        """The default user's password."""
        return self.user.password

    @property
    def account_status(self) -> str:
        """The default user's status as login reports it ("active", "expired", …)."""
        return self.user.status

    @account_status.setter
    def account_status(self, status: str) -> None:
        self.user.status = status

    @property
    def account_msg(self) -> str:
        """The default user's login `msg`."""
        return self.user.msg

    @account_msg.setter
    def account_msg(self, msg: str) -> None:
        self.user.msg = msg

    def add_user(
        self,
        username: str,
        password: str,
        *,
        user_id: int | None = None,
        status: str = "active",
        msg: str = "",
        crateq: bool = False,
    ) -> SimUser:
        """Create another account (each has its own queue, tokens and downloaded set)."""
        user = SimUser(
            username=username,
            password=password,
            user_id=user_id if user_id is not None else 12345 + len(self.users),
            status=status,
            msg=msg,
            crateq=crateq,
        )
        self.users[username.casefold()] = user
        return user

    def user_for(self, user: UserRef = None) -> SimUser:
        """A user by username, userId or object; None: the default user."""
        if user is None:
            return self.user
        if isinstance(user, SimUser):
            return user
        for candidate in self.users.values():
            if user in (candidate.user_id, candidate.username) or (
                isinstance(user, str) and candidate.username.casefold() == user.casefold()
            ):
                return candidate
        raise KeyError(f"no user {user!r}")

    def revoke_tokens(self, user: UserRef = None) -> None:
        """Make every JWT issued so far to the user answer 401 (exp is only a hint: T4)."""
        self.user_for(user).token_generation += 1

    def queue_for(self, user: UserRef = None) -> list[dict[str, Any]]:
        """The user's queue, newest first: `{"queueId", "mediaId", "queueDate"}`."""
        entries = sorted(
            self.user_for(user).queue, key=lambda e: (e.added, e.queue_id), reverse=True
        )
        return [
            {"queueId": e.queue_id, "mediaId": e.media_id, "queueDate": self._day(e.added)}
            for e in entries
        ]

    def add_to_queue(self, media_ids: Iterable[int], user: UserRef = None) -> list[int]:
        """Queue tracks server-side, as if from the user's phone; already queued ones stay."""
        account = self.user_for(user)
        queue_ids = []
        for media_id in media_ids:
            existing = self._queued(account, media_id)
            if existing is not None:
                queue_ids.append(existing.queue_id)
                continue
            if media_id not in self.catalog:
                raise KeyError(f"no media {media_id}")
            queue_ids.append(self._enqueue(account, media_id).queue_id)
        return queue_ids

    def remove_from_queue(self, media_ids: Iterable[int], user: UserRef = None) -> None:
        """Take tracks out of the user's queue server-side."""
        account = self.user_for(user)
        gone = set(media_ids)
        account.queue = [e for e in account.queue if e.media_id not in gone]

    def downloaded_by(self, user: UserRef = None) -> set[int]:
        """Media ids the user has fetched completely (their `downloaded` flag)."""
        return self.user_for(user).downloaded

    def media_key(self, media_id: int) -> str:
        """The MediaStore key of a track's file, registering it on first use."""
        key = f"crateq/{media_id}"
        if media_id in self._file_backed:
            return key
        record = self.catalog[media_id]
        size = int(record["sizeBytes"])
        if key not in self.media or self.media.size(key) != size:
            kind = str(record["kind"])
            self.media.add_generated(
                key,
                kind,
                f"{self.seed}:{media_id}",
                size,
                filename=f"{record['artist']} - {record['title']}.{KINDS[kind][1]}",
            )
        return key

    def expected_bytes(self, media_id: int) -> bytes:
        """The exact bytes a download of the track yields."""
        return self.media.get(self.media_key(media_id))

    def sha256(self, media_id: int) -> str:
        """Hex SHA-256 of the track's file."""
        return self.media.sha256(self.media_key(media_id))

    def set_media_size(self, media_id: int, size: int) -> None:
        """Serve a generated file of `size` bytes for the track (its "size" field follows)."""
        self._file_backed.discard(media_id)
        self.catalog.set_size(media_id, size)
        self.media_key(media_id)

    def set_media_file(self, media_id: int, path: str | Path) -> None:
        """Serve the track from a file on disk (1 GiB benchmarks); "size" follows the file."""
        key = f"crateq/{media_id}"
        record = self.catalog[media_id]
        kind = str(record["kind"])
        self.media.add_file(
            key,
            path,
            content_type=KINDS[kind][0],
            filename=f"{record['artist']} - {record['title']}.{KINDS[kind][1]}",
        )
        self._file_backed.add(media_id)
        self.catalog.set_size(media_id, self.media.size(key))

    def issue_auth(self, media_id: int, user: UserRef = None) -> str:
        """A fresh download `auth` for (user, track), as a catalog or queue read would show."""
        return self.keys.auth(self.user_for(user).user_id, media_id, int(self.clock()))

    def auth_issued_at(self, token: str) -> float | None:
        """When an `auth` token was displayed (None if it is not one of ours)."""
        try:
            return float(int(token[:8], 16)) if len(token) == 40 else None
        except ValueError:
            return None

    def download_url(self, media_id: int, auth: str, host: DownloadServer | None = None) -> str:
        """docs/interface.md §6's download URL on the API server (or on an extra host)."""
        base = self.base_url if host is None else f"{host.base_url}/api"
        return f"{base}/Content/Download/{media_id}?key={self.api_key}&token={auth}"

    # -- tokens ----------------------------------------------------------------------------------

    def _jwt(self, user: SimUser) -> str:
        now = int(self.clock())
        return self.keys.jwt(
            {
                f"{CLAIM}nameidentifier": str(user.user_id),
                f"{CLAIM}emailaddress": user.username,
                "status": user.status,
                f"{CLAIM}country": user.country,
                "http://schemas.microsoft.com/ws/2008/06/identity/claims/role": "DJ",
                "crateq": "true" if user.crateq else "false",
                "plan": "",
                "renewal": "1900-01-01",
                "gen": user.token_generation,
                "iat": now,
                "exp": now + int(self.jwt_lifetime_s),
                "iss": "https://api.crateq.com",
                "aud": "https://api.crateq.com",
            }
        )

    def _verify_jwt(self, token: str) -> SimUser | str:
        """The token's user, or the reason it is refused."""
        claims = self.keys.jwt_claims(token)
        if isinstance(claims, str):
            return claims
        try:
            user = self.user_for(int(claims[f"{CLAIM}nameidentifier"]))
        except (ValueError, KeyError, TypeError):
            return "Invalid token."
        if claims.get("gen") != user.token_generation:
            return "Token revoked."
        if int(claims["exp"]) <= self.clock():
            return "Token expired."
        return user

    def _check_auth(self, token: str, media_id: int, user: SimUser) -> str | None:
        """None when the download `auth` is good, else why not."""
        issued = self.auth_issued_at(token)
        if issued is None or not hmac.compare_digest(
            self.keys.auth(user.user_id, media_id, int(issued)), token
        ):
            return "Invalid download token."
        if self.clock() - issued > self.auth_lifetime_s:
            return "Download token expired."
        return None

    # -- request plumbing ------------------------------------------------------------------------

    @staticmethod
    def _error(status: int, message: str, headers: dict[str, str]) -> web.StreamResponse:
        return json_error(status, message, headers=headers)

    def _authenticate(self, request: web.Request) -> SimUser | web.StreamResponse:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return json_error(401, "Authorization has been denied for this request.")
        verdict = self._verify_jwt(token.strip())
        if isinstance(verdict, str):
            description = "The token expired" if verdict == "Token expired." else verdict
            challenge = f'Bearer error="invalid_token", error_description="{description}"'
            return json_error(401, verdict, headers={"WWW-Authenticate": challenge})
        return verdict

    def _check_key(self, request: web.Request) -> web.StreamResponse | None:
        # docs/pools/crateq.md: "If you do not include you API key … HTTP 403 (Forbidden)".
        if request.query.get("key") != self.api_key:
            return json_error(403, "Forbidden: the key parameter is missing or invalid.")
        return None

    def _api(
        self, endpoint: str, handler: Handler, needs_jwt: bool
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            self.log.record(request, endpoint)
            active = self.faults.select(endpoint, API_KINDS)
            before = {k: f for k, f in active.items() if not f.params.get("after_apply")}
            after = {k: f for k, f in active.items() if f.params.get("after_apply")}
            early = await fault_response(request, self.faults, before, self._error)
            if early is not None:
                return early
            if "timeout_empty" in before or "empty_body" in before:
                return await api_response(request, self.faults, before, b"")
            refused = self._check_key(request)
            if refused is not None:
                return refused
            user: SimUser | None = None
            if needs_jwt:
                verdict = self._authenticate(request)
                if isinstance(verdict, web.StreamResponse):
                    return verdict
                user = verdict
            result = await handler(request, user)
            if isinstance(result, web.StreamResponse):
                return result
            # Faults with after_apply=True: the server did the work, the client sees a failure.
            late = await fault_response(request, self.faults, after, self._error)
            if late is not None:
                return late
            return await api_response(
                request, self.faults, {**before, **after}, result.body, status=result.status
            )

        return wrapped

    async def _not_found(self, request: web.Request) -> web.StreamResponse:
        self.log.record(request, "404")
        return json_error(404, "Resource Not Found.")

    def _day(self, stamp: float) -> str:
        return datetime.fromtimestamp(stamp, UTC).date().isoformat()

    def _number(self, value: int) -> str:
        return f"{value:,}" if self.thousands else str(value)

    def _envelope(
        self,
        ids: list[int],
        page: int,
        rows: int,
        sort: str,
        direction: str,
        user: SimUser,
        queue: Mapping[int, QueueEntry] | None = None,
    ) -> Json:
        """docs/pools/crateq.md's paged envelope, built by hand so `thousands` can print 174,420.

        Records are rendered only for the page asked for (a full sync pages 174,420 of them)."""
        records = len(ids)
        start = (page - 1) * rows
        issued = int(self.clock())
        queued = {e.media_id: e.queue_id for e in user.queue}
        items = []
        for media_id in ids[start : start + rows]:
            rendered = self._renderer.render(media_id)
            if rendered is None:
                continue
            head, tail = rendered
            if queue is not None:
                tail = tail[:-1] + f',"queueDate":"{self._day(queue[media_id].added)}"}}'.encode()
            items.append(
                b'%s,"auth":"%s","queueId":%d,"downloaded":%s,%s'
                % (
                    head,
                    self.keys.auth(user.user_id, media_id, issued).encode(),
                    queued.get(media_id, 0),
                    b"true" if media_id in user.downloaded else b"false",
                    tail,
                )
            )
        head_text = (
            f'{{"records":{self._number(records)},'
            f'"message":"{start}-{start + len(items)}",'
            f'"pages":{self._number(math.ceil(records / rows))},'
            f'"page":{self._number(page)},'
            f'"sort":{json.dumps(sort)},"dir":{json.dumps(direction)},"data":['
        )
        return Json(head_text.encode() + b",".join(items) + b"]}")

    # -- endpoints -------------------------------------------------------------------------------

    async def _login(self, request: web.Request, _: SimUser | None) -> Json | web.StreamResponse:
        params = await request_params(request)
        username, password = params.get("username", ""), params.get("password", "")
        if not username or not password:
            # docs/pools/crateq.md's own error example.
            return json_error(500, "Username and Password are required.")
        user = self.users.get(username.casefold())
        if user is None or not hmac.compare_digest(user.password, password):
            return json_error(401, "Invalid username or password.")
        allowed = user.status in _TOKEN_STATUSES or user.crateq
        # docs/pools/crateq.md: login answers an ARRAY with one object.
        answer = {
            "userId": user.user_id,
            "msg": user.msg,
            "status": user.status,
            "country": user.country,
            "crateq": user.crateq,
            "originator": params.get("originator") or self.originator,
            "token": self._jwt(user) if allowed else "",
        }
        return Json(dumps([answer]))

    async def _media_list(
        self, request: web.Request, user: SimUser | None
    ) -> Json | web.StreamResponse:
        assert user is not None
        paging = page_and_rows(request.query, self.max_rows)
        if isinstance(paging, web.StreamResponse):
            return paging
        page, rows = paging
        sort = request.query.get("sort") or "date"
        direction = (request.query.get("dir") or "desc").lower()
        try:
            ids = self.catalog.select(request.query, sort, direction)
        except ValueError as err:
            return json_error(400, f"Invalid parameter: {err}.")
        return self._envelope(ids, page, rows, sort, direction, user)

    async def _genres(self, request: web.Request, _: SimUser | None) -> Json | web.StreamResponse:
        title = request.query.get("title", "").strip().casefold()
        wanted: set[int] | None = None
        if request.query.get("categoryId", "").strip():
            try:
                wanted = {int(p) for p in request.query["categoryId"].split(",") if p.strip()}
            except ValueError:
                return json_error(400, "Invalid parameter: categoryId.")
        categories = dict(GENRE_CATEGORIES)
        rows = [
            {"genreId": gid, "title": name, "category": categories[cid], "categoryId": cid}
            for gid, name, cid in GENRES
            if title in name.casefold() and (wanted is None or cid in wanted)
        ]
        rows.sort(key=lambda row: str(row["title"]).casefold())
        return Json(dumps(rows))

    async def _genre_categories(self, _r: web.Request, _u: SimUser | None) -> Json:
        rows = [{"categoryId": cid, "title": title} for cid, title in GENRE_CATEGORIES]
        rows.sort(key=lambda row: str(row["title"]).casefold())
        return Json(dumps(rows))

    async def _video_qualities(self, _r: web.Request, _u: SimUser | None) -> Json:
        rows = [
            {"qualityId": qid, "title": title, "pixel_height": height, "pixel_width": width}
            for qid, title, width, height in VIDEO_QUALITIES
        ]
        return Json(dumps(rows))

    async def _video_mixes(self, _r: web.Request, _u: SimUser | None) -> Json:
        return Json(dumps(sorted(MIXES)))

    async def _queue_list(
        self, request: web.Request, user: SimUser | None
    ) -> Json | web.StreamResponse:
        assert user is not None
        paging = page_and_rows(request.query, self.max_rows)
        if isinstance(paging, web.StreamResponse):
            return paging
        page, rows = paging
        direction = (request.query.get("dir") or "desc").lower()
        live = [e for e in user.queue if e.media_id in self.catalog]
        live.sort(key=lambda e: (e.added, e.queue_id), reverse=direction != "asc")
        by_media = {e.media_id: e for e in live}
        ids = [e.media_id for e in live]
        return self._envelope(ids, page, rows, "queueDate", direction, user, by_media)

    async def _update_queue(
        self, request: web.Request, user: SimUser | None
    ) -> Json | web.StreamResponse:
        assert user is not None
        params = await request_params(request)
        try:
            queue_id = int(params.get("queueId") or 0)
            media_id = int(params.get("mediaId") or 0)
            originator_id = int(params.get("originatorId") or 0)
            user_id = int(params.get("userId") or 0)
        except ValueError:
            return json_error(400, "Invalid parameter: ids must be integers.")
        if user_id and user_id != user.user_id:
            return json_error(403, "userId does not match the signed-in user.")
        if not media_id and originator_id:
            media_id = self.catalog.by_originator(originator_id) or 0
            if not media_id:
                return json_error(404, "Media not found.")
        if queue_id:
            entry = next((e for e in user.queue if e.queue_id == queue_id), None)
            if entry is not None:
                user.queue.remove(entry)
                return Json(dumps([{"id": entry.queue_id, "message": "Media removed from queue."}]))
            if not media_id:
                return json_error(404, "Queue item not found.")
        if not media_id:
            return json_error(400, "Parameter Required: mediaId or originatorId.")
        # docs/pools/crateq.md: an add for a track already queued removes it (a toggle).
        existing = self._queued(user, media_id)
        if existing is not None:
            user.queue.remove(existing)
            return Json(dumps([{"id": existing.queue_id, "message": "Media removed from queue."}]))
        if media_id not in self.catalog:
            return json_error(404, "Media not found.")
        entry = self._enqueue(user, media_id)
        return Json(dumps([{"id": entry.queue_id, "message": "Media added to queue."}]))

    def _queued(self, user: SimUser, media_id: int) -> QueueEntry | None:
        return next((e for e in user.queue if e.media_id == media_id), None)

    def _enqueue(self, user: SimUser, media_id: int) -> QueueEntry:
        entry = QueueEntry(self._next_queue_id, media_id, self.clock())
        self._next_queue_id += 1
        user.queue.append(entry)
        return entry

    async def _resolve_download(self, request: web.Request) -> str | web.StreamResponse:
        refused = self._check_key(request)
        if refused is not None:
            return refused
        verdict = self._authenticate(request)
        if isinstance(verdict, web.StreamResponse):
            return verdict
        try:
            media_id = int(request.match_info["mediaId"])
        except ValueError:
            return json_error(404, "Media not found.")
        if media_id not in self.catalog:
            return json_error(404, "Media not found.")
        token = request.query.get("token", "")
        if not token:
            return json_error(400, "Parameter Required: token.")
        problem = self._check_auth(token, media_id, verdict)
        if problem is not None:
            return json_error(403, problem)
        request[_USER_KEY] = verdict
        return self.media_key(media_id)

    def _mark_downloaded(self, request: web.Request, key: str) -> None:
        user = request.get(_USER_KEY)
        if isinstance(user, SimUser):
            user.downloaded.add(int(key.rsplit("/", 1)[1]))
