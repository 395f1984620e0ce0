"""The gateway's exception hierarchy: every error a client can see is one of these.

Each error carries an HTTP status, a machine-readable code and a message that says what happened
and what to do. `gateway.envelopes` renders them in the envelope of the API the client called.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Root of every error the gateway returns to a client."""

    status: int = 500
    code: str = "internal_error"
    # OpenAI's `type` field; the Anthropic envelope maps status to its own types.
    openai_type: str = "server_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.retry_after = retry_after


class InvalidRequest(GatewayError):
    """The request body or parameters are wrong; the client must change them."""

    status = 400
    code = "invalid_request"
    openai_type = "invalid_request_error"


class PayloadTooLarge(InvalidRequest):
    """The request body is over the configured size limit."""

    status = 413
    code = "request_too_large"


class ModelNotFound(GatewayError):
    """The model alias is not configured on this box."""

    status = 404
    code = "model_not_found"
    openai_type = "invalid_request_error"


class NotFound(GatewayError):
    """No such route."""

    status = 404
    code = "not_found"
    openai_type = "invalid_request_error"


class MethodNotAllowed(GatewayError):
    """The route exists but not for this HTTP method."""

    status = 405
    code = "method_not_allowed"
    openai_type = "invalid_request_error"


class Unsupported(InvalidRequest):
    """The model's provider cannot serve this kind of request (e.g. embeddings on Anthropic)."""

    code = "unsupported_for_model"


class UpstreamError(GatewayError):
    """The provider failed: down, refused, returned garbage or cut the stream."""

    status = 502
    code = "upstream_error"
    openai_type = "server_error"


class UpstreamTimeout(UpstreamError):
    """The provider did not answer (or stopped answering) within the configured timeout."""

    status = 504
    code = "upstream_timeout"


class UpstreamRateLimited(UpstreamError):
    """The provider answered 429; the client should retry after the given delay."""

    status = 429
    code = "upstream_rate_limited"
    openai_type = "rate_limit_error"


class UpstreamRejected(GatewayError):
    """The provider refused the request as invalid (its 4xx); the message is the provider's."""

    status = 400
    code = "upstream_rejected"
    openai_type = "invalid_request_error"


class ServiceUnavailable(GatewayError):
    """The box cannot serve this right now (no credential, shutting down)."""

    status = 503
    code = "service_unavailable"
    openai_type = "server_error"
