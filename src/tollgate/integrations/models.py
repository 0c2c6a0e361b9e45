"""What the operator's product uses: API keys, reported usage, and outgoing webhooks.

Data and constraints only; every write goes through this app's services (``keys``, ``usage``,
``webhooks``).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from tollgate.billing.models import Customer
from tollgate.core import clock
from tollgate.core.ids import new_public_id


def new_key_id() -> str:
    return new_public_id("key")


def new_we_id() -> str:
    return new_public_id("we")


def new_msg_id() -> str:
    return new_public_id("msg")


class ApiKey(models.Model):
    """A credential for the API. The secret is shown once and kept only as its SHA-256: a key is
    found by its non-secret ``lookup`` part, then compared in constant time.

    ``kind`` says whose it is: the operator's product (``operator``, any customer) or one customer
    (``customer``, that customer only, limits from their plan). A key works until ``revoked_at`` and
    until ``expires_at``; rotating a key gives the old one an ``expires_at`` (the overlap window).
    """

    class Kind(models.TextChoices):
        OPERATOR = "operator"
        CUSTOMER = "customer"

    class Mode(models.TextChoices):
        LIVE = "live"
        TEST = "test"

    public_id = models.CharField(max_length=32, unique=True, default=new_key_id, editable=False)
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    mode = models.CharField(max_length=8, choices=Mode.choices)
    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, null=True, blank=True, related_name="api_keys"
    )
    lookup = models.CharField(max_length=16, unique=True, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    scopes = models.JSONField(default=list)
    rate_limits = models.JSONField(
        default=dict,
        blank=True,
        help_text='Operator keys: per operation class, e.g. {"check": "6000/minute"}; '
        "others keep the installation's defaults",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=clock.now, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    replaced_by = models.OneToOneField(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="replaces"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(kind="operator", customer__isnull=True))
                | Q(kind="customer", customer__isnull=False),
                name="api_key_customer_iff_customer_kind",
            ),
            models.CheckConstraint(
                condition=Q(secret_hash__regex=r"^[0-9a-f]{64}$"),  # noqa: S106 (a pattern)
                name="api_key_hash_sha256",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.public_id})"

    @property
    def display_prefix(self) -> str:
        """The non-secret start of the key, enough for a person to tell keys apart."""
        return f"tg_{self.mode}_{self.lookup}"


class UsageEvent(models.Model):
    """One reported use of a metered limit. ``event_id`` is the reporter's, so a resend is
    recognised (unique per customer). ``quantity`` adds to the period's total for metrics that
    reset each period, or moves the running level (may be negative) for level metrics."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+")
    event_id = models.CharField(max_length=255)
    metric = models.CharField(max_length=64)
    quantity = models.BigIntegerField()
    timestamp = models.DateTimeField()
    period_start = models.DateTimeField()
    received_at = models.DateTimeField(default=clock.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["customer", "event_id"], name="usage_event_unique_per_customer"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.metric} {self.quantity} ({self.event_id})"


class UsageTotal(models.Model):
    """The sum of a customer's usage of one metric in one period (``period_start``); level
    metrics keep a single row (their running level) at the epoch."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+")
    metric = models.CharField(max_length=64)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField(null=True, blank=True)
    quantity = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(default=clock.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["customer", "metric", "period_start"], name="usage_total_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.metric} {self.quantity}"


class WebhookEndpoint(models.Model):
    """Where the operator's product hears about changes. ``event_types`` empty means every type.
    ``secret`` signs deliveries (Standard Webhooks); after a rotation the previous secret signs
    too until ``previous_secret_expires_at``."""

    public_id = models.CharField(max_length=32, unique=True, default=new_we_id, editable=False)
    url = models.URLField(max_length=2000)
    description = models.CharField(max_length=200, blank=True)
    event_types = models.JSONField(default=list, blank=True)
    secret = models.CharField(max_length=128, editable=False)
    previous_secret = models.CharField(max_length=128, blank=True, editable=False)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=clock.now, editable=False)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return self.url


class WebhookEvent(models.Model):
    """An event for the operator's product, with a stable id receivers dedupe on. ``data`` is the
    object's state when the event was published."""

    public_id = models.CharField(max_length=32, unique=True, default=new_msg_id, editable=False)
    type = models.CharField(max_length=64)
    source_key = models.CharField(max_length=200, unique=True)
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=clock.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["type", "created_at"], name="webhook_event_type")]

    def __str__(self) -> str:
        return f"{self.type} {self.public_id}"


class WebhookDelivery(models.Model):
    """One event for one endpoint: attempted on a back-off schedule until it succeeds or the
    schedule runs out."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    event = models.ForeignKey(WebhookEvent, on_delete=models.CASCADE, related_name="deliveries")
    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=clock.now)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["event", "endpoint"], name="webhook_delivery_unique"),
            models.CheckConstraint(
                condition=~Q(status="pending") | Q(next_attempt_at__isnull=False),
                name="webhook_delivery_pending_has_next_attempt",
            ),
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="webhook_delivery_due",
                condition=Q(status="pending"),
            )
        ]

    def __str__(self) -> str:
        return f"{self.event} -> {self.endpoint} ({self.status})"


class WebhookAttempt(models.Model):
    """One try of a delivery: what the receiver answered (status, an excerpt) and how fast."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="tries")
    attempted_at = models.DateTimeField(default=clock.now)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(default=0)
    response_excerpt = models.CharField(max_length=500, blank=True)
    error = models.CharField(max_length=200, blank=True)
    succeeded = models.BooleanField(default=False)

    class Meta:
        ordering = ["-attempted_at", "-id"]

    def __str__(self) -> str:
        return f"{self.delivery} at {self.attempted_at:%Y-%m-%d %H:%M:%S}"


class SignedLinkUse(models.Model):
    """A checkout or portal link that was used: each works once."""

    nonce = models.CharField(max_length=64, unique=True)
    used_at = models.DateTimeField(default=clock.now)

    class Meta:
        indexes = [models.Index(fields=["used_at"], name="signed_link_use_used_at")]

    def __str__(self) -> str:
        return f"link used at {self.used_at:%Y-%m-%d %H:%M:%S}"
