"""One parser for request references, used by the drop folder, poolctl and the socket API."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from pooldaemon.errors import BadRequest
from pooldaemon.models import Request

_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
#: Kinds a ref may name; which a pool supports is the adapter's to say.
KINDS = ("track", "playlist", "album", "favourites")


def parse_ref(text: str, pools: Mapping[str, Sequence[str]]) -> Request:
    """Parse `POOL:ID`, `POOL:KIND:ID` or `POOL:favourites` against the configured pools.

    `pools` maps each configured pool name to the kinds it supports.
    """
    ref = text.strip()
    if not ref:
        raise BadRequest("empty reference")
    if any(ch.isspace() for ch in ref):
        raise BadRequest(f"{_show(ref)}: a reference has no spaces (form POOL:ID)")
    parts = ref.split(":")
    pool = parts[0].lower()
    if len(parts) < 2 or not parts[0]:
        raise BadRequest(f"{_show(ref)}: expected POOL:ID or POOL:KIND:ID")
    if pool not in pools:
        known = ", ".join(sorted(pools)) or "none configured"
        raise BadRequest(f"{_show(ref)}: unknown pool {pool!r} (configured pools: {known})")
    kinds = pools[pool]
    if len(parts) == 2:
        kind_or_id = parts[1]
        if kind_or_id.lower() in KINDS and kind_or_id.lower() != "track":
            kind = kind_or_id.lower()
            if kind != "favourites":
                raise BadRequest(f"{_show(ref)}: {kind} needs an ID ({pool}:{kind}:ID)")
            return _checked(Request(pool=pool, item_id=None, kind=kind), kinds, ref)
        return _checked(Request(pool=pool, item_id=_check_id(kind_or_id, ref)), kinds, ref)
    if len(parts) == 3:
        kind = parts[1].lower()
        if kind not in KINDS:
            raise BadRequest(f"{_show(ref)}: unknown kind {parts[1]!r} (kinds: {', '.join(KINDS)})")
        return _checked(Request(pool=pool, item_id=_check_id(parts[2], ref), kind=kind), kinds, ref)
    raise BadRequest(f"{_show(ref)}: too many ':' (form POOL:ID or POOL:KIND:ID)")


def parse_line(line: str, pools: Mapping[str, Sequence[str]]) -> Request:
    """Parse one drop-folder line: a ref, or `redownload POOL:ID [reason …]` (docs/interface.md
    §3)."""
    words = line.strip().split(None, 2)
    if words and words[0].lower() == "redownload":
        if len(words) < 2:
            raise BadRequest("redownload needs a reference: redownload POOL:ID [reason …]")
        req = parse_ref(words[1], pools)
        reason = words[2].strip() if len(words) > 2 else None
        return Request(req.pool, req.item_id, req.kind, redownload=True, reason=reason)
    if len(words) > 1:
        raise BadRequest(
            f"{_show(line.strip())}: one reference per line (or: redownload POOL:ID reason)"
        )
    return parse_ref(line, pools)


def parse_object(obj: object, pools: Mapping[str, Sequence[str]]) -> Request:
    """Parse one object of a `.json` drop file: `{"pool", "id", "kind"?, "action"?, "reason"?}`."""
    if not isinstance(obj, dict):
        raise BadRequest(f"expected an object, got {type(obj).__name__}")
    unknown = set(obj) - {"pool", "id", "kind", "action", "reason"}
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(sorted(unknown))}")
    pool, item, kind = obj.get("pool"), obj.get("id"), obj.get("kind", "track")
    action, reason = obj.get("action"), obj.get("reason")
    if not isinstance(pool, str) or not pool:
        raise BadRequest('"pool" must be a non-empty string')
    if item is not None and not isinstance(item, str | int):
        raise BadRequest('"id" must be a string or a number')
    if isinstance(item, bool):
        raise BadRequest('"id" must be a string or a number')
    if not isinstance(kind, str):
        raise BadRequest('"kind" must be a string')
    if action not in (None, "download", "redownload"):
        raise BadRequest(f'"action" must be "redownload" (got {action!r})')
    if reason is not None and not isinstance(reason, str):
        raise BadRequest('"reason" must be a string')
    text = f"{pool}:{kind}:{item}" if item is not None else f"{pool}:{kind}"
    if kind == "track" and item is not None:
        text = f"{pool}:{item}"
    req = parse_ref(text, pools)
    if action == "redownload":
        return Request(req.pool, req.item_id, req.kind, redownload=True, reason=reason)
    return req


def _check_id(item: str, ref: str) -> str:
    if not _ID.match(item):
        raise BadRequest(f"{_show(ref)}: {_show(item)} is not a valid ID")
    return item


def _checked(req: Request, kinds: Sequence[str], ref: str) -> Request:
    if req.kind not in kinds:
        raise BadRequest(
            f"{_show(ref)}: pool {req.pool!r} has no {req.kind!r} downloads "
            f"(it supports: {', '.join(kinds)})"
        )
    return req


def _show(text: str, limit: int = 60) -> str:
    """Quote user text for an error message: control characters escaped, length capped."""
    shown = text if len(text) <= limit else text[: limit - 1] + "…"
    return repr(shown)


def valid_pool_name(name: str) -> bool:
    """A pool's table name is used in refs, so it must survive `POOL:ID` parsing."""
    return bool(_NAME.match(name))
