"""What the last refresh ended with, exporter-wide: when it finished, when the next one starts,
and whether account discovery failed and why.

The poller publishes one `RefreshStatus` through the store at the end of every refresh; the
status page and `--once` read it. An `ApiFailure` is how any failed request is kept, for
discovery here and for an account in its snapshot: the API's error code stays apart from its
message, so what the code usually means is looked up, never parsed back out of the text.
"""

from __future__ import annotations

from dataclasses import dataclass

# Cloudflare v4 error codes a credential problem comes back with, and what each usually means.
_CODE_HINTS = {
    6003: "the request's credentials are malformed (a stray character in the token or key?)",
    6111: "the Authorization header is malformed: check the token",
    9103: "the Global API key or its email is wrong: check CLOUDFLARE_API_EMAIL and the key",
    9106: "no credentials reached the API",
    9109: "the API token is invalid, expired or revoked: check CLOUDFLARE_API_TOKEN (or its file)",
    10000: "the credentials lack a permission this request needs: the token needs OAuth Client "
    "Read on the account, and the accounts must be in its scope",
}
_STATUS_HINTS = {
    401: "the API refused the credentials",
    403: "the credentials are not allowed to do this",
    429: "Cloudflare rate-limited the token; it waits and retries",
}


@dataclass(frozen=True)
class ApiFailure:
    """An API request that failed for good: the HTTP status and API code, if any, and the
    message (already free of credentials)."""

    status: int | None
    code: int | None
    message: str

    def __str__(self) -> str:
        parts = [f"HTTP {self.status}"] if self.status is not None else []
        parts += [f"code {self.code}"] if self.code is not None else []
        return f"{' '.join(parts)}: {self.message}" if parts else self.message

    @property
    def hint(self) -> str | None:
        """What this failure usually means, when the code or status says."""
        if self.code in _CODE_HINTS:
            return _CODE_HINTS[self.code]
        return _STATUS_HINTS.get(self.status) if self.status is not None else None


INTERNAL_ERROR = ApiFailure(None, None, "internal error (see the exporter log)")


@dataclass(frozen=True)
class RefreshStatus:
    finished_at: float  # Unix time
    next_at: float | None  # Unix time the next refresh starts; None when there is none (--once)
    duration: float  # seconds
    discovering: bool  # accounts come from GET /accounts, not from --cloudflare.account-id
    discovery_failure: ApiFailure | None = None
