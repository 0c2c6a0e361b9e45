"""Webhook endpoints managed over the API with the ``webhooks:manage`` scope."""

from __future__ import annotations

import pytest

from tollgate.audit.models import AuditEvent
from tollgate.integrations import keys
from tollgate.integrations.models import WebhookEndpoint

pytestmark = pytest.mark.django_db

HOOK = {"url": "http://127.0.0.1:9/hooks", "event_types": ["customer.created"]}


@pytest.fixture(autouse=True)
def _local_receivers_allowed(settings):
    settings.WEBHOOKS_ALLOW_PRIVATE_TARGETS = True


def test_an_endpoint_is_registered_and_its_secret_shown_once(api):
    created = api.post("/webhook-endpoints", HOOK)
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["secret"].startswith("whsec_")
    assert body["event_types"] == ["customer.created"]
    fetched = api.get(f"/webhook-endpoints/{body['id']}").json()
    assert "secret" not in fetched
    assert [e["id"] for e in api.get("/webhook-endpoints").json()["data"]] == [body["id"]]
    (audited,) = AuditEvent.objects.filter(action="integrations.webhook_endpoint_created")
    assert audited.actor_repr.startswith("key_")
    assert body["secret"] not in str(audited.details)


def test_private_targets_and_unknown_event_types_are_refused(api, settings):
    settings.WEBHOOKS_ALLOW_PRIVATE_TARGETS = False
    private = api.post("/webhook-endpoints", HOOK)
    assert private.status_code == 422
    settings.WEBHOOKS_ALLOW_PRIVATE_TARGETS = True
    unknown = api.post("/webhook-endpoints", {**HOOK, "event_types": ["nope"]})
    assert unknown.status_code == 422
    assert WebhookEndpoint.objects.count() == 0


def test_an_endpoint_is_changed_disabled_and_its_secret_rotated(api):
    endpoint = api.post("/webhook-endpoints", HOOK).json()
    path = f"/webhook-endpoints/{endpoint['id']}"
    disabled = api.patch(path, {"enabled": False, "description": "paused"}).json()
    assert (disabled["enabled"], disabled["description"]) == (False, "paused")
    rotated = api.post(f"{path}/rotate-secret", {"overlap_hours": 1}).json()
    assert rotated["secret"].startswith("whsec_")
    assert rotated["secret"] != endpoint["secret"]
    assert api.post(f"{path}/rotate-secret", {"overlap_hours": 1000}).status_code == 422
    assert api.get("/webhook-endpoints/we_nothing").status_code == 404


def test_deliveries_show_each_event_sent_to_the_endpoint(api):
    endpoint = api.post("/webhook-endpoints", HOOK).json()
    api.post("/customers", {"external_id": "u1", "email": "u1@example.org"})
    deliveries = api.get(f"/webhook-endpoints/{endpoint['id']}/deliveries").json()
    assert [(d["type"], d["id"][:4]) for d in deliveries] == [("customer.created", "msg_")]
    assert deliveries[0]["tries"]  # nothing listens on port 9: the attempt is kept
    assert deliveries[0]["tries"][0]["succeeded"] is False


def test_managing_endpoints_needs_the_scope(api):
    reader = keys.api_key_create(name="reader", scopes=["billing:read"]).secret
    assert api.get("/webhook-endpoints", key=reader).status_code == 403
    assert api.post("/webhook-endpoints", HOOK, key=reader).status_code == 403
