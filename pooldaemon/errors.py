"""One error vocabulary for the whole daemon, each class with a stable code."""

from __future__ import annotations


class PoolDaemonError(Exception):
    """Base class: every error the daemon reports to a user carries a stable code."""

    code = "internal"
    #: HTTP status the control socket answers with for this error.
    http_status = 500

    def __init__(self, message: str, *, detail: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail or {}


class TransientError(PoolDaemonError):
    """Worth retrying later: network failures, 5xx, timeouts, 429."""

    code = "transient"
    http_status = 503

    def __init__(
        self,
        message: str,
        *,
        retry_after_s: float | None = None,
        detail: dict[str, object] | None = None,
    ) -> None:
        super().__init__(message, detail=detail)
        self.retry_after_s = retry_after_s


class RateLimited(TransientError):
    """The pool asked us to slow down (HTTP 429 or Retry-After)."""

    code = "rate_limited"


class AuthError(PoolDaemonError):
    """Credentials or tokens were refused after one renewal: the user must act."""

    code = "auth"
    http_status = 502


class TokenExpired(PoolDaemonError):
    """A token was refused; renewing it once may fix the call."""

    code = "token_expired"
    http_status = 502


class AccountError(PoolDaemonError):
    """The pool says the account may not do this (expired, suspended, download limit)."""

    code = "account"
    http_status = 502
    #: The pool stopped this account's downloads (a limit, not one refused item): its other
    #: jobs wait with the reason instead of failing one by one.
    blocked = False


class ProtocolError(PoolDaemonError):
    """The pool answered with something we cannot use: malformed body, wrong shape."""

    code = "protocol"
    http_status = 502


class IncompleteAnswer(ProtocolError):
    """An empty or cut-short answer (docs/pools/crateq.md's 200-with-[] timeout): never treat as
    data."""

    code = "incomplete"


class NotFound(PoolDaemonError):
    """The thing asked for does not exist."""

    code = "not_found"
    http_status = 404


class Unsupported(PoolDaemonError):
    """The pool does not offer this operation."""

    code = "unsupported"
    http_status = 400


class BadRequest(PoolDaemonError):
    """A request from the user or a client is malformed."""

    code = "bad_request"
    http_status = 400


class Conflict(PoolDaemonError):
    """The request is valid but the object is not in a state that allows it."""

    code = "conflict"
    http_status = 409


class DiskFull(PoolDaemonError):
    """No space left where a download must land: pause, do not retry in a loop."""

    code = "disk_full"
    http_status = 507


class IntegrityError(PoolDaemonError):
    """Bytes failed verification (size, checksum, magic bytes, archive checks)."""

    code = "integrity"
    http_status = 502


# The archive errors are here, not in downloader/unzip.py, so that the engine catches them
# without importing the extractor, imported by the first archive (issue 13: idle RSS).
class ArchiveRejected(IntegrityError):
    """The archive is refused; `entries` names the offending entries (docs/reliability.md Z1–Z3)."""

    code = "rejected_archive"

    def __init__(self, reason: str, entries: list[str] | None = None) -> None:
        self.reason = reason
        self.entries = list(entries or [])
        shown = ", ".join(repr(e) for e in self.entries[:5])
        if len(self.entries) > 5:
            shown += f" and {len(self.entries) - 5} more"
        super().__init__(
            f"{reason}: {shown}" if shown else reason, detail={"entries": self.entries}
        )


class ArchiveDamaged(ArchiveRejected):
    """The archive's bytes are bad (CRC, truncation): fetch it again (docs/reliability.md Z3)."""

    code = "damaged_archive"


class ExportError(PoolDaemonError):
    """A playlist or collection file could not be written (docs/interface.md §9)."""

    code = "export"
    http_status = 500
