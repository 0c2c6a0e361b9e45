"""Shared pieces of the billing models: the ISO 4217 currency constraint."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

CURRENCY = Q(currency__regex=r"^[A-Z]{3}$")


def currency_check(model: str) -> models.CheckConstraint:
    return models.CheckConstraint(condition=CURRENCY, name=f"{model}_currency_iso4217")
