"""The explicit registry of pool types: config `type` → adapter class."""

from __future__ import annotations

import time

from pooldaemon.errors import BadRequest
from pooldaemon.pools.base import Capability, Clock, PoolAdapter, PoolSettings
from pooldaemon.pools.crateq import CrateQ
from pooldaemon.pools.harvest import HarvestAdapter
from pooldaemon.pools.http import PoolHttp
from pooldaemon.pools.promoonly import PromoOnlyAdapter

#: Every pool type pooldaemon knows, by the name a config's `type` uses.
ADAPTERS: dict[str, type[PoolAdapter]] = {
    "crateq": CrateQ,
    "harvest": HarvestAdapter,
    "promoonly": PromoOnlyAdapter,
}


def build_adapter(
    name: str, config: PoolSettings, http: PoolHttp, clock: Clock = time.time
) -> PoolAdapter:
    """The adapter for pool `name`, chosen by `config.type`; no network is touched."""
    kind = config.type
    adapter = ADAPTERS.get(str(kind))
    if adapter is None:
        known = ", ".join(sorted(ADAPTERS))
        raise BadRequest(f"pool {name!r}: unknown type {kind!r} (known: {known})")
    return adapter(name, config, http, clock)


__all__ = ["ADAPTERS", "Capability", "PoolAdapter", "build_adapter"]
