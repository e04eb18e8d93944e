"""What the daemon does not carry while idle (issue 13: idle RSS): modules imported only when
used. Checked in a fresh interpreter, since the test process imports everything."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import OFFLINE_CRATEQ

ROOT = Path(__file__).resolve().parents[1]

_PROBE = """
import json, sys
import pooldaemon.cli.daemon, pooldaemon.daemon
from pooldaemon.alerts import Alerts
from pooldaemon.informed_config import NotifyConfig
from pooldaemon.downloader import tags
tags.sniff_media(b"ID3")  # sniffing needs no tag library
Alerts(NotifyConfig(), env={})  # no [notify] urls, no desktop: nothing to send with
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


def _imported(code: str) -> set[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, check=True
    )
    return set(json.loads(out.stdout))


def test_the_idle_daemon_imports_no_tag_notification_or_browser_library() -> None:
    loaded = _imported(_PROBE)
    assert "pooldaemon" in loaded
    for heavy in ("mutagen", "apprise", "selenium", "pydantic_settings"):
        assert heavy not in loaded, f"{heavy} is imported by an idle daemon"


def test_the_tag_library_arrives_with_the_first_tag_write(tmp_path: Path) -> None:
    code = f"""
import json, sys
from pathlib import Path
from pooldaemon.downloader import tags
path = Path({str(tmp_path / "a.mp3")!r})
path.write_bytes(b"\\xff\\xfb\\x90\\x64" + bytes(413))
tags.write_tags(path, {{"artist": "A"}})
print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}})))
"""
    assert "mutagen" in _imported(code)


#: `pooldaemon run` in this interpreter until READY=1, then what is imported and whether the
#: pools' TLS context has read the CA store, printed as JSON once SIGTERM stopped it.
_RUN_PROBE = """
import json, os, signal, socket, sys, threading
from pooldaemon.cli.daemon import main

notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
notify.bind(sys.argv[2])
os.environ["NOTIFY_SOCKET"] = sys.argv[2]
seen = {}

def at_ready():
    notify.settimeout(60)
    while b"READY=1" not in notify.recv(65536).split(b"\\n"):
        pass
    seen["modules"] = sorted(k for k, v in sys.modules.copy().items() if v is not None)
    import aiohttp.connector
    seen["ca_certs"] = aiohttp.connector._SSL_CONTEXT_VERIFIED.cert_store_stats()["x509_ca"]
    os.kill(os.getpid(), signal.SIGTERM)

threading.Thread(target=at_ready, daemon=True).start()
try:
    main(["run", "--config", sys.argv[1]])
except SystemExit as end:
    seen["exit"] = end.code
print(json.dumps(seen))
"""


def _idle_daemon(tmp_path: Path, extra: str = "") -> dict[str, Any]:
    config = tmp_path / "c.toml"
    config.write_text(
        f'[daemon]\ndownload_dir = "{tmp_path}/lib"\nstate_dir = "{tmp_path}/state"\n'
        f'socket_path = "{tmp_path}/s/control.sock"\n{OFFLINE_CRATEQ}{extra}'
    )
    config.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POOLDAEMON_", "NOTIFY_"))}
    out = subprocess.run(
        [sys.executable, "-c", _RUN_PROBE, str(config), str(tmp_path / "notify")],
        env={**env, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        capture_output=True,
        timeout=120,
        check=True,
    )
    seen: dict[str, Any] = json.loads(out.stdout.splitlines()[-1])
    assert seen["exit"] == 0
    return seen


#: Code an idle daemon with one CrateQ pool, no rules and the dashboard off does not need: the
#: other pools' adapters, the rules, the dashboard, the XML parser, tags, notifications, the
#: terminal UI, the simulators, anyio's event-loop backend (the drop folder's watch runs without),
#: frozenlist's C++ extension (it loads libstdc++), the checksum library before the first
#: download and the export writers before the first export. Of pooldaemon's own code, what
#: runs only once something happens: a download's transfer and finishing (the unzipper and
#: the tag writer with it), an export's writing path, the library's file reading (adopt,
#: audit, heal) and the catalog's query builder (a search).
_NOT_AT_IDLE = (
    "pooldaemon.pools.harvest",
    "pooldaemon.pools.promoonly",
    "pooldaemon.rules",
    "pooldaemon.web.app",
    "defusedxml",
    "mutagen",
    "apprise",
    "rich",
    "pooldaemon.sim",
    "anyio._backends",
    "frozenlist._frozenlist",
    "blake3",
    "pooldaemon.exports.",  # the package imports its writing path (body, reuse, writefile…)
    "pooldaemon.export_library",
    "pooldaemon.downloader.fetch",
    "pooldaemon.downloader.part",
    "pooldaemon.downloader.answer",
    "pooldaemon.downloader.finish",
    "pooldaemon.downloader.tags",
    "pooldaemon.downloader.digest",
    "pooldaemon.downloader.unzip",
    "pooldaemon.library.scan",
    "pooldaemon.library.files",
    "pooldaemon.audiohash",
    "pooldaemon.store.search",
)


def test_an_idle_daemon_runs_without_the_code_its_config_does_not_use(tmp_path: Path) -> None:
    seen = _idle_daemon(tmp_path, "\n[web]\nenabled = false\n")
    modules = set(seen["modules"])
    assert "pooldaemon.pools.crateq" in modules  # the configured pool's adapter is there
    loaded = [m for m in modules if m.startswith(_NOT_AT_IDLE)]
    assert loaded == [], f"imported by an idle daemon that does not use them: {loaded}"
    # Nothing connected over TLS yet: the CA store has not been read (pooldaemon/tls.py).
    assert seen["ca_certs"] == 0


def test_the_config_brings_in_what_it_uses(tmp_path: Path) -> None:
    extra = (
        '\n[pools.promo]\ntype = "promoonly"\nbase_url = "http://127.0.0.1:9/"\n'
        'email = "dj@example.com"\npassword = "p-123456"\n\n[web]\nlisten = "127.0.0.1:0"\n\n'
        '[[rules]]\nname = "house"\ngenre = ["house"]\n'
    )
    modules = set(_idle_daemon(tmp_path, extra)["modules"])
    for used in ("pooldaemon.pools.promoonly", "pooldaemon.rules", "pooldaemon.web.app"):
        assert used in modules
    assert "pooldaemon.pools.harvest" not in modules
