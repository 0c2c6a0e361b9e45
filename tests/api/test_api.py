from __future__ import annotations

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def test_plans_endpoint_lists_plans_with_prices_in_minor_units(client):
    call_command("catalog_load", "demo")
    response = client.get("/api/v1/plans")
    assert response.status_code == 200
    plans = response.json()
    assert [p["code"] for p in plans] == ["starter", "pro", "business"]
    starter = plans[0]
    assert starter["id"].startswith("plan_")
    assert {
        "amount": 900,
        "currency": "USD",
        "interval": "month",
        "interval_count": 1,
    }.items() <= starter["prices"][0].items()
    assert starter["features"]["api_access"] is False


def test_status_endpoint(client):
    assert client.get("/api/v1/status").json()["version"]


def test_unknown_api_path_uses_the_house_error_shape(client):
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_openapi_document_and_docs_are_served(client):
    schema = client.get("/api/v1/openapi.json").json()
    assert schema["info"]["title"] == "Tollgate API"
    assert "/api/v1/plans" in schema["paths"]
    assert client.get("/api/v1/docs").status_code == 200


def test_errors_from_services_and_validation_use_the_house_shape(rf):
    from ninja.errors import ValidationError as NinjaValidationError

    from tollgate.api import v1
    from tollgate.core.errors import Conflict

    request = rf.get("/api/v1/x")
    body = v1._tollgate_error(request, Conflict("Already done.", details={"id": "sub_1"}))
    assert body.status_code == 409
    assert b'"code": "conflict"' in body.content
    invalid = v1._validation_error(
        request, NinjaValidationError([{"loc": ["body", "amount"], "msg": "bad"}])
    )
    assert invalid.status_code == 422
    assert b'"field": "body.amount"' in invalid.content


def test_every_endpoint_of_the_integration_api_is_documented_with_its_key_and_errors(client):
    schema = client.get("/api/v1/openapi.json").json()
    assert schema["components"]["securitySchemes"]["ApiKeyAuth"]["scheme"] == "bearer"
    for path, operations in schema["paths"].items():
        if path in ("/api/v1/status", "/api/v1/plans"):
            continue
        for method, operation in operations.items():
            assert operation["security"] == [{"ApiKeyAuth": []}], (method, path)
            assert {"401", "403", "422", "429"} <= set(operation["responses"]), (method, path)
            if method == "post":
                names = [p["name"] for p in operation.get("parameters", [])]
                assert "Idempotency-Key" in names, path
                body = operation["requestBody"]["content"]["application/json"]["schema"]
                component = schema["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
                assert component.get("examples"), path
