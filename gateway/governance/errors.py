"""The refusals of cost governance, in the gateway's error hierarchy (one envelope per API)."""

from __future__ import annotations

from gateway.errors import GatewayError


class BudgetExceeded(GatewayError):
    """A hard budget has no room for this request's worst-case cost (429)."""

    status = 429
    code = "budget_exceeded"
    # What OpenAI itself answers when an account's quota is spent; the SDKs raise RateLimitError.
    openai_type = "insufficient_quota"


class RateLimited(GatewayError):
    """A requests- or tokens-per-minute limit refused the request (429, with Retry-After)."""

    status = 429
    code = "rate_limited"
    openai_type = "rate_limit_error"

    def __init__(
        self, message: str, *, retry_after: int | None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        # The x-ratelimit-* headers as they stand, for the refusal's response too.
        self.headers = headers or {}


class Suspended(GatewayError):
    """The spend breaker suspended this key or project; only an admin can lift it (403)."""

    status = 403
    code = "spend_suspended"
    openai_type = "permission_error"
