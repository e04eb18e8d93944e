"""The explicit registry of pool types: config `type` → adapter class.

An adapter's module is imported when a pool of its type is built: a daemon with one CrateQ pool
does not carry the other adapters' code and wire formats (~1.4 MiB of idle RSS, issue 13).
`ADAPTERS`, every class at once, is for tools and tests.
"""

from __future__ import annotations

import importlib
import time
from typing import Any

from pooldaemon.errors import BadRequest
from pooldaemon.pools.base import Capability, Clock, PoolAdapter, PoolSettings
from pooldaemon.pools.http import PoolHttp

#: Every pool type pooldaemon knows, by the name a config's `type` uses: its module and class.
_REGISTRY: dict[str, tuple[str, str]] = {
    "crateq": ("pooldaemon.pools.crateq", "CrateQ"),
    "harvest": ("pooldaemon.pools.harvest", "HarvestAdapter"),
    "promoonly": ("pooldaemon.pools.promoonly", "PromoOnlyAdapter"),
}


def adapter_class(kind: str) -> type[PoolAdapter] | None:
    """The adapter class for a config `type`, its module imported now; None for an unknown type."""
    entry = _REGISTRY.get(kind)
    if entry is None:
        return None
    module, name = entry
    cls: type[PoolAdapter] = getattr(importlib.import_module(module), name)
    return cls


def build_adapter(
    name: str, config: PoolSettings, http: PoolHttp, clock: Clock = time.time
) -> PoolAdapter:
    """The adapter for pool `name`, chosen by `config.type`; no network is touched."""
    kind = config.type
    adapter = adapter_class(str(kind))
    if adapter is None:
        known = ", ".join(sorted(_REGISTRY))
        raise BadRequest(f"pool {name!r}: unknown type {kind!r} (known: {known})")
    return adapter(name, config, http, clock)


def __getattr__(attr: str) -> Any:
    # `ADAPTERS`: every adapter class, imported on first use of the name (PEP 562).
    if attr == "ADAPTERS":
        adapters: dict[str, type[PoolAdapter]] = {}
        for kind in _REGISTRY:
            cls = adapter_class(kind)
            assert cls is not None
            adapters[kind] = cls
        return adapters
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


__all__ = ["ADAPTERS", "Capability", "PoolAdapter", "adapter_class", "build_adapter"]
