"""The explicit registry: every adapter constructs without network and says what
it supports."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from pooldaemon.config import POOL_TYPES
from pooldaemon.errors import BadRequest, Unsupported
from pooldaemon.models import Request
from pooldaemon.pools import ADAPTERS, build_adapter
from pooldaemon.pools.base import Capability, PoolAdapter
from pooldaemon.pools.http import PoolHttp
from pooldaemon.refs import KINDS

#: Minimal valid config tables per type, as a user would write them.
CONFIGS: dict[str, dict[str, Any]] = {
    "crateq": {"type": "crateq", "api_key": "key12345", "username": "dj", "password": "secret1"},
    "promoonly": {"type": "promoonly", "email": "dj@example.com", "password": "secret1"},
    "harvest": {
        "type": "harvest",
        "client_id": "client",
        "client_secret": "secret1",
        "access_key": "access1",
        "username": "dj",
        "password": "secret1",
    },
}


@pytest.fixture
async def http() -> AsyncIterator[PoolHttp]:
    # A session that is never used: constructing an adapter must not touch the network.
    async with aiohttp.ClientSession() as session:
        yield PoolHttp(session, "registry")


def test_registry_is_a_plain_dict_of_adapter_classes() -> None:
    assert type(ADAPTERS) is dict
    assert "crateq" in ADAPTERS
    for name, adapter in ADAPTERS.items():
        assert issubclass(adapter, PoolAdapter)
        assert adapter.type_name == name
        # Every adapter type has a config type of the same name (docs/interface.md §2 `type = "…"`).
        assert name in POOL_TYPES


@pytest.mark.parametrize("kind", sorted(ADAPTERS))
async def test_each_adapter_constructs_offline_and_declares_support(
    kind: str, http: PoolHttp
) -> None:
    config = POOL_TYPES[kind].model_validate(CONFIGS[kind])
    adapter = build_adapter(f"my{kind}", config, http)
    assert isinstance(adapter, ADAPTERS[kind])
    assert adapter.name == f"my{kind}"
    assert adapter.capabilities
    assert all(isinstance(cap, Capability) for cap in adapter.capabilities)
    assert adapter.kinds and set(adapter.kinds) <= set(KINDS)
    # Nothing signed in yet: no token, no state worth saving.
    assert adapter.token_expires_at() is None
    assert adapter.state() == {}
    if Capability.CATALOG not in adapter.capabilities:
        with pytest.raises(Unsupported):
            adapter.catalog()
    if Capability.REDOWNLOAD not in adapter.capabilities:
        # Without a redownload endpoint the pool downloads again plainly (docs/interface.md §1).
        message = await adapter.redownload(["1"], "lost file")
        assert isinstance(message, str)


async def test_crateq_declares_what_seed_004_offers(http: PoolHttp) -> None:
    config = POOL_TYPES["crateq"].model_validate(CONFIGS["crateq"])
    adapter = build_adapter("crateq", config, http)
    assert adapter.capabilities == {
        Capability.CATALOG,
        Capability.INCREMENTAL,
        Capability.LOOKUPS,
        Capability.QUEUE,
        Capability.QUEUE_EDIT,
    }
    assert adapter.kinds == ("track",)
    assert not adapter.supports(Capability.REDOWNLOAD)


async def test_unknown_type_is_refused_with_the_known_ones(http: PoolHttp) -> None:
    class Fake:
        type = "napster"

    with pytest.raises(BadRequest, match=r"unknown type 'napster' \(known: .*crateq"):
        build_adapter("x", Fake(), http)


def test_request_kinds_come_from_the_registry() -> None:
    # refs.parse_ref takes pool name → kinds; the daemon builds that map from these classes.
    assert Request("crateq", "1").kind in ADAPTERS["crateq"].kinds
