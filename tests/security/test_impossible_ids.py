"""Addresses that cannot exist: every URL pattern of the project (Tollgate's, the admin's, allauth's,
the API's) is requested with ids no object can have (a NUL byte, 300 characters) and with control
characters in the query string, on whichever database the suite runs on. None may answer 500: the
database must never see such a value (PostgreSQL refuses NUL in text outright)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.urls.resolvers import RegexPattern, RoutePattern

from tests.billing.conftest import CATALOG, add_card
from tollgate.accounts.models import User
from tollgate.billing import services
from tollgate.catalog.models import Price
from tollgate.catalog.services import catalog_load

pytestmark = pytest.mark.django_db

NUL = "\x00"
LONG = "x" * 300
# Names the views read from the query string, and one no view reads.
QUERY_NAMES = ("q", "next", "page", "price", "status", "interval", "cursor", "reference", "other")
_ROUTE_PARAMETER = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<name>[^>]+)>")


@dataclass(frozen=True)
class Route:
    """One URL pattern, as a template with a ``{name}`` slot for each of its parameters."""

    template: str
    parameters: tuple[str, ...]

    def path(self, value: str) -> str:
        """The path with every parameter set to ``value`` (percent-encoded as a browser would)."""
        encoded = quote(value, safe="")
        return "/" + self.template.format(**dict.fromkeys(self.parameters, encoded))


def _route_template(pattern: RoutePattern) -> tuple[str, tuple[str, ...]]:
    route = str(pattern).replace("{", "{{").replace("}", "}}")
    names = tuple(match["name"] for match in _ROUTE_PARAMETER.finditer(route))
    return _ROUTE_PARAMETER.sub(lambda match: "{" + match["name"] + "}", route), names


def _regex_template(pattern: RegexPattern) -> tuple[str, tuple[str, ...]]:
    """``^confirm-email/(?P<key>[-:\\w]+)/$`` -> ``confirm-email/{key}/``: each named group becomes
    a slot (the value need not match the group; a value that does not is a 404, also fine)."""
    regex = str(pattern).removeprefix("^").removesuffix("$").removesuffix("\\Z")
    template, names, index = "", [], 0
    while (start := regex.find("(?P<", index)) != -1:
        name = regex[start + 4 : regex.index(">", start)]
        depth, end = 0, start
        for end in range(start, len(regex)):
            if regex[end] == "\\":
                continue
            depth += {"(": 1, ")": -1}.get(regex[end], 0)
            if depth == 0:
                break
        template += regex[index:start].replace("{", "{{").replace("}", "}}") + "{" + name + "}"
        names.append(name)
        index = end + 1
    template += regex[index:]
    return template.replace("\\", ""), tuple(names)


def every_route(resolver: URLResolver | None = None, prefix: str = "") -> Iterator[Route]:
    """Every URL pattern of the project, included URL configurations too, as a :class:`Route`."""
    resolver = resolver or get_resolver()
    for entry in resolver.url_patterns:
        pattern = entry.pattern
        if isinstance(pattern, RoutePattern):
            template, names = _route_template(pattern)
        else:
            assert isinstance(pattern, RegexPattern), pattern
            template, names = _regex_template(pattern)
        if isinstance(entry, URLResolver):
            yield from every_route(entry, prefix + template)
        else:
            assert isinstance(entry, URLPattern)
            yield Route(prefix + template, tuple(sorted(set(names))))


@pytest.fixture
def staff_customer(db: Any, settings: Any) -> User:
    """A superuser (every admin page opens) who is also a paying customer (the billing pages look
    up their ids), so every id-taking view gets as far as its lookup."""
    settings.RATELIMIT_ENABLED = False  # thousands of requests from one address
    catalog_load(document=CATALOG)
    user = User.objects.create_superuser(
        email="operator@example.org", password="correct-horse-battery-staple-42"
    )
    customer = services.customer_get_or_create(user=user)
    add_card(customer)
    services.subscription_start(
        customer=customer,
        price=Price.objects.get(plan__code="pro", interval="month"),
        idempotency_key="impossible-ids-start",
    )
    return user


def _probes(routes: list[Route]) -> Iterator[tuple[str, str, tuple[int, ...]]]:
    """(method, address, the statuses it may get; any but 500 when empty) of every probe: ids no
    object can have in the path, control characters in the query string (with a harmless value
    for the path's parameters)."""
    not_found, refused = (404,), (400, 404)
    for route in routes:
        for method in ("get", "post"):
            if route.parameters:
                yield method, route.path(NUL), not_found
                yield method, route.path(f"inv_{NUL}1"), not_found
                yield method, route.path(LONG), ()
            # One name at a time on GET: a view may answer an unknown filter before it searches.
            names = QUERY_NAMES if method == "get" else ("=%00&".join(QUERY_NAMES),)
            for name in names:
                yield method, f"{route.path('x')}?{name}=%00", refused
            yield method, f"{route.path('x')}?a%00b=1", refused
            yield method, f"{route.path('x')}?q=%01%7F", refused


def _answer(client: Client, method: str, address: str) -> int:
    if method == "get":
        return client.get(address).status_code
    return client.post(address, {"form_token": NUL, "price": NUL}).status_code


def test_the_walk_covers_every_pattern_that_takes_an_id():
    """The walk itself: included configurations, regex patterns and converters are all found."""
    templates = {route.template for route in every_route()}
    assert "sandbox/setup/{reference}/" in templates
    assert "billing/invoices/{invoice_id}/" in templates
    assert "staff/customers/{customer_id}/" in templates
    assert "accounts/confirm-email/{key}/" in templates
    assert "accounts/password/reset/key/{uidb36}-{key}/" in templates
    assert "admin/accounts/user/{object_id}/change/" in templates
    assert "api/v1/invoices/{invoice}" in templates
    assert len(templates) > 150


@pytest.mark.parametrize("who", ["anonymous", "staff"])
def test_no_address_with_an_impossible_id_answers_500(who, staff_customer):
    routes = list(every_route())
    client = Client(raise_request_exception=False)
    failures: list[str] = []
    if who == "staff":
        client.force_login(staff_customer)
    for method, address, expected in _probes(routes):
        status = _answer(client, method, address)
        if who == "staff" and method == "post":
            client.force_login(staff_customer)  # the probe may have signed out (POST /logout/)
        if status >= 500 or (expected and status not in expected):
            failures.append(f"{method.upper()} {address[:120]!r} -> {status}, expected {expected}")
    assert failures == [], "\n".join(failures)


def test_a_nul_in_the_path_is_the_house_404_page(client):
    response = client.get("/billing/invoices/%00/")
    assert response.status_code == 404
    assert "Page not found" in response.content.decode()
    assert response["Content-Security-Policy"]


def test_a_nul_in_an_api_path_is_a_404_in_the_api_error_shape(client):
    response = client.get("/api/v1/invoices/%00")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_a_control_character_in_the_query_string_is_a_400_that_says_why(client):
    response = client.get("/staff/?q=%00")
    assert response.status_code == 400
    assert "control character in its query string" in response.content.decode()
    api = client.get("/api/v1/invoices?customer=cus_%00")
    assert api.status_code == 400
    assert api.json()["error"]["code"] == "control_character"
    assert api.json()["error"]["details"] == {"parameter": "customer"}


def test_tabs_and_line_breaks_in_a_query_value_are_accepted(client):
    assert client.get("/pricing/?interval=year%0D%0A%09").status_code == 200
