"""The typed error hierarchy. Pages and the API translate these in one place each."""

from __future__ import annotations

from typing import Any


class TollgateError(Exception):
    """Base of every error Tollgate reports to a user or client.

    ``code`` is stable and machine-readable; ``message`` tells a person what to do next.
    """

    code = "error"
    status = 400
    default_message = "The request could not be completed."

    def __init__(
        self, message: str | None = None, *, details: dict[str, Any] | None = None
    ) -> None:
        self.message = message or self.default_message
        self.details = details or {}
        super().__init__(self.message)

    def as_dict(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class ValidationFailed(TollgateError):
    code = "validation_failed"
    status = 422
    default_message = "Some of the values sent are not valid; see details."


class BadRequest(TollgateError):
    code = "bad_request"
    status = 400
    default_message = "The request is malformed."


class NotAuthenticated(TollgateError):
    code = "not_authenticated"
    status = 401
    default_message = "Sign in, or send valid credentials, to use this."


class PermissionDenied(TollgateError):
    code = "permission_denied"
    status = 403
    default_message = "You do not have permission to do this."


class NotFound(TollgateError):
    code = "not_found"
    status = 404
    default_message = "Nothing exists at this address."


class Conflict(TollgateError):
    code = "conflict"
    status = 409
    default_message = "The request conflicts with the current state; reload and try again."


class PayloadTooLarge(TollgateError):
    code = "payload_too_large"
    status = 413
    default_message = "The request body is too large."


class RateLimited(TollgateError):
    code = "rate_limited"
    status = 429
    default_message = "Too many requests; wait a moment and try again."

    def __init__(
        self, message: str | None = None, *, retry_after: int, details: dict[str, Any] | None = None
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, details={"retry_after": retry_after, **(details or {})})


class PaymentDeclined(TollgateError):
    code = "payment_declined"
    status = 402
    default_message = "The payment was declined; try another card."


class ServiceUnavailable(TollgateError):
    code = "service_unavailable"
    status = 503
    default_message = "A service Tollgate depends on is unavailable; try again shortly."


class IdempotencyKeyInvalid(ValidationFailed):
    code = "idempotency_key_invalid"
    default_message = "Send an idempotency key of 1 to 255 printable ASCII characters."


class IdempotencyKeyReused(ValidationFailed):
    code = "idempotency_key_reused"
    default_message = (
        "This idempotency key was already used for a different request; send a new key for a new "
        "request."
    )


class IdempotencyKeyInProgress(Conflict):
    code = "idempotency_key_in_progress"
    default_message = (
        "A request with this idempotency key is still being processed; wait a moment and retry it."
    )


class FormTokenInvalid(ValidationFailed):
    code = "form_token_invalid"
    default_message = (
        "This form has expired or was not issued to you; reload the page and submit it again."
    )
