"""Billing emails are tested through the real billing services: reuse the billing fixtures."""

from tests.billing.conftest import catalog, customer, make_customer, price, staff  # noqa: F401
