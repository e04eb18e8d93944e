"""[web]: the dashboard's address and TLS (docs/interface.md §11)."""

from __future__ import annotations

import ipaddress
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, model_validator

from pooldaemon.config_values import ConfigPath, describe
from pooldaemon.config_values import Problem as _Problem


def split_listen(text: str) -> tuple[str, int]:
    """`"127.0.0.1:8577"` or `"[::1]:8577"` → (host, port); raises ValueError."""
    host, sep, port = text.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(
            f'must be "host:port", like "127.0.0.1:8577" or "[::1]:8577" (got {describe(text)})'
        )
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(
                f"the host must be an IP address or localhost, not {describe(host)}"
            ) from None
    return host, int(port)


def _listen(value: str) -> str:
    split_listen(value)
    return value.strip()


class WebConfig(BaseModel):
    """[web]: the dashboard (docs/interface.md §11); loopback only unless allow_remote with TLS."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    enabled: bool = True
    listen: Annotated[str, AfterValidator(_listen)] = "127.0.0.1:8577"  # port 0: any free port
    allow_remote: bool = False
    tls_cert: ConfigPath | None = None
    tls_key: ConfigPath | None = None

    @property
    def host(self) -> str:
        return split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return split_listen(self.listen)[1]

    @property
    def loopback(self) -> bool:
        """Whether `listen` names a loopback address (only this machine can connect)."""
        return self.host == "localhost" or ipaddress.ip_address(self.host).is_loopback

    @model_validator(mode="after")
    def _remote_needs_tls(self) -> WebConfig:
        """docs/reliability.md W1: session cookies never cross a network in the clear."""
        if (self.tls_cert is None) != (self.tls_key is None):
            missing = "tls_key" if self.tls_key is None else "tls_cert"
            raise _Problem(missing, "tls_cert and tls_key go together; give both or neither")
        if self.loopback:
            return self
        if not self.allow_remote:
            raise _Problem(
                "listen",
                f"{self.host} is not a loopback address; other machines could reach the "
                "dashboard: set allow_remote = true with tls_cert and tls_key, or listen on "
                "127.0.0.1",
            )
        if self.tls_cert is None:
            raise _Problem(
                "tls_cert", "allow_remote = true needs tls_cert and tls_key (HTTPS only)"
            )
        return self
