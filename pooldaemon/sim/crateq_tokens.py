"""The simulated CrateQ's credentials: HS256 JWTs for the API and the per-track download `auth`."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from pooldaemon.sim.crateq_wire import dumps

__all__ = ["CLAIM", "CrateQKeys"]

CLAIM = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CrateQKeys:
    """Signs and checks one simulator's JWTs and download `auth` values (secrets from its seed)."""

    def __init__(self, seed: str) -> None:
        self._jwt_secret = hashlib.sha256(f"jwt:{seed}".encode()).digest()
        self._auth_secret = hashlib.sha256(f"auth:{seed}".encode()).digest()

    def jwt(self, claims: dict[str, Any]) -> str:
        """An HS256 JWT carrying `claims`."""
        header = {"alg": "HS256", "typ": "JWT"}
        signing_input = f"{_b64url(dumps(header))}.{_b64url(dumps(claims))}"
        signature = hmac.new(self._jwt_secret, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{_b64url(signature)}"

    def jwt_claims(self, token: str) -> dict[str, Any] | str:
        """A JWT's claims when its signature holds, else the reason it is refused."""
        try:
            header_part, claims_part, signature_part = token.split(".")
            expected = hmac.new(
                self._jwt_secret, f"{header_part}.{claims_part}".encode(), hashlib.sha256
            ).digest()
            if not hmac.compare_digest(expected, _unb64url(signature_part)):
                return "Invalid token signature."
            claims = json.loads(_unb64url(claims_part))
        except (ValueError, TypeError):
            return "Invalid token."
        return claims if isinstance(claims, dict) else "Invalid token."

    def auth(self, user_id: int, media_id: int, issued: int) -> str:
        """The download `auth` shown to `user_id` for `media_id` at unix time `issued`."""
        # 40 hex characters like docs/pools/crateq.md's: when it was shown, then a MAC over user and
        # track.
        mac = hashlib.sha1(
            self._auth_secret + f"{user_id}:{media_id}:{issued}".encode(), usedforsecurity=False
        ).hexdigest()
        return f"{issued:08x}{mac[:32]}"
