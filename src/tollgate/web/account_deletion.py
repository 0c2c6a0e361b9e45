"""A person deletes their own account (the right to erasure, GDPR article 17), as far as the law lets:
personal data is anonymised, while invoices, payments and ledger entries, which must be kept, stay
exactly as they were (their customer row stays too, with no name and a dead address).

It cancels through billing's and integrations' public services, so it lives above both apps (as
``web.account_data`` does). Those services each run their own durable transaction, so the deletion
is a sequence, ordered so that a failure part-way leaves a consistent account that can be deleted
again: the subscription is cancelled now (a payment in progress refuses that, and nothing has changed
yet), then API keys are revoked and saved cards removed, then one transaction anonymises the account
and its customer and records ``account.deleted``, then the person's audit events lose their actor
(``audit_actor_anonymise``, its own transaction), and their sessions are ended.

An organisation others share goes on without them: they leave it first (its last owner is refused
until ownership is transferred, with nothing changed), and its customer and subscription are not
touched; what they opened and kept for themselves is closed as above.
"""

from __future__ import annotations

from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from allauth.usersessions.models import UserSession
from django.db import transaction

from tollgate.accounts.models import User
from tollgate.audit.services import audit_actor_anonymise, audit_record
from tollgate.billing import services as billing
from tollgate.billing.models import Customer, PaymentMethod
from tollgate.billing.selectors import customer_for, subscription_current
from tollgate.integrations import keys
from tollgate.integrations.models import ApiKey
from tollgate.organisations.selectors import member_count, membership_of
from tollgate.organisations.services import member_leave


def deleted_email(user: User) -> str:
    """What replaces the account's and customer's address: unique, and never deliverable."""
    return f"deleted-{user.public_id}@invalid"


def _billing_stop(*, user: User, customer: Customer) -> None:
    subscription = subscription_current(customer=customer)
    if subscription is not None:
        billing.subscription_cancel(
            subscription=subscription,
            at_period_end=False,
            actor=user,
            idempotency_key=f"account-deletion-{subscription.public_id}",
        )
    for key in ApiKey.objects.filter(customer=customer, revoked_at__isnull=True):
        keys.api_key_revoke(key=key, actor=user)
    for method in PaymentMethod.objects.filter(customer=customer, detached_at__isnull=True):
        billing.payment_method_detach(payment_method=method, actor=user)


def _anonymise(*, user: User, customers: list[Customer]) -> None:
    with transaction.atomic(durable=True):
        locked = User.objects.select_for_update().get(pk=user.pk)
        address = deleted_email(locked)
        locked.email = address
        locked.name = ""
        locked.is_active = False
        locked.set_unusable_password()
        locked.save(update_fields=["email", "name", "is_active", "password"])
        EmailAddress.objects.filter(user=locked).delete()
        Authenticator.objects.filter(user=locked).delete()
        # Billing has no service that renames a customer; these two columns only, under the
        # account's lock (no one else shares these customers).
        Customer.objects.filter(pk__in=[c.pk for c in customers]).update(name="", email=address)
        audit_record(
            action="account.deleted",
            actor=locked,
            target=locked,
            details={"customer": customers[0].public_id if customers else None},
        )
    user.refresh_from_db()


def account_delete(*, user: User) -> User:
    """Delete ``user``'s account: cancel their live subscription now (no refund), revoke their API
    keys, remove their saved cards, anonymise their account and customer (email
    ``deleted-<public_id>@invalid``, no name, an unusable password, inactive, no allauth email
    addresses or two-factor authenticators), anonymise them as the actor of audit events and end their sessions. Invoices,
    payments, refunds and ledger entries are kept unchanged. The address can sign up again.

    Raises the billing error (nothing changed) when the subscription cannot be cancelled now, e.g.
    while a payment is in progress. Safe to call again after a failure part-way."""
    membership = membership_of(user=user)
    if membership is not None and member_count(organisation=membership.organisation) > 1:
        member_leave(organisation=membership.organisation, user=user)
    found = [customer_for(user=user), *Customer.objects.filter(user=user)]
    customers = list({c.pk: c for c in found if c is not None}.values())
    for customer in customers:
        _billing_stop(user=user, customer=customer)
    _anonymise(user=user, customers=customers)
    audit_actor_anonymise(user=user)
    for session in UserSession.objects.filter(user=user):
        session.end()
    return user
