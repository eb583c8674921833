"""Cloudflare credentials as values that never show themselves, and the headers they become.

Apart from the settings so that the API client depends on credentials alone, not on the module
that reads flags, files and the web config.
"""

from __future__ import annotations

from dataclasses import dataclass


class Secret:
    """A credential that never shows itself in a repr, a log line or a traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret cannot be pickled")


@dataclass(frozen=True)
class TokenAuth:
    """`Authorization: Bearer <API token>`, the scheme Cloudflare recommends."""

    token: Secret

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token.reveal()}"}

    def secrets(self) -> tuple[str, ...]:
        return (self.token.reveal(),) if self.token.reveal() else ()


@dataclass(frozen=True)
class GlobalKeyAuth:
    """Legacy `X-Auth-Email` + `X-Auth-Key` (Global API key)."""

    email: str
    key: Secret

    def headers(self) -> dict[str, str]:
        return {"X-Auth-Email": self.email, "X-Auth-Key": self.key.reveal()}

    def secrets(self) -> tuple[str, ...]:
        return (self.key.reveal(),) if self.key.reveal() else ()


Auth = TokenAuth | GlobalKeyAuth
