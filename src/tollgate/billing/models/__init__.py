"""Billing data: customers, cards, subscriptions, invoices, payments, refunds and the ledger.

Data and constraints only; every write goes through ``billing.services``. The database is the last
line of defence: one live subscription per customer, one live payment attempt per invoice, refunds
never above the captured amount and invoice numbers unique are all enforced by constraints, not by
Python alone. Amounts are integers in minor units; currencies are ISO 4217 codes.

One module per aggregate; this package re-exports them all, so callers import from
``tollgate.billing.models``.
"""

# The gateways keep their own records in this app's tables (they are not apps): imported here so
# Django finds them, and re-exported like the rest.
from tollgate.billing.gateways.sandbox.models import (
    SandboxCard,
    SandboxCharge,
    SandboxCustomer,
    SandboxRefund,
    SandboxSetupSession,
)
from tollgate.billing.gateways.stripe.models import StripeRequest
from tollgate.billing.models.common import CURRENCY
from tollgate.billing.models.customers import Customer, PaymentMethod
from tollgate.billing.models.discounts import Coupon, Discount, PromotionCode
from tollgate.billing.models.disputes import Dispute, new_dsp_id
from tollgate.billing.models.gateway_records import InboundEvent, ReconciliationRun
from tollgate.billing.models.invoices import Invoice, InvoiceLine, InvoiceNumberSequence
from tollgate.billing.models.ledger import AppendOnly, LedgerAccount, LedgerEntry, LedgerTransaction
from tollgate.billing.models.payments import PaymentAttempt, Refund
from tollgate.billing.models.subscriptions import SUBSCRIPTION_AMOUNT, Subscription

__all__ = [
    "CURRENCY",
    "SUBSCRIPTION_AMOUNT",
    "AppendOnly",
    "Coupon",
    "Customer",
    "Discount",
    "Dispute",
    "InboundEvent",
    "Invoice",
    "InvoiceLine",
    "InvoiceNumberSequence",
    "LedgerAccount",
    "LedgerEntry",
    "LedgerTransaction",
    "PaymentAttempt",
    "PaymentMethod",
    "PromotionCode",
    "ReconciliationRun",
    "Refund",
    "SandboxCard",
    "SandboxCharge",
    "SandboxCustomer",
    "SandboxRefund",
    "SandboxSetupSession",
    "StripeRequest",
    "Subscription",
    "new_dsp_id",
]
