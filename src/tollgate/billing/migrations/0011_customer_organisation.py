"""The link from a customer to its organisation: a nullable column, so the release before keeps
working; on PostgreSQL the unique index is built concurrently and the foreign key validated
apart, so the customers table takes writes throughout."""

import django.db.models.deletion
from django.db import migrations, models

from tollgate.core.migration_operations import AddNullableOneToOneConcurrentlyOnPostgres


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("billing", "0010_hot_query_indexes"),
        ("organisations", "0001_initial"),
    ]

    operations = [
        AddNullableOneToOneConcurrentlyOnPostgres(
            model_name="customer",
            name="organisation",
            field=models.OneToOneField(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="customer",
                to="organisations.organisation",
            ),
        ),
    ]
