"""The state database: the only owner of SQL and transactions."""

from pooldaemon.store.db import Store, StoreError

__all__ = ["Store", "StoreError"]
