"""Customers and their cards: the billing customer of a user, card setup on the gateway's hosted
form, saving a card (which pays what is open), detaching one, and the gateway's news about cards
and customers."""

from __future__ import annotations

from django.db import transaction

from tollgate.accounts.models import User
from tollgate.audit.services import audit_record
from tollgate.billing import selectors
from tollgate.billing.errors import InvoiceNotPayable, PaymentInProgress, PaymentMethodNotFound
from tollgate.billing.gateways.base import SetupSession, SetupStatus
from tollgate.billing.gateways.registry import gateway_get
from tollgate.billing.locks import lock_customer
from tollgate.billing.models import Customer, Invoice, PaymentMethod
from tollgate.billing.services.payments import invoice_charge
from tollgate.billing.states import PAYMENT_LIVE, InvoiceStatus
from tollgate.core import clock
from tollgate.organisations.errors import BillingManagedByOthers
from tollgate.organisations.locks import lock_account
from tollgate.organisations.models import BILLING_ROLES, Membership, Organisation, Role
from tollgate.organisations.steps import (
    owner_membership_restore_locked,
    personal_organisation_create_locked,
)


def customer_get_or_create(*, user: User) -> Customer:
    """The billing customer ``user`` manages, created on first use with the account's personal
    organisation (the account its owner). A customer opened before organisations existed gets its
    personal organisation here; an account that left a team becomes the owner of its own earlier
    customer again. A plain member of an organisation is refused (BillingManagedByOthers): its
    owners and admins pay. Safe under concurrent calls: the account's row is locked first."""
    existing = selectors.customer_for(user=user)
    if existing is not None and existing.organisation_id is not None:
        return existing
    with transaction.atomic(durable=True):
        locked_user = lock_account(user)
        membership = Membership.objects.filter(user=locked_user).first()
        if membership is not None:
            if membership.role not in BILLING_ROLES:
                raise BillingManagedByOthers()
            return Customer.objects.get(organisation_id=membership.organisation_id)
        customer = Customer.objects.select_for_update().filter(user=locked_user).first()
        if customer is None:
            customer = Customer.objects.create(user=locked_user, email=locked_user.email)
            audit_record(action="billing.customer_created", actor=user, target=customer)
        if customer.organisation is None:
            customer.organisation = personal_organisation_create_locked(
                user=locked_user, name=customer.name
            )
            customer.save(update_fields=["organisation"])
        else:
            owner_membership_restore_locked(user=locked_user, organisation=customer.organisation)
    return customer


def payment_method_setup_start(*, customer: Customer, return_url: str) -> SetupSession:
    """Open a card-setup session on the gateway's hosted form (the card never touches our pages).

    Creates the customer's record at the gateway first when there is none for this gateway.
    """
    gateway = gateway_get()
    if customer.gateway != gateway.name or not customer.gateway_reference:
        reference = gateway.customer_create(customer_id=customer.public_id, email=customer.email)
        with transaction.atomic(durable=True):
            locked = lock_customer(customer)
            locked.gateway, locked.gateway_reference = gateway.name, reference
            locked.save(update_fields=["gateway", "gateway_reference"])
            audit_record(
                action="billing.gateway_customer_created",
                target=locked,
                details={"gateway": gateway.name},
            )
        customer.gateway, customer.gateway_reference = gateway.name, reference
    return gateway.setup_start(customer_reference=customer.gateway_reference, return_url=return_url)


def payment_method_attach(
    *, customer: Customer, setup_reference: str, actor: User | None = None
) -> PaymentMethod:
    """Save the card of a completed setup session as the customer's default card.

    Attaching the same session again returns the same card and charges nothing. A newly saved card
    is the signal that the customer wants to pay: every open invoice of the customer without a
    payment in progress is charged with it at once (on session: the customer is present).
    """
    gateway = gateway_get()
    result = gateway.setup_result(session_reference=setup_reference)
    if (
        result.status != SetupStatus.SUCCEEDED
        or result.card is None
        or not customer.gateway_reference
        or result.customer_reference != customer.gateway_reference
    ):
        raise PaymentMethodNotFound(details={"failure": result.failure_code or result.status})
    card = result.card
    with transaction.atomic(durable=True):
        locked = lock_customer(customer)
        method = PaymentMethod.objects.filter(
            gateway=gateway.name, gateway_token=card.token
        ).first()
        if method is None:
            PaymentMethod.objects.filter(customer=locked, is_default=True).update(is_default=False)
            method = PaymentMethod.objects.create(
                customer=locked,
                gateway=gateway.name,
                gateway_token=card.token,
                brand=card.brand,
                last4=card.last4,
                exp_month=card.exp_month,
                exp_year=card.exp_year,
                is_default=True,
            )
            audit_record(
                action="billing.payment_method_attached",
                actor=actor,
                target=method,
                details={"customer": locked.public_id, "brand": card.brand, "last4": card.last4},
            )
        else:
            return method
    for invoice in Invoice.objects.filter(customer=customer, status=InvoiceStatus.OPEN).exclude(
        payments__status__in=sorted(PAYMENT_LIVE)
    ):
        try:
            invoice_charge(invoice=invoice, off_session=False, actor=actor)
        except (PaymentInProgress, InvoiceNotPayable):
            continue  # another request is collecting it, or it was just settled
    return method


def payment_method_detach(
    *, payment_method: PaymentMethod, actor: User | None = None
) -> PaymentMethod:
    """Remove a saved card: it is forgotten at the gateway and never charged again. Detaching the
    default card leaves the customer without one; the next due charge then fails for want of a
    card and dunning runs its course (a new card pays at once)."""
    with transaction.atomic(durable=True):
        lock_customer(payment_method.customer)
        method = PaymentMethod.objects.select_for_update().get(pk=payment_method.pk)
        if method.detached_at is not None:
            return method
        method.detached_at = clock.now()
        method.is_default = False
        method.save(update_fields=["detached_at", "is_default"])
        audit_record(
            action="billing.payment_method_detached",
            actor=actor,
            target=method,
            details={"brand": method.brand, "last4": method.last4},
        )
    gateway_get(method.gateway).payment_method_detach(token=method.gateway_token)
    return method


def payment_method_card_update(
    *, payment_method: PaymentMethod, brand: str, last4: str, exp_month: int, exp_year: int
) -> PaymentMethod:
    """Keep a saved card's brand, last four digits and expiry as the gateway has them now (the bank
    renewed the card, or the customer updated it). Unchanged details change nothing."""
    with transaction.atomic(durable=True):
        lock_customer(payment_method.customer)
        method = PaymentMethod.objects.select_for_update().get(pk=payment_method.pk)
        changed = {
            name: value
            for name, value in (
                ("brand", brand),
                ("last4", last4),
                ("exp_month", exp_month),
                ("exp_year", exp_year),
            )
            if getattr(method, name) != value
        }
        if not changed:
            return method
        for name, value in changed.items():
            setattr(method, name, value)
        method.save(update_fields=sorted(changed))
        audit_record(
            action="billing.payment_method_updated",
            target=method,
            details={"fields": sorted(changed), "brand": method.brand, "last4": method.last4},
        )
    return method


def customer_gateway_forget(*, customer: Customer, gateway: str, reference: str) -> Customer:
    """The gateway deleted its customer record (and with it the saved cards): the cards are marked
    detached and the link is cleared, so the next card setup creates a new gateway customer. A link
    that has changed since (a new gateway customer) is left alone."""
    with transaction.atomic(durable=True):
        locked = lock_customer(customer)
        if locked.gateway != gateway or locked.gateway_reference != reference:
            return locked
        now = clock.now()
        forgotten = list(
            PaymentMethod.objects.select_for_update()
            .filter(customer=locked, gateway=gateway, detached_at__isnull=True)
            .values_list("public_id", flat=True)
        )
        PaymentMethod.objects.filter(customer=locked, public_id__in=forgotten).update(
            detached_at=now, is_default=False
        )
        locked.gateway_reference = ""
        locked.save(update_fields=["gateway_reference"])
        audit_record(
            action="billing.gateway_customer_deleted",
            target=locked,
            details={"gateway": gateway, "payment_methods": forgotten},
        )
    return locked


def customer_opener_departed_locked(organisation: Organisation, user: User) -> None:
    """Registered with ``organisations.registry``: in the transaction where ``user`` left
    ``organisation`` (locked), a customer they opened stays with the organisation when others
    still share it: the opening account is cleared, and its receipts go to an owner from now on."""
    customer = Customer.objects.select_for_update().filter(organisation=organisation, user=user)
    locked = customer.first()
    owner = (
        Membership.objects.filter(organisation=organisation, role=Role.OWNER)
        .select_related("user")
        .order_by("created_at", "pk")
        .first()
    )
    if locked is None or owner is None:
        return
    locked.user, locked.email = None, owner.user.email
    locked.save(update_fields=["user", "email"])
    audit_record(
        action="billing.customer_handed_over",
        actor=user,
        target=locked,
        details={"organisation": organisation.public_id, "opened_by": user.public_id},
    )
