"""Writes of the legacy app besides the import itself: the set-password invitations at go-live."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib.auth.hashers import UNUSABLE_PASSWORD_PREFIX
from django.db import transaction

from tollgate.accounts.models import User
from tollgate.accounts.services import password_set_invite
from tollgate.core import clock
from tollgate.core.outbox import outbox_batch
from tollgate.legacy.models import LegacyRecord

INVITE_BATCH_SIZE = 200


def legacy_invitations_send(
    *,
    batch_size: int = INVITE_BATCH_SIZE,
    limit: int | None = None,
    on_batch: Callable[[int], Any] | None = None,
) -> int:
    """Email each imported account that has no password yet a link to choose one (allauth's
    password-reset link, through the outbox after commit; audited per account), once: the
    account is marked invited in the same transaction, so running this again (after a crash, or
    with ``limit`` to send in waves) invites only the others. An account that set a password
    meanwhile, or was deactivated, is not invited. Returns how many were invited."""
    invited = 0
    while limit is None or invited < limit:
        take = batch_size if limit is None else min(batch_size, limit - invited)
        with transaction.atomic(durable=True):
            records = list(
                LegacyRecord.objects.select_for_update(skip_locked=True)
                .filter(
                    kind=LegacyRecord.Kind.USER,
                    invited_at__isnull=True,
                    object_id__in=User.objects.filter(
                        is_active=True, password__startswith=UNUSABLE_PASSWORD_PREFIX
                    ).values("pk"),
                )
                .order_by("pk")[:take]
            )
            if not records:
                break
            users = User.objects.in_bulk([record.object_id for record in records])
            now = clock.now()
            with outbox_batch():
                for record in records:
                    password_set_invite(user=users[record.object_id])
                    record.invited_at = now
            LegacyRecord.objects.bulk_update(records, ["invited_at"])
        invited += len(records)
        if on_batch is not None:
            on_batch(len(records))
    return invited
