"""What billing emails say and link to: absolute links to the customer's billing pages, the way
amounts, dates and terms are written, and the subscription confirmation.

The senders here are steps: they run inside the caller's transaction (the email is an outbox row
that commits with the change and is sent after commit), each under a dedupe key naming its event,
so an event is emailed once however often the code that notices it runs.
"""

from __future__ import annotations

import datetime as dt

from tollgate.billing.models import Invoice, Subscription
from tollgate.billing.selectors import payment_method_default
from tollgate.billing.states import SubscriptionStatus
from tollgate.catalog.models import Price
from tollgate.core.money import Money
from tollgate.notifications.services import absolute_url, email_send_template


def date_text(moment: dt.datetime) -> str:
    """A date as billing emails write it (UTC): ``March 1, 2025``."""
    return f"{moment:%B %-d, %Y}"


def price_term(price: Price) -> str:
    """``month``, ``year`` or ``3 months``: what one period of the price lasts."""
    if price.interval_count == 1:
        return str(price.interval)
    return f"{price.interval_count} {price.interval}s"


def billing_links(*, invoice: Invoice | None = None) -> dict[str, str]:
    """Links for a billing email's context: the billing dashboard, the page where the customer adds
    or replaces a card and, with ``invoice``, that invoice's page (where an open one is paid)."""
    links = {
        "dashboard_url": absolute_url("billing:dashboard"),
        "payment_method_url": absolute_url("billing:payment_method"),
    }
    if invoice is not None:
        links["invoice_url"] = absolute_url("billing:invoice", invoice.public_id)
    return links


def subscription_confirmation_send(*, subscription: Subscription) -> None:
    """Confirm that a subscription has started: its trial began, or it is paid and active.

    Once per subscription (a trial that later converts was confirmed when it began).
    """
    price = subscription.price
    trialing = subscription.status == SubscriptionStatus.TRIALING
    card = payment_method_default(customer=subscription.customer)
    email_send_template(
        to=subscription.customer.email,
        template="billing_subscription_confirmation",
        context={
            **billing_links(),
            "plan": price.plan.name,
            "trialing": trialing,
            "trial_ends_on": date_text(subscription.trial_end) if subscription.trial_end else "",
            "amount": Money(subscription.amount, price.currency).format(),
            "free": price.amount == 0,
            "card": str(card) if card else "",
            "term": price_term(price),
            "next_charge_on": date_text(subscription.current_period_end),
        },
        dedupe_key=f"billing_subscription_confirmation:{subscription.public_id}",
    )
