"""The billing clock: the billing run (``run.py``: due work derived from the database, claimed with
``SKIP LOCKED``) and the sending half of set-wise renewals (``renewals.py``)."""

from tollgate.billing.clock.run import BATCH_SIZE, BillingRunResult, billing_run

__all__ = ["BATCH_SIZE", "BillingRunResult", "billing_run"]
