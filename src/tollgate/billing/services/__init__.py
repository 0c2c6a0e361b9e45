"""Billing's public writes: customers and cards, subscriptions, invoices, payments, refunds and
disputes, one module per aggregate, every name re-exported here (``services.subscription_start``).

Every write runs in one durable transaction, takes its row locks through ``billing.locks`` (customer
-> subscription -> invoice -> payment -> refund), records an audit event in that transaction and
queues its emails and events in the outbox, delivered after commit. The pieces they share with the
billing clock run inside a caller's transaction and live in ``billing.steps``; they are not
services and are not exported here.

Calls to the gateway never happen inside a transaction (see ``services.payments``). Every service
a request uses to move money or create billable state (``subscription_start``,
``subscription_change_price``, ``subscription_seats_change``, ``subscription_cancel``,
``invoice_pay``) takes an
``idempotency_key`` and runs through ``core.idempotency``: its claim is committed before the work
starts and checkpointed in the transaction of the work's first effect, so the same request again
returns the first result, even after a crash. ``refund_issue`` keeps its key on the refund itself.
"""

from tollgate.billing.services.customers import (
    customer_gateway_forget,
    customer_get_or_create,
    payment_method_attach,
    payment_method_card_update,
    payment_method_detach,
    payment_method_setup_start,
)
from tollgate.billing.services.discounts import (
    coupon_archive,
    coupon_create,
    promotion_code_archive,
    promotion_code_create,
    subscription_discount_apply,
)
from tollgate.billing.services.disputes import DisputeReport, dispute_acknowledge, dispute_record
from tollgate.billing.services.extensions import EXTEND_MAX_DAYS, subscription_extend
from tollgate.billing.services.invoices import (
    invoice_create_for_period,
    invoice_draft_create,
    invoice_finalize,
)
from tollgate.billing.services.payments import (
    invoice_pay,
    payment_action_expire,
    payment_outcome_record,
    payment_reconcile,
)
from tollgate.billing.services.refunds import refund_issue, refund_reconcile
from tollgate.billing.services.seats import subscription_seats_change
from tollgate.billing.services.subscriptions import (
    subscription_cancel,
    subscription_change_price,
    subscription_resume,
    subscription_scheduled_change_cancel,
    subscription_start,
)
from tollgate.billing.steps.invoices import LineSpec
from tollgate.billing.steps.payments import ACTION_EXPIRED

__all__ = [
    "ACTION_EXPIRED",
    "EXTEND_MAX_DAYS",
    "DisputeReport",
    "LineSpec",
    "coupon_archive",
    "coupon_create",
    "customer_gateway_forget",
    "customer_get_or_create",
    "dispute_acknowledge",
    "dispute_record",
    "invoice_create_for_period",
    "invoice_draft_create",
    "invoice_finalize",
    "invoice_pay",
    "payment_action_expire",
    "payment_method_attach",
    "payment_method_card_update",
    "payment_method_detach",
    "payment_method_setup_start",
    "payment_outcome_record",
    "payment_reconcile",
    "promotion_code_archive",
    "promotion_code_create",
    "refund_issue",
    "refund_reconcile",
    "subscription_cancel",
    "subscription_change_price",
    "subscription_discount_apply",
    "subscription_extend",
    "subscription_resume",
    "subscription_scheduled_change_cancel",
    "subscription_seats_change",
    "subscription_start",
]
