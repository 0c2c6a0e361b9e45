"""Customers and their saved cards."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from tollgate.core import clock
from tollgate.core.ids import (
    new_cus_id,
    new_invoice_prefix,
    new_pm_id,
)


class Customer(models.Model):
    """Who pays: the billing side of an organisation (``organisation``), whose owners and admins
    manage it. ``user`` is the account that opened it; it is cleared when that account leaves an
    organisation that others still share (the customer stays with them), so the account can open
    a customer of its own again.

    ``next_invoice_sequence`` is taken under this row's lock when an invoice is finalized, so numbers
    are gapless per customer without serializing every worker on one counter.
    """

    public_id = models.CharField(max_length=32, unique=True, default=new_cus_id, editable=False)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="billing_customer",
    )
    # Null only for a customer written by a release without organisations, until the backfill
    # (billing migration 0012) or its next billing step gives it its personal organisation.
    organisation = models.OneToOneField(
        "organisations.Organisation",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="customer",
    )
    email = models.EmailField(max_length=254, help_text="Where receipts and payment notices go")
    name = models.CharField(max_length=150, blank=True)
    # The operator's own id for this customer (their user id), set through the API.
    external_id = models.CharField(max_length=255, null=True, blank=True, unique=True)
    invoice_prefix = models.CharField(
        max_length=12, unique=True, default=new_invoice_prefix, editable=False
    )
    next_invoice_sequence = models.PositiveIntegerField(default=1)
    gateway = models.CharField(max_length=32, blank=True)
    gateway_reference = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(default=clock.now, editable=False)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(user__isnull=False) | Q(organisation__isnull=False),
                name="customer_has_opener_or_organisation",
            ),
            models.CheckConstraint(
                condition=Q(next_invoice_sequence__gte=1), name="customer_invoice_sequence_positive"
            ),
            models.CheckConstraint(
                condition=Q(invoice_prefix__regex=r"^[0-9A-Z]{4,12}$"),
                name="customer_invoice_prefix_format",
            ),
            models.UniqueConstraint(
                fields=["gateway", "gateway_reference"],
                condition=~Q(gateway_reference=""),
                name="customer_gateway_reference_unique",
            ),
        ]
        # The API's list (newest first) and the staff lookup by the gateway's customer id. The
        # lookup by email prefix and by part of the name reads PostgreSQL-only indexes
        # (migration 0010): ``lower(email) text_pattern_ops`` and ``upper(name) gin_trgm_ops``.
        indexes = [
            models.Index(fields=["created_at", "id"], name="customer_created"),
            models.Index(fields=["gateway_reference"], name="customer_gateway_reference"),
        ]

    def __str__(self) -> str:
        return self.public_id


class PaymentMethod(models.Model):
    """A card saved on the gateway: its token, brand, last four digits and expiry. Never the number."""

    public_id = models.CharField(max_length=32, unique=True, default=new_pm_id, editable=False)
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="payment_methods")
    gateway = models.CharField(max_length=32)
    gateway_token = models.CharField(max_length=255)
    brand = models.CharField(max_length=32)
    last4 = models.CharField(max_length=4)
    exp_month = models.PositiveSmallIntegerField()
    exp_year = models.PositiveSmallIntegerField()
    is_default = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=clock.now, editable=False)
    detached_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["gateway", "gateway_token"], name="payment_method_token_unique"
            ),
            models.UniqueConstraint(
                fields=["customer"],
                condition=Q(is_default=True),
                name="payment_method_one_default_per_customer",
            ),
            models.CheckConstraint(
                condition=Q(last4__regex=r"^[0-9]{4}$"), name="payment_method_last4_digits"
            ),
            models.CheckConstraint(
                condition=Q(exp_month__gte=1, exp_month__lte=12), name="payment_method_exp_month"
            ),
            models.CheckConstraint(
                condition=Q(exp_year__gte=2000, exp_year__lte=9999), name="payment_method_exp_year"
            ),
            models.CheckConstraint(
                condition=Q(is_default=False) | Q(detached_at__isnull=True),
                name="payment_method_detached_not_default",
            ),
        ]
        # The staff lookup by a card's last four digits.
        indexes = [models.Index(fields=["last4"], name="payment_method_last4")]

    def __str__(self) -> str:
        return f"{self.brand} •••• {self.last4}"
