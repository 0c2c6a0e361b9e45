"""Row locks of the organisations app, taken before billing's (see ``billing.locks``):

    organisation(s), by primary key -> account -> customer -> subscription -> ...

Every write that changes who belongs to an organisation locks the organisation's row first, so
two concurrent changes (two owners leaving at once) are serialized and each sees the other's
result. On SQLite ``select_for_update`` is a no-op and writers are serialized anyway.
"""

from __future__ import annotations

from django.db import transaction

from tollgate.accounts.models import User
from tollgate.organisations.models import Organisation


def _require_transaction() -> None:
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("row locks are only held inside a transaction")


def lock_organisations(*organisation_ids: int) -> dict[int, Organisation]:
    """Lock the organisations (in primary-key order) and return them fresh, by primary key."""
    _require_transaction()
    found = Organisation.objects.select_for_update().filter(pk__in=set(organisation_ids))
    return {organisation.pk: organisation for organisation in found.order_by("pk")}


def lock_organisation(organisation: Organisation) -> Organisation:
    return lock_organisations(organisation.pk)[organisation.pk]


def lock_account(user: User) -> User:
    """Lock the account's row: its membership changes one at a time."""
    _require_transaction()
    return User.objects.select_for_update().get(pk=user.pk)
