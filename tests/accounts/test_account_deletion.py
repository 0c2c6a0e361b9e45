"""A person deletes their own account: personal data anonymised, the books kept as they were."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from allauth.account.models import EmailAddress
from django.test import Client, override_settings
from django.urls import reverse

from tests.billing.conftest import (  # noqa: F401  (fixtures)
    CARD_REQUIRES_AUTHENTICATION,
    add_card,
    new_key,
    price,
)
from tests.conftest import STRONG_PASSWORD
from tests.web.conftest import catalog  # noqa: F401  (fixture: plans with api access)
from tollgate.accounts.models import User
from tollgate.audit.models import ANONYMISED_ACTOR, AuditEvent
from tollgate.audit.verification import audit_chain_verify
from tollgate.billing import services
from tollgate.billing.integrity import ledger_check
from tollgate.billing.models import (
    Customer,
    Invoice,
    LedgerTransaction,
    PaymentAttempt,
    PaymentMethod,
    Subscription,
)
from tollgate.billing.states import SubscriptionStatus
from tollgate.integrations import keys
from tollgate.integrations.models import ApiKey

pytestmark = pytest.mark.django_db

DELETE = "/account/delete/"
EMAIL = "jo@example.org"


def _signed_in(make_user: Callable[..., User], email: str = EMAIL) -> tuple[User, Client]:
    user = make_user(email=email)
    client = Client()
    response = client.post("/accounts/login/", {"login": email, "password": STRONG_PASSWORD})
    assert response.status_code == 302
    return user, client


def _books(customer: Customer) -> list[Any]:
    return [
        list(Invoice.objects.filter(customer=customer).values().order_by("id")),
        list(PaymentAttempt.objects.filter(invoice__customer=customer).values().order_by("id")),
        list(LedgerTransaction.objects.filter(customer=customer).values().order_by("id")),
    ]


def _delete(client: Client, capture: Any, **data: str) -> Any:
    with capture(execute=True):
        return client.post(DELETE, {"password": STRONG_PASSWORD, "confirmation": "DELETE", **data})


def test_the_account_page_links_to_a_confirmation_form(make_user):
    _, client = _signed_in(make_user)
    assert DELETE in client.get(reverse("web:account")).content.decode()
    page = client.get(DELETE).content.decode()
    assert 'name="password"' in page
    assert 'name="confirmation"' in page


def test_a_wrong_password_or_no_confirmation_deletes_nothing(
    make_user, django_capture_on_commit_callbacks
):
    user, client = _signed_in(make_user)
    response = _delete(client, django_capture_on_commit_callbacks, password="not-my-password-1")
    assert response.status_code == 200
    assert "That is not your current password." in response.content.decode()
    response = _delete(client, django_capture_on_commit_callbacks, confirmation="yes")
    assert response.status_code == 200
    assert "to confirm" in response.content.decode()
    user.refresh_from_db()
    assert user.email == EMAIL
    assert user.is_active
    assert not AuditEvent.objects.filter(action="account.deleted").exists()


def test_deleting_needs_the_csrf_token(make_user):
    user = make_user(email=EMAIL)
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    response = client.post(DELETE, {"password": STRONG_PASSWORD, "confirmation": "DELETE"})
    assert response.status_code == 403
    user.refresh_from_db()
    assert user.is_active


def test_deletion_anonymises_the_person_and_keeps_the_books(
    make_user,
    price,  # noqa: F811  (the fixture)
    django_capture_on_commit_callbacks,
):
    user, client = _signed_in(make_user)
    customer = services.customer_get_or_create(user=user)
    add_card(customer)
    services.subscription_start(
        customer=customer, price=price("pro"), trial=False, idempotency_key=new_key()
    )
    keys.customer_api_key_create(customer=customer, name="ci", scopes=["billing:read"], actor=user)
    books = _books(customer)
    assert all(books)

    response = _delete(client, django_capture_on_commit_callbacks)
    assert response.status_code == 302
    assert response["Location"] == reverse("web:home")

    user.refresh_from_db()
    anonymous = f"deleted-{user.public_id}@invalid"
    assert (user.email, user.name, user.is_active) == (anonymous, "", False)
    assert not user.has_usable_password()
    assert not EmailAddress.objects.filter(user=user).exists()
    customer.refresh_from_db()
    assert (customer.email, customer.name) == (anonymous, "")
    assert Subscription.objects.get(customer=customer).status == SubscriptionStatus.CANCELED
    assert not ApiKey.objects.filter(customer=customer, revoked_at__isnull=True).exists()
    assert not PaymentMethod.objects.filter(customer=customer, detached_at__isnull=True).exists()

    # The invoices, payments and ledger entries are what they were (cancelling added none).
    after = _books(customer)
    assert after == books
    assert ledger_check().ok

    # Signed out, cannot sign in again; no audit event names them as actor; the chain holds.
    assert client.get(reverse("web:account")).status_code == 302
    response = Client().post("/accounts/login/", {"login": EMAIL, "password": STRONG_PASSWORD})
    assert response.status_code == 200
    assert not AuditEvent.objects.filter(actor=user).exists()
    assert not AuditEvent.objects.filter(actor_repr=user.public_id).exists()
    deleted = AuditEvent.objects.get(action="account.deleted")
    assert (deleted.target_id, deleted.actor_repr) == (user.public_id, ANONYMISED_ACTOR)
    report = audit_chain_verify()
    assert report.ok, report.findings


def test_the_address_can_sign_up_again(make_user, django_capture_on_commit_callbacks):
    _, client = _signed_in(make_user)
    assert _delete(client, django_capture_on_commit_callbacks).status_code == 302
    with django_capture_on_commit_callbacks(execute=True):
        response = Client().post(
            "/accounts/signup/",
            {"email": EMAIL, "password1": STRONG_PASSWORD, "password2": STRONG_PASSWORD},
        )
    assert response.status_code == 302
    assert User.objects.filter(email=EMAIL, is_active=True).count() == 1


def test_a_payment_in_progress_refuses_the_deletion_and_changes_nothing(
    make_user,
    price,  # noqa: F811  (the fixture)
    django_capture_on_commit_callbacks,
):
    user, client = _signed_in(make_user)
    customer = services.customer_get_or_create(user=user)
    add_card(customer, number=CARD_REQUIRES_AUTHENTICATION)
    services.subscription_start(
        customer=customer, price=price("pro"), trial=False, idempotency_key=new_key()
    )
    response = _delete(client, django_capture_on_commit_callbacks)
    assert response.status_code == 200
    assert 'role="alert"' in response.content.decode()
    user.refresh_from_db()
    assert (user.email, user.is_active) == (EMAIL, True)
    assert Subscription.objects.get(customer=customer).status == SubscriptionStatus.INCOMPLETE
    assert PaymentMethod.objects.filter(customer=customer, detached_at__isnull=True).exists()
    assert not AuditEvent.objects.filter(action="account.deleted").exists()


@override_settings(RATE_LIMIT_OVERRIDES={"reauthenticate-user": "2/minute"})
def test_password_guesses_on_the_deletion_form_are_limited(
    make_user, django_capture_on_commit_callbacks
):
    _, client = _signed_in(make_user)
    for _ in range(2):
        _delete(client, django_capture_on_commit_callbacks, password="not-my-password-1")
    response = _delete(client, django_capture_on_commit_callbacks)
    assert response.status_code == 429
    assert not AuditEvent.objects.filter(action="account.deleted").exists()
