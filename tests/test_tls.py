"""pooldaemon/tls.py: aiohttp imported without reading the CA store, which is read at the first
TLS handshake and then verifies as before. Run in a fresh interpreter each (the test process has
imported aiohttp long ago), against a real TLS server on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

#: A TLS server with the given certificate; one GET through a default aiohttp session.
_PROBE = """
import asyncio, json, ssl, sys
from pooldaemon import tls
tls.import_aiohttp()
import aiohttp, aiohttp.connector
from aiohttp import web

async def main():
    shared = aiohttp.connector._SSL_CONTEXT_VERIFIED
    seen = {"before": shared.cert_store_stats()["x509_ca"], "lazy": type(shared).__name__}
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(sys.argv[2], sys.argv[1])
    app = web.Application()
    app.router.add_get("/", lambda request: web.Response(text="hello"))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"https://127.0.0.1:{port}/") as answer:
                seen["body"] = await answer.text()
    except aiohttp.ClientConnectorCertificateError as err:
        seen["refused"] = err.certificate_error.verify_message
    finally:
        await runner.cleanup()
    seen["after"] = shared.cert_store_stats()["x509_ca"]
    print(json.dumps(seen))

asyncio.run(main())
"""


def _probe(certificate: tuple[Path, Path], **env: str) -> dict[str, Any]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SSL_CERT_")}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, str(certificate[0]), str(certificate[1])],
        env={**base, "PYTHONPATH": str(ROOT), **env},
        cwd=ROOT,
        capture_output=True,
        timeout=60,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def test_the_ca_store_is_read_at_the_first_handshake(certificate: tuple[Path, Path]) -> None:
    # SSL_CERT_FILE is OpenSSL's default store location: here, only the test's certificate.
    seen = _probe(certificate, SSL_CERT_FILE=str(certificate[1]))
    assert seen["lazy"] == "TrustOnFirstUse"
    assert seen["before"] == 0
    assert seen["body"] == "hello"
    assert seen["after"] == 1


def test_a_certificate_outside_the_store_is_still_refused(certificate: tuple[Path, Path]) -> None:
    seen = _probe(certificate)
    assert "body" not in seen
    assert "self-signed" in seen["refused"] or "self signed" in seen["refused"]
    assert seen["after"] > 0  # the system's store was read for that handshake
