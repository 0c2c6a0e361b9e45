"""The staff console's remaining tables page and sort on the server like the others: API keys (the
operator's and customers'), webhook endpoints and an endpoint's deliveries. Nothing past a fixed
number of rows is left unreachable."""

from __future__ import annotations

import re

import pytest
from django.db import transaction

from tests.staff.test_webhooks_pages import receiver  # noqa: F401  (the fixture)
from tollgate.core.events import event_publish
from tollgate.integrations import keys
from tollgate.integrations.models import WebhookDelivery
from tollgate.integrations.webhooks import webhook_endpoint_create

pytestmark = pytest.mark.django_db


def test_operator_keys_page_and_sort_by_name_on_the_server(staff_client, staff):
    for number in range(27):
        keys.api_key_create(name=f"key {number:02d}", scopes=["billing:read"], actor=staff)
    newest = staff_client.get("/staff/api-keys/").text
    assert len(re.findall(r"key \d\d", newest)) == 25
    assert "key 26" in newest
    assert "key 00" not in newest
    assert 'href="?operator-page=2#operator-keys"' in newest

    by_name = staff_client.get(
        "/staff/api-keys/", {"operator-sort": "name", "operator-dir": "asc", "operator-page": "2"}
    ).text
    assert re.findall(r"key \d\d", by_name) == ["key 25", "key 26"]
    assert 'aria-sort="ascending"' in by_name


def test_webhook_endpoints_page_and_sort_on_the_server(staff_client):
    for number in range(26):
        webhook_endpoint_create(
            url=f"https://93.184.215.14/hooks/{number:02d}",
            event_types=[],
            description=f"endpoint {number:02d}",
            actor=None,
        )
    first = staff_client.get("/staff/webhooks/").text
    assert len(re.findall(r"endpoint \d\d", first)) == 25
    by_url = staff_client.get("/staff/webhooks/", {"sort": "url", "dir": "desc"}).text
    assert re.findall(r"endpoint \d\d", by_url)[0] == "endpoint 25"
    assert 'href="?sort=url&amp;dir=desc&amp;page=2#endpoints"' in by_url


def test_an_endpoints_deliveries_page_and_sort_on_the_server(
    staff_client,
    receiver,  # noqa: F811  (the fixture)
    customer,
    django_capture_on_commit_callbacks,
):
    endpoint = webhook_endpoint_create(url=receiver.url(), event_types=[], actor=None)[0]
    for number in range(26):
        with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
            event_publish(
                event_type="customer.updated",
                object_type="customer",
                object_id=customer.public_id,
                key=f"paged-{number}",
            )
    events = list(
        WebhookDelivery.objects.order_by("created_at", "pk").values_list(
            "event__public_id", flat=True
        )
    )
    assert len(events) == 26
    url = f"/staff/webhooks/{endpoint.public_id}/"
    newest = staff_client.get(url).text
    assert len(set(re.findall(r"msg_\w+", newest))) == 25
    assert events[-1] in newest
    assert events[0] not in newest
    oldest = staff_client.get(url, {"sort": "created", "dir": "asc"}).text
    assert re.findall(r"msg_\w+", oldest)[0] == events[0]
    assert 'href="?sort=created&amp;dir=asc&amp;page=2#deliveries"' in oldest
