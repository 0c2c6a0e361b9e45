"""``Idempotency-Key`` on the API's POSTs, on the idempotency core (``core.idempotency``).

The same key with the same body (and path) within the retention period returns the first
response, status and body, with ``Idempotent-Replayed: true``; the same key with another body is
refused with 422; the same key while the first request is still running, with 409. A request that
fails with an error leaves the key free for a retry of the same request. Keys belong to whoever
calls: the operator's keys share one scope, each customer's keys another.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from ninja import Status

from tollgate.core.idempotency import (
    IdempotencyReplay,
    idempotency_claim,
    idempotency_complete,
    idempotency_release,
)
from tollgate.integrations.keys import ApiIdentity

HEADER = "Idempotency-Key"
# The header as the OpenAPI document shows it on every POST (``openapi_extra=OPENAPI``).
OPENAPI: dict[str, Any] = {
    "parameters": [
        {
            "in": "header",
            "name": HEADER,
            "required": False,
            "schema": {"type": "string", "maxLength": 255},
            "description": "Send the same key to repeat a request safely: within 24 hours the "
            "same key and body return the first answer; another body gets 422; a request "
            "still running gets 409.",
        }
    ]
}


def _scope(identity: ApiIdentity) -> str:
    return "api:operator" if identity.is_operator else f"api:customer:{identity.customer_pk}"


def _fingerprint_parameters(request: HttpRequest) -> dict[str, Any]:
    try:
        body: Any = json.loads(request.body or b"null")
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    except ValueError:
        canonical = request.body.decode("latin-1")
    return {"path": request.path, "body": hashlib.sha256(canonical.encode()).hexdigest()}


def idempotent_post(
    operation: str,
) -> Callable[[Callable[..., Status[Any]]], Callable[..., Any]]:
    """Make a POST endpoint honour ``Idempotency-Key``. The endpoint returns a ``Status`` with a
    JSON-able body; what it returns is what a replay returns."""

    def decorate(view: Callable[..., Status[Any]]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            key = request.headers.get(HEADER)
            if key is None:
                return view(request, *args, **kwargs)
            identity: ApiIdentity = request.auth  # type: ignore[attr-defined]
            outcome = idempotency_claim(
                scope=_scope(identity),
                key=key,
                operation=operation,
                parameters=_fingerprint_parameters(request),
            )
            if isinstance(outcome, IdempotencyReplay):
                return _replay(outcome.response)
            try:
                result = view(request, *args, **kwargs)
                stored = json.loads(json.dumps(result.value, default=_json_default))
            except BaseException as exc:
                idempotency_release(claim=outcome, error=exc)
                raise
            idempotency_complete(
                claim=outcome, response={"status": result.status_code, "body": stored}
            )
            return result

        return wrapper

    return decorate


def _json_default(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    raise TypeError(type(value).__name__)


def _replay(stored: dict[str, Any]) -> HttpResponse:
    response = JsonResponse(stored.get("body"), status=int(stored.get("status", 200)), safe=False)
    response["Idempotent-Replayed"] = "true"
    return response
