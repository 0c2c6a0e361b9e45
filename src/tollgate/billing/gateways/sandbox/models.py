"""The sandbox gateway's own records: what an offline processor would keep on its side.

They live in the billing app's tables but belong to the sandbox alone; the engine never reads them.
They answer "what happened to idempotency key K" and list transactions for reconciliation, like a
real processor's API. Card numbers are not stored: only the behaviour, brand and last four digits.
"""

from __future__ import annotations

import secrets

from django.db import models

from tollgate.core import clock


def _reference(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def new_sandbox_customer_reference() -> str:
    return _reference("sbcus")


def new_sandbox_setup_reference() -> str:
    return _reference("sbseti")


def new_sandbox_card_token() -> str:
    return _reference("sbpm")


def new_sandbox_charge_reference() -> str:
    return _reference("sbch")


def new_sandbox_refund_reference() -> str:
    return _reference("sbre")


class CardBehaviour(models.TextChoices):
    SUCCEEDS = "succeeds"
    DECLINES_GENERIC = "declines_generic"
    DECLINES_INSUFFICIENT_FUNDS = "declines_insufficient_funds"
    DECLINES_AFTER_ATTACH = "declines_after_attach"
    REQUIRES_AUTHENTICATION = "requires_authentication"
    DECLINES_STOLEN = "declines_stolen"
    TIMES_OUT = "times_out"


class SandboxCustomer(models.Model):
    reference = models.CharField(max_length=64, unique=True, default=new_sandbox_customer_reference)
    customer_id = models.CharField(max_length=32, unique=True)
    email = models.EmailField(max_length=254)
    created_at = models.DateTimeField(default=clock.now)

    class Meta:
        app_label = "billing"
        db_table = "billing_sandbox_customer"

    def __str__(self) -> str:
        return self.reference


class SandboxCard(models.Model):
    token = models.CharField(max_length=64, unique=True, default=new_sandbox_card_token)
    customer_reference = models.CharField(max_length=64)
    behaviour = models.CharField(max_length=32, choices=CardBehaviour.choices)
    brand = models.CharField(max_length=32)
    last4 = models.CharField(max_length=4)
    exp_month = models.PositiveSmallIntegerField()
    exp_year = models.PositiveSmallIntegerField()
    created_at = models.DateTimeField(default=clock.now)
    detached_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        app_label = "billing"
        db_table = "billing_sandbox_card"

    def __str__(self) -> str:
        return self.token


class SandboxSetupSession(models.Model):
    class Status(models.TextChoices):
        OPEN = "open"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    reference = models.CharField(max_length=64, unique=True, default=new_sandbox_setup_reference)
    customer_reference = models.CharField(max_length=64)
    return_url = models.URLField(max_length=500)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    card = models.ForeignKey(SandboxCard, on_delete=models.PROTECT, null=True, related_name="+")
    failure_code = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=clock.now)

    class Meta:
        app_label = "billing"
        db_table = "billing_sandbox_setup_session"

    def __str__(self) -> str:
        return self.reference


class SandboxCharge(models.Model):
    class Status(models.TextChoices):
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        REQUIRES_ACTION = "requires_action"

    reference = models.CharField(max_length=64, unique=True, default=new_sandbox_charge_reference)
    idempotency_key = models.CharField(max_length=255, unique=True)
    request_fingerprint = models.CharField(max_length=64)
    customer_reference = models.CharField(max_length=64)
    card_token = models.CharField(max_length=64)
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    off_session = models.BooleanField()
    status = models.CharField(max_length=16, choices=Status.choices)
    decline_code = models.CharField(max_length=64, blank=True)
    # The first answer was requires_action: a replay of the request answers that again.
    needed_action = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=clock.now)

    class Meta:
        app_label = "billing"
        db_table = "billing_sandbox_charge"
        indexes = [models.Index(fields=["created_at"], name="sandbox_charge_created")]

    def __str__(self) -> str:
        return self.reference


class SandboxRefund(models.Model):
    class Status(models.TextChoices):
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    reference = models.CharField(max_length=64, unique=True, default=new_sandbox_refund_reference)
    idempotency_key = models.CharField(max_length=255, unique=True)
    request_fingerprint = models.CharField(max_length=64)
    charge = models.ForeignKey(SandboxCharge, on_delete=models.PROTECT, related_name="refunds")
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=16, choices=Status.choices)
    failure_code = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=clock.now)

    class Meta:
        app_label = "billing"
        db_table = "billing_sandbox_refund"
        indexes = [models.Index(fields=["created_at"], name="sandbox_refund_created")]

    def __str__(self) -> str:
        return self.reference
