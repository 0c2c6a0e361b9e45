"""The staff webhook pages: only staff get there; a signing secret is shown once; deliveries are
listed with their attempts and can be resent."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from django.db import transaction
from django.test import Client
from standardwebhooks.webhooks import Webhook

from tests.integrations.conftest import Receiver, receiver_start, receiver_stop
from tollgate.audit.models import AuditEvent
from tollgate.core.events import event_publish
from tollgate.integrations.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from tollgate.integrations.webhooks import webhook_endpoint_create

pytestmark = pytest.mark.django_db
PUBLIC = "https://93.184.215.14/hooks"


@pytest.fixture
def receiver(settings) -> Iterator[Receiver]:
    settings.WEBHOOKS_ALLOW_PRIVATE_TARGETS = True
    started = receiver_start()
    yield started
    receiver_stop(started)


@pytest.fixture
def endpoint() -> WebhookEndpoint:
    return webhook_endpoint_create(url=PUBLIC, event_types=[], description="CRM", actor=None)[0]


def secret_on(page: bytes) -> str:
    found = re.search(rb"whsec_[A-Za-z0-9+/=]+", page)
    assert found is not None
    return found.group().decode()


@pytest.mark.parametrize(
    "path",
    [
        "/staff/webhooks/",
        "/staff/webhooks/new/",
        "/staff/webhooks/{id}/",
        "/staff/webhooks/{id}/edit/",
        "/staff/webhooks/{id}/rotate/",
    ],
)
def test_the_pages_are_for_staff_only(
    client: Client, member_client: Client, endpoint: WebhookEndpoint, path: str
) -> None:
    url = path.format(id=endpoint.public_id)
    assert member_client.get(url).status_code == 404
    response = client.get(url)
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


def test_actions_are_for_staff_only(member_client: Client, endpoint: WebhookEndpoint) -> None:
    for action in ("disable", "enable", "rotate"):
        url = f"/staff/webhooks/{endpoint.public_id}/{action}/"
        assert member_client.post(url, {"overlap_hours": "1"}).status_code == 404
    endpoint.refresh_from_db()
    assert endpoint.enabled


def test_the_list_shows_each_endpoint_and_its_status(
    staff_client: Client, endpoint: WebhookEndpoint
) -> None:
    page = staff_client.get("/staff/webhooks/")
    assert page.status_code == 200
    assert endpoint.public_id in page.text
    assert PUBLIC in page.text
    assert "every event" in page.text
    assert "enabled" in page.text
    assert endpoint.secret not in page.text
    assert 'href="/staff/webhooks/"' in staff_client.get("/staff/").text  # in the navigation


def test_creating_an_endpoint_shows_its_secret_once(staff_client: Client) -> None:
    assert staff_client.get("/staff/webhooks/new/").status_code == 200
    response = staff_client.post(
        "/staff/webhooks/new/",
        {"url": PUBLIC, "description": "Fulfilment", "event_types": ["invoice.paid"]},
    )
    assert response.status_code == 200
    endpoint = WebhookEndpoint.objects.get()
    assert secret_on(response.content) == endpoint.secret
    assert "only time it is shown" in response.text
    assert endpoint.event_types == ["invoice.paid"]
    for page in ("/staff/webhooks/", f"/staff/webhooks/{endpoint.public_id}/"):
        assert b"whsec_" not in staff_client.get(page).content


def test_a_refused_address_is_explained_on_the_form(staff_client: Client) -> None:
    response = staff_client.post("/staff/webhooks/new/", {"url": "http://169.254.169.254/"})
    assert response.status_code == 422
    assert "public addresses" in response.text
    response = staff_client.post("/staff/webhooks/new/", {"url": "ftp://93.184.215.14/"})
    assert response.status_code == 422
    assert "http:// or https://" in response.text
    assert not WebhookEndpoint.objects.exists()


def test_an_endpoint_is_edited(staff_client: Client, endpoint: WebhookEndpoint) -> None:
    url = f"/staff/webhooks/{endpoint.public_id}/edit/"
    assert PUBLIC in staff_client.get(url).text
    response = staff_client.post(
        url, {"url": PUBLIC, "description": "Billing sync", "event_types": ["refund.created"]}
    )
    assert response.status_code == 302
    endpoint.refresh_from_db()
    assert (endpoint.description, endpoint.event_types) == ("Billing sync", ["refund.created"])
    refused = staff_client.post(url, {"url": "http://10.0.0.1/", "description": ""})
    assert refused.status_code == 422
    assert "public addresses" in refused.text


def test_an_endpoint_is_disabled_and_enabled(
    staff_client: Client, endpoint: WebhookEndpoint
) -> None:
    staff_client.post(f"/staff/webhooks/{endpoint.public_id}/disable/")
    endpoint.refresh_from_db()
    assert (endpoint.enabled, endpoint.disabled_reason) == (False, "Disabled by staff.")
    page = staff_client.get(f"/staff/webhooks/{endpoint.public_id}/")
    assert "Disabled by staff." in page.text
    staff_client.post(f"/staff/webhooks/{endpoint.public_id}/enable/")
    endpoint.refresh_from_db()
    assert (endpoint.enabled, endpoint.disabled_reason) == (True, "")
    assert AuditEvent.objects.filter(action="integrations.webhook_endpoint_updated").count() == 2


def test_rotating_shows_the_new_secret_once_and_keeps_the_old_one_signing(
    staff_client: Client, endpoint: WebhookEndpoint
) -> None:
    old = endpoint.secret
    form = staff_client.get(f"/staff/webhooks/{endpoint.public_id}/rotate/")
    replacing = re.search(r'name="replacing" value="([0-9a-f]+)"', form.text)
    assert replacing is not None
    data = {"overlap_hours": "24", "replacing": replacing.group(1)}
    response = staff_client.post(f"/staff/webhooks/{endpoint.public_id}/rotate/", data)
    assert response.status_code == 200
    endpoint.refresh_from_db()
    assert secret_on(response.content) == endpoint.secret != old
    assert endpoint.previous_secret == old
    # The same form sent again rotates nothing: the secret the receiver knows stays valid.
    again = staff_client.post(f"/staff/webhooks/{endpoint.public_id}/rotate/", data, follow=True)
    assert "rotated meanwhile" in again.text
    endpoint.refresh_from_db()
    assert endpoint.previous_secret == old
    bad = staff_client.post(f"/staff/webhooks/{endpoint.public_id}/rotate/", {"overlap_hours": "5"})
    assert bad.status_code == 422


def test_deliveries_are_listed_with_their_attempts_and_a_resend_makes_a_new_attempt(
    staff_client: Client, receiver: Receiver, customer, django_capture_on_commit_callbacks
) -> None:
    endpoint, secret = webhook_endpoint_create(url=receiver.url(), event_types=[], actor=None)
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        event_publish(
            event_type="customer.updated",
            object_type="customer",
            object_id=customer.public_id,
            key="page",
        )
    delivery = WebhookDelivery.objects.get()
    page = staff_client.get(f"/staff/webhooks/{endpoint.public_id}/")
    assert delivery.event.public_id in page.text
    assert "customer.updated" in page.text
    assert "200" in page.text
    resend = f"/staff/webhooks/{endpoint.public_id}/deliveries/{delivery.event.public_id}/resend/"
    assert staff_client.get(resend).status_code == 405
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(resend)
    assert response.status_code == 302
    assert WebhookAttempt.objects.filter(delivery=delivery).count() == 2
    first, second = receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    Webhook(secret).verify(second.body, second.headers)
    assert "is being sent again" in staff_client.get(response["Location"]).text


def test_a_resend_to_a_disabled_endpoint_says_what_to_do(
    staff_client: Client, receiver: Receiver, customer, django_capture_on_commit_callbacks
) -> None:
    endpoint, _ = webhook_endpoint_create(url=receiver.url(), event_types=[], actor=None)
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        event_publish(
            event_type="customer.updated",
            object_type="customer",
            object_id=customer.public_id,
            key="disabled",
        )
    event_id = WebhookDelivery.objects.get().event.public_id
    staff_client.post(f"/staff/webhooks/{endpoint.public_id}/disable/")
    response = staff_client.post(
        f"/staff/webhooks/{endpoint.public_id}/deliveries/{event_id}/resend/", follow=True
    )
    assert "enable it, then resend" in response.text
    assert len(receiver.requests) == 1


def test_unknown_endpoints_and_deliveries_are_not_found(
    staff_client: Client, endpoint: WebhookEndpoint
) -> None:
    assert staff_client.get("/staff/webhooks/we_unknown/").status_code == 404
    assert staff_client.get("/staff/webhooks/we_unknown/edit/").status_code == 404
    assert staff_client.get("/staff/webhooks/we_unknown/rotate/").status_code == 404
    assert staff_client.post("/staff/webhooks/we_unknown/enable/").status_code == 404
    missing = f"/staff/webhooks/{endpoint.public_id}/deliveries/msg_unknown/resend/"
    assert staff_client.post(missing).status_code == 404
