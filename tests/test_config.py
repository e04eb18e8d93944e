"""The config layer: TOML + env overrides → one frozen, typed Config, or one line per problem."""

import base64
import json
import os
import re
import sys
import tomllib
from pathlib import Path

import platformdirs
import pytest
from pydantic import SecretStr, ValidationError

from pooldaemon.config import (
    POOL_TYPES,
    SECRET_MASK,
    Config,
    ConfigError,
    CrateQConfig,
    DaemonConfig,
    HarvestConfig,
    PromoOnlyConfig,
    config_warnings,
    effective_dict,
    load_config,
    render_effective,
    resolve_config_path,
    toml_keys,
)
from pooldaemon.pools import ADAPTERS, Capability
from pooldaemon.units import parse_size

REPO = Path(__file__).resolve().parents[1]
MIB = 1024**2
XDG_ONLY = pytest.mark.skipif(
    sys.platform in ("darwin", "win32"), reason="XDG directory layout (Linux and other Unix)"
)

CRATEQ = """
[pools.crateq]
type = "crateq"
api_key = "k-123"
username = "dj"
password = "pw-crateq"
"""
PROMO = """
[pools.promoonly]
type = "promoonly"
email = "dj@example.com"
password = "pw-promo"
"""
HARVEST = """
[pools.harvest]
type = "harvest"
client_id = "cid"
client_secret = "csecret"
access_key = "akey"
username = "dj"
password = "pw-harvest"
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A minimal environment whose HOME is a temp dir (os.environ is never touched)."""
    home = tmp_path / "home"
    home.mkdir()
    return {"HOME": str(home), "XDG_RUNTIME_DIR": str(tmp_path / "run")}


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


def load(tmp_path: Path, env: dict[str, str], text: str, **extra_env: str) -> Config:
    return load_config(write(tmp_path, text), env={**env, **extra_env})


# Each bad config: TOML text, extra env vars, and a substring of the expected message.
# "{tmp}" in the expectation stands for the test's tmp_path.
BAD_CONFIGS = [
    pytest.param(
        CRATEQ + 'queue_interval = "2x"',
        {},
        'pools.crateq.queue_interval: "2x" is not a duration (examples: 90s, 2m, 6h)',
        id="bad-duration",
    ),
    pytest.param(
        '[daemon]\nchunk_size = "8 MiBB"',
        {},
        'daemon.chunk_size: "8 MiBB" is not a size (examples: 8 MiB, 512 KiB, 1 GiB)',
        id="bad-size",
    ),
    pytest.param(
        '[daemon]\nchunk_size = "4 KiB"',
        {},
        "daemon.chunk_size: must be at least 256.0 KiB (got 4.0 KiB)",
        id="size-below-minimum",
    ),
    pytest.param(
        CRATEQ + 'queue_interval = "30s"',
        {},
        "pools.crateq.queue_interval: must be at least 1m (got 30s)",
        id="queue-interval-below-floor",
    ),
    pytest.param(
        HARVEST + 'catalog_interval = "10m"',
        {},
        "pools.harvest.catalog_interval: must be at least 15m (got 10m)",
        id="catalog-interval-below-floor",
    ),
    pytest.param(
        CRATEQ + 'passwrd = "x"',
        {},
        'pools.crateq.passwrd: unknown key (did you mean "password"?)',
        id="unknown-key-suggestion",
    ),
    pytest.param(
        "[daemon]\nfrobnicate = 1",
        {},
        "daemon.frobnicate: unknown key (known keys: download_dir, drop_dir,",
        id="unknown-key-lists-known",
    ),
    pytest.param(
        "[deamon]\nwrite_tags = true",
        {},
        'deamon: unknown key (did you mean "daemon"?)',
        id="unknown-section",
    ),
    pytest.param(
        CRATEQ.replace('"crateq"\n', '"cratex"\n'),
        {},
        'pools.crateq.type: unknown pool type "cratex" (did you mean "crateq"?) '
        "(known: crateq, promoonly, harvest)",
        id="unknown-pool-type",
    ),
    pytest.param(
        '[pools.mine]\nusername = "dj"',
        {},
        'pools.mine: missing required key "type" (one of: crateq, promoonly, harvest)',
        id="missing-pool-type",
    ),
    pytest.param(
        CRATEQ.replace('api_key = "k-123"\n', ""),
        {},
        'pools.crateq: missing required key "api_key"',
        id="missing-required-key",
    ),
    pytest.param(
        CRATEQ + 'password_file = "pw.txt"',
        {},
        'pools.crateq.password_file: give either "password" or "password_file", not both',
        id="secret-and-secret-file",
    ),
    pytest.param(
        CRATEQ.replace('password = "pw-crateq"', 'password_file = "missing.txt"'),
        {},
        'pools.crateq.password_file: cannot read "{tmp}/missing.txt": No such file or directory',
        id="secret-file-missing",
    ),
    pytest.param(
        CRATEQ.replace('password = "pw-crateq"', 'password = ""'),
        {},
        "pools.crateq.password: must not be empty",
        id="empty-secret",
    ),
    pytest.param(
        '[pools.promoonly]\ntype = "promoonly"',
        {},
        "pools.promoonly: missing credentials: give either email and password (sign-in) "
        "or user_id and token (fixed token)",
        id="promoonly-neither-auth-form",
    ),
    pytest.param(
        PROMO + 'user_id = 1\ntoken = "t"',
        {},
        "pools.promoonly: give either email and password (sign-in) or user_id and token "
        "(fixed token), not both",
        id="promoonly-both-auth-forms",
    ),
    pytest.param(
        PROMO.replace('password = "pw-promo"', ""),
        {},
        'pools.promoonly: missing required key "password" (needed with "email")',
        id="promoonly-half-auth-form",
    ),
    pytest.param(
        HARVEST.replace('access_key = "akey"', ""),
        {},
        'pools.harvest: missing required key "access_key" (needed with "client_id")',
        id="harvest-half-client-credentials",
    ),
    pytest.param(
        HARVEST + 'auto_download_from = ["latest", "favorites"]',
        {},
        'pools.harvest.auto_download_from[1]: "favorites" is not a queue source '
        '(use "favourites", "latest" or "playlist:<ID>"; did you mean "favourites"?)',
        id="harvest-bad-queue-source",
    ),
    pytest.param(
        HARVEST + 'auto_download_from = ["playlist:"]',
        {},
        'pools.harvest.auto_download_from[0]: "playlist:" is not a queue source',
        id="harvest-playlist-without-id",
    ),
    pytest.param(
        HARVEST + 'format = "flac"',
        {},
        'pools.harvest.format: "flac" is not a format (use mp3, wav, aiff, or a format ID',
        id="harvest-bad-format",
    ),
    pytest.param(
        HARVEST + 'wire = "soap"',
        {},
        'pools.harvest.wire: must be one of "json" or "xml" (got "soap")',
        id="bad-wire",
    ),
    pytest.param(
        '[daemon]\nfile_template = "{pool}/{genr}/{title}"',
        {},
        "daemon.file_template: unknown placeholder {genr} (allowed: {pool}, {source}, {genre}, "
        "{artist}, {title}, {song}, {version}, {mix}, {advisory}, {bpm}, {key}, {year}, {rule}, "
        "{editor}, {quality}, {id})",
        id="bad-template-field",
    ),
    pytest.param(
        '[daemon]\nfile_template = "{pool}/{genre}"',
        {},
        "daemon.file_template: the file name part (after the last /) must contain {title} or {id}",
        id="template-without-distinct-names",
    ),
    pytest.param(
        '[daemon]\nfile_template = "../{title}"',
        {},
        'daemon.file_template: folder levels must not be empty, "." or ".."',
        id="template-escaping-download-dir",
    ),
    pytest.param(
        CRATEQ + 'download_url = "{base_url}/Content/Download?key={api_key}"',
        {},
        "pools.crateq.download_url: must contain {mediaId}",
        id="download-url-missing-placeholder",
    ),
    pytest.param(
        CRATEQ.replace("[pools.crateq]", "[pools.Crate_Q]"),
        {},
        'pools.Crate_Q: "Crate_Q" is not a valid pool name: use lowercase letters',
        id="bad-pool-name",
    ),
    pytest.param(
        "[daemon]\nchunk_size = 8 MiB\n",
        {},
        "{tmp}/config.toml: line 2, column 16: invalid TOML: ",
        id="toml-syntax-error",
    ),
    pytest.param(
        "[daemon]\nmax_active_downloads = -1",
        {},
        "daemon.max_active_downloads: must be at least 1 (got -1)",
        id="negative-number",
    ),
    pytest.param(
        "[daemon]\nconnections_per_download = 17",
        {},
        "daemon.connections_per_download: must be at most 16 (got 17)",
        id="number-above-maximum",
    ),
    pytest.param(
        "[daemon]\nmin_free_space = -5",
        {},
        "daemon.min_free_space: -5 is not a size (examples: 8 MiB, 512 KiB, 1 GiB)",
        id="negative-size",
    ),
    pytest.param(
        '[daemon]\nmax_attempts = "many"',
        {},
        'daemon.max_attempts: must be a whole number (got "many")',
        id="not-a-number",
    ),
    pytest.param(
        '[daemon]\nlog_format = "xml"',
        {},
        'daemon.log_format: must be one of "auto", "json" or "console" (got "xml")',
        id="bad-log-format",
    ),
    pytest.param(
        "[daemon]\nmax_extract_entries = 0",
        {},
        "daemon.max_extract_entries: must be at least 1",
        id="no-extract-entries",
    ),
    pytest.param(
        "[daemon]\nmax_extract_ratio = 1",
        {},
        "daemon.max_extract_ratio: must be at least 2",
        id="extract-ratio-below-2",
    ),
    pytest.param(
        CRATEQ + 'base_url = "ftp://api.crateq.com"',
        {},
        'pools.crateq.base_url: must be an http:// or https:// URL (got "ftp://api.crateq.com")',
        id="bad-url",
    ),
    pytest.param(
        '[daemon]\ndownload_dir = "$MUSIC_ROOT/pools"',
        {},
        "daemon.download_dir: uses $MUSIC_ROOT, which is not set in the environment",
        id="path-with-unset-variable",
    ),
    pytest.param(
        "[daemon]\nsocket_path = '/tmp/" + "x" * 120 + "/control.sock'",
        {},
        "daemon.socket_path: is 138 bytes long, more than the",
        id="socket-path-too-long",
    ),
    pytest.param(
        "",
        {"POOLDAEMON_DAEMON__CHUNK_SIZE": "4x"},
        'daemon.chunk_size: "4x" is not a size (examples: 8 MiB, 512 KiB, 1 GiB) '
        "(from POOLDAEMON_DAEMON__CHUNK_SIZE)",
        id="env-bad-value",
    ),
    pytest.param(
        CRATEQ,
        {"POOLDAEMON_POOLS__CRATEQ__QUEUE_INTERVAL": "10s"},
        "pools.crateq.queue_interval: must be at least 1m (got 10s): polling faster risks the "
        "pool's rate limits (from POOLDAEMON_POOLS__CRATEQ__QUEUE_INTERVAL)",
        id="env-below-floor",
    ),
    pytest.param(
        CRATEQ,
        {"POOLDAEMON_POOLS__CRATEQ__PASSWROD": "x"},
        'pools.crateq.passwrod: unknown key (did you mean "password"?) '
        "(from POOLDAEMON_POOLS__CRATEQ__PASSWROD)",
        id="env-unknown-key",
    ),
    pytest.param(
        "",
        {"POOLDAEMON_DAEMON_CHUNK_SIZE": "4 MiB"},
        "daemon_chunk_size: unknown key (from POOLDAEMON_DAEMON_CHUNK_SIZE; settings are named "
        "POOLDAEMON_<SECTION>__<KEY>, e.g. POOLDAEMON_DAEMON__CHUNK_SIZE)",
        id="env-single-underscore",
    ),
]


@pytest.mark.parametrize(("text", "extra_env", "expected"), BAD_CONFIGS)
def test_bad_config_is_one_line_per_problem(
    tmp_path: Path, env: dict[str, str], text: str, extra_env: dict[str, str], expected: str
) -> None:
    (tmp_path / "pw.txt").write_text("from-file\n")
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, env, text, **extra_env)
    message = str(caught.value)
    assert expected.replace("{tmp}", str(tmp_path)) in message
    assert message.splitlines() == caught.value.problems
    for line in caught.value.problems:
        # `<key path>: <reason>`, never pydantic's multi-line text.
        assert re.match(r"^[^\s:]+(?: [^\s:]+)*: \S", line), line
        assert "pydantic" not in line
        assert "validation error" not in line.lower()


def test_every_problem_is_reported_at_once(tmp_path: Path, env: dict[str, str]) -> None:
    text = (
        '[daemon]\nchunk_size = "huge"\nmax_active_downloads = 0\nlog_format = "xml"\n'
        + CRATEQ
        + 'queue_interval = "5s"\npasswrd = "x"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, env, text)
    assert caught.value.problems == [
        "daemon.max_active_downloads: must be at least 1 (got 0)",
        'daemon.chunk_size: "huge" is not a size (examples: 8 MiB, 512 KiB, 1 GiB)',
        'daemon.log_format: must be one of "auto", "json" or "console" (got "xml")',
        "pools.crateq.queue_interval: must be at least 1m (got 5s): polling faster risks the "
        "pool's rate limits",
        'pools.crateq.passwrd: unknown key (did you mean "password"?)',
    ]


def test_errors_never_show_a_secret(tmp_path: Path, env: dict[str, str]) -> None:
    canary = "CANARY-7f3a9"
    text = (
        f'[pools.crateq]\ntype = "crateq"\napi_key = 73519264\nusername = "dj"\n'
        f'password = "{canary}"\nqueue_interval = "1s"\n'
        f'[pools.promoonly]\ntype = "promoonly"\nuser_id = 1\ntoken = ["{canary}"]\n'
    )
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, env, text)
    message = str(caught.value)
    assert "pools.crateq.api_key: must be a string" in message
    assert "pools.promoonly.token: must be a string" in message
    assert canary not in message
    assert "73519264" not in message


def test_missing_explicit_config_is_an_error(tmp_path: Path, env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: config file not found"):
        load_config(tmp_path / "nope.toml", env=env)
    with pytest.raises(ConfigError, match=r"gone\.toml: config file not found"):
        load_config(env={**env, "POOLDAEMON_CONFIG": str(tmp_path / "gone.toml")})


# --- good paths --------------------------------------------------------------------------------


@XDG_ONLY
def test_defaults_without_a_config_file(tmp_path: Path) -> None:
    home = tmp_path / "home"
    cfg = load_config(env={"HOME": str(home)})
    assert cfg.path is None
    assert cfg.pools == {}
    d = cfg.daemon
    assert d.download_dir == home / "Music/RecordPools"
    assert d.drop_dir == home / "Music/RecordPools/Requests"
    assert d.state_dir == home / ".local/share/pooldaemon"
    assert d.socket_path == home / ".local/share/pooldaemon/control.sock"
    assert (d.max_active_downloads, d.connections_per_download, d.max_attempts) == (3, 4, 5)
    assert d.chunk_size_bytes == 8 * MIB
    assert d.bandwidth_limit_bps == 0
    assert d.max_extract_size_bytes == 8 * 1024**3
    assert d.min_free_space_bytes == 512 * MIB
    assert d.speed_floor_bps == 16 * 1024
    assert (d.stall_timeout_s, d.speed_grace_s, d.drop_rescan_interval_s) == (30.0, 20.0, 30.0)
    assert d.file_template == "{pool}/{genre}/{artist} - {title} ({mix})"
    assert (d.write_tags, d.force_polling, d.log_format) == (True, False, "auto")


@XDG_ONLY
def test_xdg_directories_from_env(tmp_path: Path) -> None:
    env = {
        "HOME": str(tmp_path / "home"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "conf"),
        "XDG_RUNTIME_DIR": str(tmp_path / "run"),
    }
    assert resolve_config_path(env=env) == tmp_path / "conf/pooldaemon/config.toml"
    (tmp_path / "conf/pooldaemon").mkdir(parents=True)
    (tmp_path / "conf/pooldaemon/config.toml").write_text("[daemon]\nmax_attempts = 9\n")
    cfg = load_config(env=env)
    assert cfg.path == tmp_path / "conf/pooldaemon/config.toml"
    assert cfg.daemon.max_attempts == 9
    assert cfg.daemon.state_dir == tmp_path / "data/pooldaemon"
    assert cfg.daemon.socket_path == tmp_path / "run/pooldaemon/control.sock"


def test_state_dir_default_is_platformdirs(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("POOLDAEMON_")}
    cfg = load_config(write(tmp_path, ""), env=env)
    assert cfg.daemon.state_dir == Path(platformdirs.user_data_dir("pooldaemon", appauthor=False))


def test_config_path_order(tmp_path: Path, env: dict[str, str]) -> None:
    by_env = write(tmp_path, "[daemon]\nmax_attempts = 7\n", name="env.toml")
    by_arg = write(tmp_path, "[daemon]\nmax_attempts = 8\n", name="arg.toml")
    env = {**env, "POOLDAEMON_CONFIG": str(by_env)}
    assert load_config(env=env).daemon.max_attempts == 7
    assert load_config(by_arg, env=env).daemon.max_attempts == 8
    assert load_config(by_arg, env=env).path == by_arg


def test_env_overrides_merge_into_the_toml(tmp_path: Path, env: dict[str, str]) -> None:
    text = '[daemon]\nmax_attempts = 7\nchunk_size = "1 MiB"\n' + CRATEQ + HARVEST
    cfg = load(
        tmp_path,
        env,
        text,
        POOLDAEMON_DAEMON__CHUNK_SIZE="4MiB",
        POOLDAEMON_POOLS__CRATEQ__PASSWORD="pw-from-env",
        POOLDAEMON_POOLS__CRATEQ__ENABLED="false",
        POOLDAEMON_POOLS__HARVEST__AUTO_DOWNLOAD_FROM="favourites, playlist:ab12",
        POOLDAEMON_POOLS__HARVEST__QUEUE_INTERVAL="10m",
    )
    assert cfg.daemon.chunk_size_bytes == 4 * MIB
    assert cfg.daemon.max_attempts == 7  # the rest of [daemon] stays
    crateq = cfg.pools["crateq"]
    assert isinstance(crateq, CrateQConfig)
    assert crateq.password.get_secret_value() == "pw-from-env"
    assert crateq.username == "dj"  # the rest of the pool table stays
    assert crateq.enabled is False
    harvest = cfg.pools["harvest"]
    assert isinstance(harvest, HarvestConfig)
    assert harvest.auto_download_from == ("favourites", "playlist:ab12")
    assert harvest.queue_interval_s == 600.0
    assert set(cfg.enabled_pools()) == {"harvest"}


def test_env_can_add_a_whole_pool_and_values_stay_literal(
    tmp_path: Path, env: dict[str, str]
) -> None:
    cfg = load_config(
        env={
            **env,
            "POOLDAEMON_POOLS__PO__TYPE": "promoonly",
            "POOLDAEMON_POOLS__PO__USER_ID": "42",
            "POOLDAEMON_POOLS__PO__TOKEN": "null",
            "POOLDAEMON_POOLS__HV__TYPE": "harvest",
            "POOLDAEMON_POOLS__HV__USERNAME": "123",
            "POOLDAEMON_POOLS__HV__PASSWORD": '["not", "json"]',
            "POOLDAEMON_POOLS__HV__SERVICE_TOKEN": '"quoted"',
            "POOLDAEMON_POOLS__HV__AUTO_DOWNLOAD_FROM": '["latest", "playlist:x1"]',
        }
    )
    po = cfg.pools["po"]
    assert isinstance(po, PromoOnlyConfig)
    assert po.user_id == 42
    assert po.token is not None and po.token.get_secret_value() == "null"
    hv = cfg.pools["hv"]
    assert isinstance(hv, HarvestConfig)
    assert hv.username == "123"
    assert hv.password.get_secret_value() == '["not", "json"]'
    assert hv.service_token is not None and hv.service_token.get_secret_value() == '"quoted"'
    assert hv.auto_download_from == ("latest", "playlist:x1")


def test_secret_files(tmp_path: Path, env: dict[str, str]) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets/crateq-pw").write_text("s3cret pass \n")
    (tmp_path / "secrets/api").write_bytes(b"k-from-file\r\n")
    (tmp_path / "harvest-token").write_text("tok\n\n")
    text = (
        CRATEQ.replace('password = "pw-crateq"', 'password_file = "secrets/crateq-pw"').replace(
            'api_key = "k-123"', f'api_key_file = "{tmp_path}/secrets/api"'
        )
        + '[pools.harvest]\ntype = "harvest"\nusername = "dj"\npassword = "p"\n'
    )
    cfg = load(
        tmp_path,
        env,
        text,
        POOLDAEMON_POOLS__HARVEST__SERVICE_TOKEN_FILE=str(tmp_path / "harvest-token"),
    )
    crateq = cfg.pools["crateq"]
    assert isinstance(crateq, CrateQConfig)
    # Relative to the config file; one trailing newline (LF or CRLF) removed, nothing else.
    assert crateq.password.get_secret_value() == "s3cret pass "
    assert crateq.api_key.get_secret_value() == "k-from-file"
    harvest = cfg.pools["harvest"]
    assert isinstance(harvest, HarvestConfig)
    assert harvest.service_token is not None
    assert harvest.service_token.get_secret_value() == "tok\n"


def test_paths_are_expanded_and_absolute(tmp_path: Path, env: dict[str, str]) -> None:
    home = Path(env["HOME"])
    text = (
        '[daemon]\ndownload_dir = "~/dl"\ndrop_dir = "${DROP}/in"\nstate_dir = "state"\n'
        'socket_path = "$XDG_RUNTIME_DIR/x/../pd.sock"\n'
    )
    cfg = load(tmp_path, env, text, DROP=str(tmp_path / "drop"))
    assert cfg.daemon.download_dir == home / "dl"
    assert cfg.daemon.drop_dir == tmp_path / "drop/in"
    assert cfg.daemon.state_dir == tmp_path / "state"  # relative to the config file
    assert cfg.daemon.socket_path == tmp_path / "run/pd.sock"


def test_drop_dir_follows_download_dir(tmp_path: Path, env: dict[str, str]) -> None:
    cfg = load(tmp_path, env, '[daemon]\ndownload_dir = "~/Pools"\n')
    assert cfg.daemon.drop_dir == Path(env["HOME"]) / "Pools/Requests"


def test_units_are_converted_once(tmp_path: Path, env: dict[str, str]) -> None:
    text = (
        '[daemon]\nbandwidth_limit = "2 MiB/s"\nspeed_floor = "0"\nstall_timeout = 45\n'
        + CRATEQ
        + 'catalog_interval = "1h30m"\nqueue_interval = "90s"\n'
        + HARVEST
        + 'format = "19B8F5935503ADDE"\n'
    )
    cfg = load(tmp_path, env, text)
    assert cfg.daemon.bandwidth_limit_bps == 2 * MIB
    assert cfg.daemon.speed_floor_bps == 0
    assert cfg.daemon.stall_timeout_s == 45.0
    crateq = cfg.pools["crateq"]
    assert (crateq.catalog_interval_s, crateq.queue_interval_s) == (5400.0, 90.0)
    harvest = cfg.pools["harvest"]
    assert isinstance(harvest, HarvestConfig)
    assert harvest.queue_interval_s == 300.0  # Harvest's own default
    assert harvest.format == "19B8F5935503ADDE"
    assert harvest.wire == "json"


def test_config_is_frozen(tmp_path: Path, env: dict[str, str]) -> None:
    cfg = load(tmp_path, env, CRATEQ)
    with pytest.raises(ValidationError):
        cfg.daemon.max_active_downloads = 9  # type: ignore[misc]
    with pytest.raises(ValidationError):
        cfg.pools["crateq"].enabled = False  # type: ignore[misc]


def test_secrets_lists_every_secret(tmp_path: Path, env: dict[str, str]) -> None:
    text = (
        CRATEQ
        + HARVEST
        + '[pools.po2]\ntype = "promoonly"\nuser_id = 7\ntoken = "tok-7"\nenabled = false\n'
    )
    cfg = load(tmp_path, env, text)
    bearer = base64.b64encode(b"7:tok-7").decode()  # docs/interface.md §6: Base64(userid:token)
    assert set(cfg.secrets()) == {
        "k-123",
        "pw-crateq",
        "csecret",
        "akey",
        "pw-harvest",
        "tok-7",
        bearer,
    }


def test_every_secret_field_is_declared() -> None:
    for model in POOL_TYPES.values():
        secret_fields = {
            name
            for name, field in model.model_fields.items()
            if "SecretStr" in str(field.annotation)
        }
        assert secret_fields == set(model.SECRETS), model.__name__
    assert not any("SecretStr" in str(f.annotation) for f in DaemonConfig.model_fields.values())


def test_render_effective_masks_secrets(tmp_path: Path, env: dict[str, str]) -> None:
    canary = "CANARY-c0ffee"
    text = CRATEQ.replace("pw-crateq", canary) + HARVEST + PROMO + '[daemon]\nchunk_size = "4 MiB"'
    cfg = load(tmp_path, env, text)
    rendered = render_effective(cfg)
    assert canary not in rendered
    assert 'password = "********"' in rendered
    assert 'chunk_size = "4 MiB"' in rendered
    assert 'queue_interval = "2m"' in rendered
    assert "[pools.harvest]" in rendered
    # It is TOML, and loading it back gives the same settings (secrets aside).
    again = load_config(write(tmp_path, rendered, name="rendered.toml"), env=env)
    assert again.daemon == cfg.daemon
    for name, pool in cfg.pools.items():
        reloaded = again.pools[name]
        for field in type(pool).model_fields:
            value = getattr(pool, field)
            if isinstance(value, SecretStr):
                assert getattr(reloaded, field).get_secret_value() == SECRET_MASK
            else:
                assert getattr(reloaded, field) == value, field


def test_effective_dict_is_json_and_masked(tmp_path: Path, env: dict[str, str]) -> None:
    canary = "CANARY-d1c7"
    cfg = load(tmp_path, env, CRATEQ.replace("k-123", canary))
    data = effective_dict(cfg)
    text = json.dumps(data)
    assert canary not in text
    assert data["path"] == str(tmp_path / "config.toml")
    assert data["daemon"]["chunk_size_bytes"] == 8 * MIB
    assert data["daemon"]["download_dir"] == str(Path(env["HOME"]) / "Music/RecordPools")
    assert data["pools"]["crateq"]["api_key"] == SECRET_MASK
    assert data["pools"]["crateq"]["queue_interval_s"] == 120.0
    assert data["pools"]["crateq"]["type"] == "crateq"


def test_warns_when_config_with_secrets_is_readable_by_others(
    tmp_path: Path, env: dict[str, str]
) -> None:
    path = write(tmp_path, CRATEQ)
    cfg = load_config(path, env=env)
    assert config_warnings(cfg) == []
    path.chmod(0o644)
    warnings = config_warnings(cfg, path)
    assert len(warnings) == 1
    assert str(path) in warnings[0]
    assert "0644" in warnings[0]
    assert f"chmod 600 {path}" in warnings[0]


def test_no_warning_when_the_file_holds_no_secret(tmp_path: Path, env: dict[str, str]) -> None:
    (tmp_path / "pw").write_text("p\n")
    path = write(tmp_path, CRATEQ.replace('password = "pw-crateq"', 'password_file = "pw"'))
    path.chmod(0o600)
    text = path.read_text().replace('api_key = "k-123"', "")
    path.write_text(text)
    path.chmod(0o644)
    cfg = load_config(path, env={**env, "POOLDAEMON_POOLS__CRATEQ__API_KEY": "k"})
    assert config_warnings(cfg) == []


def test_example_config_loads_and_documents_every_key(env: dict[str, str]) -> None:
    example = REPO / "config.example.toml"
    cfg = load_config(example, env=env)
    assert set(cfg.pools) == {"crateq", "promoonly", "harvest"}
    assert cfg.enabled_pools() == {}
    assert cfg.daemon.download_dir == Path(env["HOME"]) / "Music/RecordPools"
    text = example.read_text()
    tomllib.loads(text)
    for model in (DaemonConfig, CrateQConfig, PromoOnlyConfig, HarvestConfig):
        for key in toml_keys(model):
            if not key.endswith("_file"):
                assert re.search(rf"^#? ?{key} = ", text, re.MULTILINE), (model.__name__, key)
    assert "password_file" in text


@pytest.mark.parametrize("limit", ["32 KiB", "1 KiB/s", "16 KiB"])
def test_any_bandwidth_limit_is_accepted_whatever_the_speed_floor(
    tmp_path: Path, env: dict[str, str], limit: str
) -> None:
    """docs/interface.md §2: any size is a bandwidth_limit; the stall and speed-floor checks
    adapt to the limit in force instead of refusing the config."""
    cfg = load(tmp_path, env, f'[daemon]\nbandwidth_limit = "{limit}"\nmax_active_downloads = 8\n')
    assert cfg.daemon.bandwidth_limit_bps == parse_size(limit.removesuffix("/s"))
    assert cfg.daemon.speed_floor_bps == 16 * 1024


def test_zip_limits_are_configurable_with_the_documented_defaults(
    tmp_path: Path, env: dict[str, str]
) -> None:
    defaults = load(tmp_path, env, "").daemon
    assert (defaults.max_extract_entries, defaults.max_extract_ratio) == (10_000, 100.0)
    cfg = load(tmp_path, env, "[daemon]\nmax_extract_entries = 50000\nmax_extract_ratio = 250\n")
    assert (cfg.daemon.max_extract_entries, cfg.daemon.max_extract_ratio) == (50_000, 250.0)


def test_a_promo_only_catalog_interval_is_warned_about_not_silently_ignored(
    tmp_path: Path, env: dict[str, str]
) -> None:
    quiet = load(tmp_path, env, PROMO + CRATEQ + 'catalog_interval = "1h"\n')
    assert [w for w in config_warnings(quiet) if "catalog_interval" in w] == []
    cfg = load(tmp_path, env, PROMO + 'catalog_interval = "1h"\n')
    assert [w for w in config_warnings(cfg) if "catalog_interval" in w] == [
        "pools.promoonly.catalog_interval: ignored: promoonly pools have no catalog to mirror "
        "(only the download queue is polled, every queue_interval)"
    ]


def test_which_pool_types_have_a_catalog_matches_their_adapters() -> None:
    for name, model in POOL_TYPES.items():
        assert (Capability.CATALOG in ADAPTERS[name].capabilities) == model.HAS_CATALOG, name
