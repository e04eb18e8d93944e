"""Client TLS whose CA certificates are read at the first handshake, not when aiohttp is imported.

Importing aiohttp builds two TLS contexts (`aiohttp.connector`), each reading the system's CA
store: ~3 MiB of RSS and ~55 ms of CPU before the daemon does anything, and pooldaemon never uses
the unverified one (issue 13). `import_aiohttp()`, called before anything else imports aiohttp,
imports it with that reading deferred and puts in place of aiohttp's two contexts ones that read
the store when they first connect; every session's `ssl=True` (the default) shares the verified
one. The first handshake reads the store on the event loop (~25 ms, once).
"""

from __future__ import annotations

import ssl
import sys
import threading
from typing import Any

#: aiohttp's module-level contexts: verified (the default for `ssl=True`) and `ssl=False`'s.
_AIOHTTP_CONTEXTS = ("_SSL_CONTEXT_VERIFIED", "_SSL_CONTEXT_UNVERIFIED")


class TrustOnFirstUse(ssl.SSLContext):
    """A client context that reads the default CA certificates just before its first connection;
    until then it verifies as an empty store would (nothing), so it is never used without them."""

    _trust_lock = threading.Lock()
    _trust_loaded = False

    def load_trust(self) -> None:
        """Read the system's CA certificates into this context, once."""
        if self._trust_loaded:
            return
        with self._trust_lock:
            if not self._trust_loaded:
                self.load_default_certs(ssl.Purpose.SERVER_AUTH)
                self._trust_loaded = True

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        self.load_trust()
        return super().wrap_bio(*args, **kwargs)

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        self.load_trust()
        return super().wrap_socket(*args, **kwargs)


def client_context(*, verified: bool = True) -> TrustOnFirstUse:
    """A client context set up as aiohttp's own (`_make_ssl_context`), its store not read yet."""
    context = TrustOnFirstUse(ssl.PROTOCOL_TLS_CLIENT)
    if not verified:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.options |= ssl.OP_NO_COMPRESSION
    context.set_alpn_protocols(("http/1.1",))
    return context


def import_aiohttp() -> None:
    """Import aiohttp without its start-up reads of the CA store (see the module docstring).

    A no-op when aiohttp is already imported. Should a later aiohttp keep its contexts elsewhere,
    the contexts it built are given their certificates here, as aiohttp would have: slower, never
    a context that trusts nothing."""
    if "aiohttp" in sys.modules:
        return
    deferred: list[ssl.SSLContext] = []

    def defer(context: ssl.SSLContext) -> None:
        deferred.append(context)

    # Only for the length of the import: the method is the C base class's, shadowed and then
    # uncovered again.
    assert "set_default_verify_paths" not in vars(ssl.SSLContext)
    ssl.SSLContext.set_default_verify_paths = defer  # type: ignore[method-assign,assignment]
    try:
        import aiohttp.connector as connector
    finally:
        del ssl.SSLContext.set_default_verify_paths
    replaced: set[int] = set()
    for name, verified in zip(_AIOHTTP_CONTEXTS, (True, False), strict=True):
        built = getattr(connector, name, None)
        if isinstance(built, ssl.SSLContext) and any(built is c for c in deferred):
            setattr(connector, name, client_context(verified=verified))
            replaced.add(id(built))
    for context in deferred:
        if id(context) not in replaced:
            context.set_default_verify_paths()
