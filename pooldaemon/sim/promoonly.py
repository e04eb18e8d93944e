"""A Promo Only POOL simulator: the API of docs/pools/promoonly.md and docs/interface.md §6, and its
download servers.

Written from the documents alone (it never imports `pooldaemon.pools`). One aiohttp server plays
api.promoonly.com; several `DownloadServer`s (one port each) play dc03 / ny01 / sl02 and answer
`/pool/v5/download/{dl_token}`, so `download_url = "http://{server}/pool/v5/download/{dl_token}"`.

Fault endpoints (for `sim.faults`, `match=`): "signin", "renew", "queue" (both queue paths),
"queue_list", "remove", "server", "success", "redownload"; each download server has its own
`faults` with the endpoint "download". `after_apply=True` applies the request's effect before
the fault (a queue GET that times out after queuing).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import random
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from pooldaemon.sim.answer import api_response, fault_response, start_app
from pooldaemon.sim.download import DownloadServer
from pooldaemon.sim.faults import API_KINDS, Faults
from pooldaemon.sim.media import MediaStore
from pooldaemon.sim.promoonly_library import SimTrack, make_track
from pooldaemon.sim.requestlog import RequestLog

__all__ = ["PromoOnlySim"]

#: docs/interface.md §6: "The access token lives 5 minutes".
TOKEN_LIFETIME_S = 300.0
#: docs/pools/promoonly.md §3's server ids, then onwards for more servers.
FIRST_SERVER_ID = 7


@dataclass
class _Entry:
    queueid: int
    trackid: int
    dl_token: str
    queue_time: int


@dataclass
class _User:
    userid: int
    email: str
    password: str
    api_key: str
    api_secret: str
    queue: list[_Entry] = field(default_factory=list)
    downloaded: set[int] = field(default_factory=set)


def _error(status: int, message: str, headers: dict[str, str]) -> web.StreamResponse:
    """Promo Only words its answers in `Result` (docs/pools/promoonly.md §2)."""
    return web.json_response({"Result": message}, status=status, headers=headers)


#: Assumed rather than documented (docs/pools/promoonly.md): off with `queue_list=False`.
_ASSUMED = frozenset({"queue_list", "remove"})

Handler = Callable[[web.Request, _User | None], Awaitable[tuple[int, Any]]]


class PromoOnlySim:
    """The simulated pool. `async with PromoOnlySim() as sim:` starts the API and the servers."""

    def __init__(
        self,
        *,
        tracks: int = 6,
        servers: int = 3,
        seed: str = "promoonly",
        media_size: int = 96 * 1024,
        token_lifetime_s: float = TOKEN_LIFETIME_S,
        queue_paths: Iterable[str] = ("seed", "alt"),
        queue_list: bool = True,
        port: int = 0,
    ) -> None:
        if servers < 1:
            raise ValueError("a pool needs at least one download server")
        self.seed = seed
        self.token_lifetime_s = token_lifetime_s
        #: Which queue-a-download paths answer: "seed" (/downloads/queue/ID), "alt" (/download/…).
        self.queue_paths = set(queue_paths)
        #: Whether the assumed list and remove endpoints exist (`/download/queue`,
        #: `/download/remove/ID`); False: both answer 404 like any unknown path. Switchable.
        self.queue_list = queue_list
        self._offset = 0.0
        rng = random.Random(seed)
        self.email = "dj@example.com"
        self.password = f"pw-{rng.getrandbits(48):012x}"
        self._user = _User(
            userid=1,
            email=self.email,
            password=self.password,
            api_key=f"{rng.getrandbits(128):032x}",
            api_secret=f"{rng.getrandbits(128):032x}",
        )
        #: The fixed-token config form (docs/pools/promoonly.md §2's `$userid = 1; $token = "…"`):
        #: never expires.
        self.token = f"{rng.getrandbits(128):032x}"
        self._tokens: dict[str, tuple[int, float | None]] = {self.token: (1, None)}
        self.tracks: dict[int, SimTrack] = {}
        self.media = MediaStore(last_modified=1_586_170_938.0)
        for index in range(tracks):
            track = make_track(index, rng, media_size)
            self.tracks[track.trackid] = track
            self.media.add_generated(
                str(track.trackid),
                track.kind,
                f"{seed}:{track.trackid}",
                track.size,
                filename=f"{track.artist} - {track.title}.{track.kind}",
            )
        #: Track ids outside the account's distribution: queue and servers answer 403.
        self.restricted: set[int] = set()
        self.faults = Faults()
        self.log = RequestLog()
        self.servers = [
            DownloadServer(
                self.media,
                self._resolve_download,
                path="/pool/v5/download/{dl_token}",
                endpoint="download",
                error=_error,
            )
            for _ in range(servers)
        ]
        #: Indexes into `servers` that queue answers and /download/server name.
        self.announced: list[int] = list(range(servers))
        #: Every queue GET that reached the handler, by track id (docs/pools/promoonly.md §2's side
        #: effect).
        self.queue_calls: Counter[int] = Counter()
        #: Distinct acknowledgements: {"userid", "trackid", "serverid", "dl_token"}.
        self.successes: list[dict[str, Any]] = []
        #: Accepted redownload requests: {"trackids", "reason", "requeued"}.
        self.redownloads: list[dict[str, Any]] = []
        self.signins = 0
        self.renewals = 0
        self._acknowledged: dict[str, int] = {}
        self._success_seen = asyncio.Condition()
        self._next_queueid = 12997  # docs/pools/promoonly.md §2's example queueid
        self._runner: web.AppRunner | None = None
        self.port = port  # the API's; the download servers take free ports

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> PromoOnlySim:
        """Start the download servers and the API on 127.0.0.1 (free ports)."""
        for server in self.servers:
            await server.start()
        app = web.Application()
        routes: list[tuple[str, str, str, Handler, bool]] = [
            ("POST", "/user/authenticate/signin", "signin", self._signin, False),
            ("POST", "/user/authenticate", "renew", self._renew, False),
            ("GET", "/downloads/queue/{id}", "queue", self._queue_seed, True),
            ("GET", "/download/queue/{id}", "queue", self._queue_alt, True),
            ("GET", "/download/queue", "queue_list", self._queue_list, True),
            ("GET", "/download/remove/{id}", "remove", self._remove, True),
            ("GET", "/download/server/{id}", "server", self._server_list, True),
            ("POST", "/download/success", "success", self._success, True),
            ("POST", "/download/redownload_request", "redownload", self._redownload, True),
        ]
        for method, path, endpoint, handler, signed in routes:
            app.router.add_route(method, path, self._wrap(endpoint, handler, signed))
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        self._runner, self.port = await start_app(app, port=self.port)
        return self

    async def close(self) -> None:
        """Stop the API and every download server."""
        self.faults.release_stalls()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for server in self.servers:
            await server.close()

    async def __aenter__(self) -> PromoOnlySim:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- what tests and the demo read and switch --------------------------------------------------

    @property
    def base_url(self) -> str:
        """The API root, e.g. `http://127.0.0.1:PORT` (config `base_url`)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def download_url(self) -> str:
        """The config `download_url` for these servers (plain HTTP on loopback)."""
        return "http://{server}/pool/v5/download/{dl_token}"

    def config_toml(self, name: str = "promoonly", *, fixed_token: bool = False) -> str:
        """The `[pools.<name>]` table that points pooldaemon at this simulator (docs/interface.md
        §2)."""
        if fixed_token:
            credentials = f"user_id = {self.user_id}\ntoken = {json.dumps(self.token)}\n"
        else:
            credentials = (
                f"email = {json.dumps(self.email)}\npassword = {json.dumps(self.password)}\n"
            )
        return (
            f"[pools.{name}]\n"
            'type = "promoonly"\n'
            f'base_url = "{self.base_url}"\n'
            f"{credentials}"
            f'download_url = "{self.download_url}"\n'
        )

    @property
    def user_id(self) -> int:
        return self._user.userid

    @property
    def api_key(self) -> str:
        return self._user.api_key

    @property
    def api_secret(self) -> str:
        return self._user.api_secret

    @property
    def track_ids(self) -> list[int]:
        return list(self.tracks)

    @property
    def hosts(self) -> list[str]:
        """Every download server as the pool names it (`127.0.0.1:PORT`)."""
        return [server.netloc for server in self.servers]

    def server_id(self, host: str) -> int:
        """The docs/pools/promoonly.md §3 id of a download server."""
        return FIRST_SERVER_ID + self.hosts.index(host)

    def clock(self) -> float:
        """The simulator's now (epoch seconds): wall time plus whatever advance() added."""
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the clock on: 5-minute tokens expire without waiting."""
        self._offset += seconds

    def announce(self, indexes: Iterable[int]) -> None:
        """Name only these servers (indexes into `servers`) from now on."""
        self.announced = list(indexes)

    def add_to_queue(self, track_ids: Iterable[int | str]) -> list[dict[str, Any]]:
        """Queue tracks server-side, as the DJ does on the website (not counted in queue_calls)."""
        return [self._entry_dict(self._enqueue(self._track(int(tid)).trackid)) for tid in track_ids]

    def queued(self, track_id: int | str) -> int:
        """How many queue entries the user has for a track (more than 1: queued twice)."""
        return sum(1 for entry in self._user.queue if entry.trackid == int(track_id))

    def queue_entries(self) -> list[dict[str, Any]]:
        """The user's queue as /download/queue lists it."""
        return [self._entry_dict(entry) for entry in self._user.queue]

    def expire_dl_token(self, track_id: int | str) -> str:
        """Reissue a queued track's dl_token; the old one is refused from now on (T1)."""
        for entry in self._user.queue:
            if entry.trackid == int(track_id):
                entry.dl_token = secrets.token_hex(16)
                return entry.dl_token
        raise KeyError(f"track {track_id} is not queued")

    def revoke(self, token: str) -> None:
        """Refuse an access token (or the fixed token) from now on."""
        self._tokens.pop(token, None)

    def revoke_api_key(self) -> None:
        """Rotate the API key and secret: renewal with the old pair is refused, sign-in works."""
        self._user.api_key = secrets.token_hex(16)
        self._user.api_secret = secrets.token_hex(16)

    async def wait_for_successes(self, count: int) -> None:
        """Return once `count` distinct acknowledgements have arrived (tests and the demo)."""
        async with self._success_seen:
            await self._success_seen.wait_for(lambda: len(self.successes) >= count)

    def mark_downloaded(self, track_ids: Iterable[int | str]) -> None:
        """Record tracks as downloaded before (so a redownload request may requeue them)."""
        self._user.downloaded.update(int(tid) for tid in track_ids)

    # -- API plumbing ---------------------------------------------------------------------------

    def _wrap(
        self, endpoint: str, handler: Handler, signed: bool
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            if endpoint in _ASSUMED and not self.queue_list:
                return await self._not_found(request)  # switched off: like any unknown path
            self.log.record(request, endpoint)
            active = self.faults.select(endpoint, API_KINDS)
            after = any(fault.params.get("after_apply") for fault in active.values())
            if not after:
                early = await fault_response(request, self.faults, active, _error)
                if early is not None:
                    return early
            user = None
            if signed:
                user = self._bearer_user(request)
                if user is None:
                    return _error(401, "Invalid or expired token.", {})
            status, body = await handler(request, user)
            if after:
                # The effect above is applied; now the answer is lost (docs/reliability.md C6).
                early = await fault_response(request, self.faults, active, _error)
                if early is not None:
                    return early
            data = json.dumps(body).encode()
            return await api_response(request, self.faults, active, data, status=status)

        return handle

    async def _not_found(self, request: web.Request) -> web.StreamResponse:
        self.log.record(request, "404")
        return _error(404, "Resource Not Found.", {})

    def _bearer_user(self, request: web.Request) -> _User | None:
        """docs/pools/promoonly.md: `Authorization: Bearer Base64(userid:token)`, token alive and
        owned."""
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        try:
            pair = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        user_text, _, token = pair.partition(":")
        held = self._tokens.get(token)
        if held is None or str(held[0]) != user_text.strip():
            return None
        if held[1] is not None and self.clock() >= held[1]:
            return None
        return self._user if held[0] == self._user.userid else None

    def _issue_token(self, user: _User) -> tuple[str, int]:
        token = secrets.token_hex(16)
        expires = int(self.clock() + self.token_lifetime_s)
        self._tokens[token] = (user.userid, float(expires))
        return token, expires

    def _track(self, track_id: int) -> SimTrack:
        try:
            return self.tracks[track_id]
        except KeyError:
            raise KeyError(f"no track {track_id}") from None

    def _enqueue(self, track_id: int) -> _Entry:
        self._next_queueid += 1
        entry = _Entry(self._next_queueid, track_id, secrets.token_hex(16), int(self.clock()))
        self._user.queue.append(entry)
        return entry

    def _announced_hosts(self) -> list[str]:
        return [self.servers[index].netloc for index in self.announced]

    def _entry_dict(self, entry: _Entry) -> dict[str, Any]:
        body = self.tracks[entry.trackid].fields()
        body.update(
            dl_token=entry.dl_token,
            queueid=entry.queueid,
            queue_time=entry.queue_time,
            servers=self._announced_hosts(),
        )
        return body

    def _access(self, raw_id: str) -> tuple[int, Any] | SimTrack:
        """The track for a path id, or the error answer."""
        if not raw_id.isdigit() or int(raw_id) not in self.tracks:
            return 404, {"Result": "Track not found."}
        if int(raw_id) in self.restricted:
            return 403, {"Result": "Track is not part of your subscription."}
        return self.tracks[int(raw_id)]

    # -- endpoints --------------------------------------------------------------------------------

    async def _signin(self, request: web.Request, _: _User | None) -> tuple[int, Any]:
        form = await _fields(request)
        user = self._user
        if form.get("email", "").strip().lower() != user.email or form.get("password") != (
            user.password
        ):
            return 401, {"Result": "Invalid email or password."}
        self.signins += 1
        token, expires = self._issue_token(user)
        return 200, {
            "Result": "Sign in successful.",
            "api_key": user.api_key,
            "api_secret": user.api_secret,
            "userid": user.userid,
            "token": token,
            "expiration": expires,
        }

    async def _renew(self, request: web.Request, _: _User | None) -> tuple[int, Any]:
        user = self._user
        scheme, _sep, value = request.headers.get("Authorization", "").partition(" ")
        expected = base64.b64encode(f"{user.api_key}:{user.api_secret}".encode()).decode()
        form = await _fields(request)
        if scheme.lower() != "basic" or value.strip() != expected:
            return 401, {"Result": "Invalid API key or secret."}
        if form.get("userid", "").strip() != str(user.userid):
            return 401, {"Result": "Invalid user."}
        self.renewals += 1
        token, expires = self._issue_token(user)
        return 200, {"token": token, "expires": expires}

    async def _queue_seed(self, request: web.Request, user: _User | None) -> tuple[int, Any]:
        return await self._queue(request, user, "seed")

    async def _queue_alt(self, request: web.Request, user: _User | None) -> tuple[int, Any]:
        return await self._queue(request, user, "alt")

    async def _queue(self, request: web.Request, user: _User | None, style: str) -> tuple[int, Any]:
        if style not in self.queue_paths:
            return 404, {"Result": "Resource Not Found."}
        found = self._access(request.match_info["id"])
        if not isinstance(found, SimTrack):
            return found
        # docs/pools/promoonly.md §2: the GET queues the track; a repeat queues it again
        # (docs/reliability.md §0).
        self.queue_calls[found.trackid] += 1
        body = self._entry_dict(self._enqueue(found.trackid))
        body.pop("queue_time")
        return 200, {"Result": "Track successfully queued for download.", **body}

    async def _queue_list(self, request: web.Request, user: _User | None) -> tuple[int, Any]:
        return 200, self.queue_entries()

    async def _remove(self, request: web.Request, user: _User | None) -> tuple[int, Any]:
        found = self._access(request.match_info["id"])
        if not isinstance(found, SimTrack):
            return found
        before = len(self._user.queue)
        self._user.queue = [entry for entry in self._user.queue if entry.trackid != found.trackid]
        if len(self._user.queue) == before:
            return 404, {"Result": "Track is not in your download queue."}
        return 200, {"Result": "Track removed from download queue."}

    async def _server_list(self, request: web.Request, user: _User | None) -> tuple[int, Any]:
        found = self._access(request.match_info["id"])
        if not isinstance(found, SimTrack):
            return found
        return 200, [
            {"host": self.servers[index].netloc, "id": FIRST_SERVER_ID + index}
            for index in self.announced
        ]

    async def _success(self, request: web.Request, user: _User | None) -> tuple[int, Any]:
        form = await _fields(request)
        track_text, server_text = form.get("trackid", ""), form.get("serverid", "")
        dl_token = form.get("dl_token", "")
        if not (track_text.isdigit() and server_text.isdigit() and dl_token):
            return 400, {"Result": "trackid, serverid and dl_token are required."}
        track_id, server_id = int(track_text), int(server_text)
        if self._acknowledged.get(dl_token) == track_id:
            return 200, {"Result": "Download already recorded."}  # an outbox replay
        if not FIRST_SERVER_ID <= server_id < FIRST_SERVER_ID + len(self.servers):
            return 400, {"Result": "Unknown server."}
        entry = next((e for e in self._user.queue if e.dl_token == dl_token), None)
        if entry is None or entry.trackid != track_id:
            return 400, {"Result": "Invalid download token."}
        self._user.queue.remove(entry)
        self._user.downloaded.add(track_id)
        self._acknowledged[dl_token] = track_id
        self.successes.append(
            {
                "userid": self._user.userid,
                "trackid": track_id,
                "serverid": server_id,
                "dl_token": dl_token,
            }
        )
        async with self._success_seen:
            self._success_seen.notify_all()
        return 200, {"Result": "Download recorded."}

    async def _redownload(self, request: web.Request, user: _User | None) -> tuple[int, Any]:
        form = await _fields(request)
        reason = form.get("reason", "").strip()
        if not reason:
            return 400, {"result": "error", "Result": "A reason is required."}
        ids = [part.strip() for part in form.get("trackid_list", "").split(",") if part.strip()]
        if not ids or not all(part.isdigit() for part in ids):
            return 400, {"result": "error", "Result": "trackid_list must list track IDs."}
        # docs/pools/promoonly.md §6: "will only work for tracks that have been previously
        # downloaded".
        eligible = [int(part) for part in ids if int(part) in self._user.downloaded]
        if not eligible:
            return 400, {
                "result": "error",
                "Result": "Only previously downloaded tracks can be redownloaded.",
            }
        for track_id in eligible:
            self._enqueue(track_id)
        self.redownloads.append({"trackids": eligible, "reason": reason, "requeued": len(eligible)})
        return 200, {"result": "success", "tracks_requeued": len(eligible)}

    # -- download servers -------------------------------------------------------------------------

    def _resolve_download(self, request: web.Request) -> str | web.StreamResponse:
        """Check the Bearer header and the dl_token; name the media to serve."""
        user = self._bearer_user(request)
        if user is None:
            return _error(401, "Invalid or expired token.", {})
        dl_token = request.match_info.get("dl_token", "")
        entry = next((e for e in user.queue if e.dl_token == dl_token), None)
        if entry is None:
            return _error(403, "Invalid or expired download token.", {})
        return str(entry.trackid)


async def _fields(request: web.Request) -> dict[str, str]:
    """POST fields as a form (the pool documents' examples) or as a JSON object."""
    if request.content_type == "application/json":
        try:
            data = await request.json()
        except ValueError:
            return {}
        if not isinstance(data, dict):
            return {}
        return {str(key): str(value) for key, value in data.items()}
    form = await request.post()
    return {key: value for key, value in form.items() if isinstance(value, str)}
