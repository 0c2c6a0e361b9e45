"""Every existing customer gets its personal organisation, with its account as the owner.

Safe while the previous release serves requests: the column was added nullable (0011), this runs
outside one long transaction (a short one per batch of customers), touches only customers without
an organisation, and the previous release never reads the new rows. Customers that release writes
after the backfill get their organisation at their next billing step (``customer_get_or_create``).
Running it again does nothing.
"""

from typing import Any

from django.db import migrations, transaction

BATCH = 500


def backfill(apps: Any, schema_editor: Any) -> None:
    customer_model = apps.get_model("billing", "Customer")
    organisation_model = apps.get_model("organisations", "Organisation")
    membership_model = apps.get_model("organisations", "Membership")
    alias = schema_editor.connection.alias
    last_pk = 0
    while True:
        with transaction.atomic(using=alias):
            batch = list(
                customer_model.objects.using(alias)
                .select_for_update()
                .filter(pk__gt=last_pk, organisation__isnull=True)
                .order_by("pk")[:BATCH]
            )
            if not batch:
                return
            members = set(
                membership_model.objects.using(alias)
                .filter(user_id__in=[c.user_id for c in batch])
                .values_list("user_id", flat=True)
            )
            for customer in batch:
                organisation = organisation_model.objects.using(alias).create(
                    name=customer.name, personal=True
                )
                if customer.user_id is not None and customer.user_id not in members:
                    membership_model.objects.using(alias).create(
                        organisation=organisation, user_id=customer.user_id, role="owner"
                    )
                customer_model.objects.using(alias).filter(
                    pk=customer.pk, organisation__isnull=True
                ).update(organisation=organisation)
            last_pk = batch[-1].pk


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("billing", "0011_customer_organisation")]

    operations = [migrations.RunPython(backfill, migrations.RunPython.noop, elidable=True)]
