"""Answers the simulator gives instead of the normal one: every way the API can fail."""

from __future__ import annotations

import json
from dataclasses import dataclass, field


@dataclass
class Fault:
    """An answer the simulator gives instead of the normal one."""

    status: int = 500
    code: int | None = None
    message: str = ""
    body: str | None = None
    content_type: str = "application/json"
    retry_after: str | None = None
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def api_error(cls, status: int, code: int, message: str) -> Fault:
        return cls(status=status, code=code, message=message)

    @classmethod
    def html(cls, status: int = 502) -> Fault:
        return cls(
            status=status,
            body="<html><body><h1>502 Bad Gateway</h1>cloudflare</body></html>",
            content_type="text/html",
        )

    @classmethod
    def not_json(cls) -> Fault:
        return cls(
            status=200, body='{"success": true, "result": [', content_type="application/json"
        )

    @classmethod
    def success_false(cls, code: int = 1000, message: str = "internal processing error") -> Fault:
        return cls(
            status=200,
            body=json.dumps(
                {
                    "success": False,
                    "errors": [{"code": code, "message": message}],
                    "messages": [],
                    "result": None,
                }
            ),
        )

    @classmethod
    def missing_client_id(cls) -> Fault:
        return cls(
            status=200,
            body=json.dumps(
                {
                    "success": True,
                    "errors": [],
                    "messages": [],
                    "result": [{"visibility": "private"}],
                    "result_info": {"page": 1, "per_page": 20, "count": 1, "total_count": 1},
                }
            ),
        )

    @classmethod
    def rate_limited(cls, retry_after: int = 1) -> Fault:
        return cls(
            status=429,
            code=971,
            message="Please wait and consider throttling your request speed",
            retry_after=str(retry_after),
        )

    @classmethod
    def slow(cls, delay: float) -> Fault:
        """Answers normally, but only after `delay` seconds (for client timeouts)."""
        return cls(status=0, delay=delay)
