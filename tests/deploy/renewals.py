"""Run in the local cluster's environment by test_faults.py (``python -m tests.deploy.renewals``):

setup N   N customers with a card, each on a monthly plan whose first period has just ended,
          so the workers' billing clock renews (and charges) them all at its next run
report    what the renewals left, as JSON: renewed subscriptions, payments per invoice, the
          sandbox gateway's charges and the ledger check
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from collections import Counter


def setup(count: int) -> None:
    from tests.billing.conftest import CARD_OK, CATALOG, add_card, new_key
    from tollgate.accounts.models import User
    from tollgate.billing import services
    from tollgate.catalog.models import Price
    from tollgate.catalog.services import catalog_load
    from tollgate.core import clock

    catalog_load(document=CATALOG)
    price = Price.objects.get(plan__code="pro", interval="month", active=True)
    started = clock.now() - dt.timedelta(days=32)  # one monthly period ago, and a bit
    for number in range(count):
        user = User.objects.create_user(email=f"renewal{number}@example.org", password=None)
        customer = services.customer_get_or_create(user=user)
        add_card(customer, CARD_OK)
        with clock.frozen(started):
            services.subscription_start(customer=customer, price=price, idempotency_key=new_key())


def report() -> dict[str, object]:
    from tollgate.billing.gateways.sandbox.models import SandboxCharge
    from tollgate.billing.integrity import ledger_check
    from tollgate.billing.models import PaymentAttempt, Subscription
    from tollgate.billing.states import PaymentStatus
    from tollgate.core import clock

    succeeded = PaymentAttempt.objects.filter(status=PaymentStatus.SUCCEEDED)
    per_invoice = Counter(succeeded.values_list("invoice_id", flat=True))
    books = ledger_check()
    return {
        "subscriptions": Subscription.objects.count(),
        "renewed": Subscription.objects.filter(current_period_end__gt=clock.now()).count(),
        "succeeded_payments": succeeded.count(),
        "payments_by_status": dict(
            Counter(PaymentAttempt.objects.values_list("status", flat=True))
        ),
        "invoices_paid_twice": sorted(
            str(invoice) for invoice, count in per_invoice.items() if count > 1
        ),
        "gateway_charges": SandboxCharge.objects.count(),
        "ledger_ok": books.ok,
        "ledger_problems": [str(problem) for problem in books.problems[:5]],
    }


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tollgate.config.settings")
    import django

    django.setup()
    if sys.argv[1] == "setup":
        setup(int(sys.argv[2]))
    else:
        sys.stdout.write(json.dumps(report()) + "\n")


if __name__ == "__main__":
    main()
