"""The dashboard's `/api/v1` serves the socket API's routes (docs/interface.md §11): the rules
routes among them, answered by the same handlers."""

from __future__ import annotations

import json

from .conftest import Dashboard, request


async def test_the_rules_routes_are_served_under_api_v1(dashboard: Dashboard) -> None:
    session = await dashboard.login()
    status, _, body = await request(dashboard, "GET", "/api/v1/rules", session=session)
    assert status == 200 and json.loads(body) == {"items": []}
    # No [[rules]] in this config: the daemon's own answer, not a missing route's.
    status, _, body = await request(
        dashboard, "GET", "/api/v1/rules/house/preview", session=session
    )
    error = json.loads(body)["error"]
    assert status == 404 and "no rules are configured" in error["message"]
    status, _, body = await request(
        dashboard,
        "POST",
        "/api/v1/rules/house/run",
        session=session,
        headers={"Origin": dashboard.origin, "X-CSRF-Token": session.csrf},
        body={"backfill": True},
    )
    assert status == 404 and "no rules are configured" in json.loads(body)["error"]["message"]
