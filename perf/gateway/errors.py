"""The one error type the gateway answers with, so every refusal reads the same way to a user:
an HTTP status, a JSON ``detail`` saying what was wrong, and a short ``reason`` for metrics."""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    """A request the gateway refuses or cannot serve; ``extra`` adds fields to the JSON answer."""

    def __init__(self, status: int, reason: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"detail": self.detail, "reason": self.reason, **self.extra}
