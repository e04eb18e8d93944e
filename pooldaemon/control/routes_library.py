"""The API's routes for exports, the library and rules (docs/interface.md §7, §8, §9)."""

from __future__ import annotations

from aiohttp import web

from pooldaemon import search
from pooldaemon.control.wire import Routes, json_response, single_query, state_param, whole
from pooldaemon.errors import BadRequest
from pooldaemon.models import LibraryState

#: `GET /v1/library`: its query keys, and its page when no `limit` is given (the maximum is the
#: catalog's and the jobs', docs/interface.md §12).
LIBRARY_PARAMS = frozenset({"state", "pool", "q", "limit", "offset"})
LIBRARY_LIMIT = 100


class LibraryRoutes(Routes):
    """export, the library (list, duplicates, adopt, audit, heal) and rules."""

    def add(self, r: web.UrlDispatcher, prefix: str) -> None:
        """Mount these routes under `prefix`."""
        r.add_post(f"{prefix}/export", self._export)
        r.add_get(f"{prefix}/rules", self._rules)
        r.add_get(f"{prefix}/rules/{{name}}/preview", self._rule_preview)
        r.add_post(f"{prefix}/rules/{{name}}/run", self._rule_run)
        r.add_get(f"{prefix}/library", self._library)
        r.add_get(f"{prefix}/library/duplicates", self._library_duplicates)
        r.add_post(f"{prefix}/library/adopt", self._library_adopt)
        r.add_post(f"{prefix}/library/audit", self._library_audit)
        r.add_get(f"{prefix}/library/audit", self._library_state)
        r.add_post(f"{prefix}/library/heal", self._library_heal)

    async def _export(self, request: web.Request) -> web.Response:
        await self._body(request, {})
        return json_response(await self.services.export())

    async def _library(self, request: web.Request) -> web.Response:
        query = single_query(request, LIBRARY_PARAMS)
        state = state_param(query.get("state"), LibraryState, "library")
        limit, offset = search.parse_page(query, default_limit=LIBRARY_LIMIT)
        answer = await self.services.library(
            state=state,
            pool=query.get("pool") or None,
            q=query.get("q") or None,
            limit=limit,
            offset=offset,
        )
        return json_response(answer)

    async def _library_duplicates(self, request: web.Request) -> web.Response:
        single_query(request, set())
        return json_response(await self.services.library_duplicates())

    async def _library_adopt(self, request: web.Request) -> web.Response:
        body = await self._body(request, {"paths": list, "dry_run": bool})
        paths = body.get("paths") or []
        if not paths or not all(isinstance(p, str) and p.strip() for p in paths):
            raise BadRequest('"paths" must be a non-empty list of file or folder paths')
        return json_response(
            await self.services.library_adopt(paths, bool(body.get("dry_run", False)))
        )

    async def _library_audit(self, request: web.Request) -> web.Response:
        body = await self._body(request, {"full": bool})
        return json_response(await self.services.library_audit(bool(body.get("full", False))))

    async def _library_state(self, request: web.Request) -> web.Response:
        single_query(request, set())
        return json_response(await self.services.library_state())

    async def _library_heal(self, request: web.Request) -> web.Response:
        await self._body(request, {})
        return json_response(await self.services.library_heal())

    async def _rules(self, request: web.Request) -> web.Response:
        if request.query:
            raise BadRequest(f"unknown query parameter(s): {', '.join(sorted(request.query))}")
        return json_response(await self.services.rules())

    async def _rule_preview(self, request: web.Request) -> web.Response:
        unknown = set(request.query) - {"limit", "offset"}
        if unknown:
            raise BadRequest(f"unknown query parameter(s): {', '.join(sorted(unknown))}")
        limit = whole(request.query.get("limit"), "limit", 50)
        offset = whole(request.query.get("offset"), "offset", 0)
        answer = await self.services.rule_preview(request.match_info["name"], limit, offset)
        return json_response(answer)

    async def _rule_run(self, request: web.Request) -> web.Response:
        body = await self._body(request, {"backfill": bool, "since": str})
        answer = await self.services.rule_run(
            request.match_info["name"], bool(body.get("backfill", False)), body.get("since")
        )
        return json_response(answer)
