from django.db import migrations

from tollgate.core.migration_operations import AddPostgresIndexConcurrently


class Migration(migrations.Migration):
    """The staff lookup by the start of an account's email (any case), on PostgreSQL: the unique
    ``lower(email)`` index cannot answer ``LIKE 'abc%'`` outside the C collation."""

    atomic = False

    dependencies = [
        ("accounts", "0002_user_marketing_opt_out"),
    ]

    operations = [
        AddPostgresIndexConcurrently(
            name="user_email_prefix",
            table="accounts_user",
            method="btree",
            columns="lower(email) text_pattern_ops",
        ),
    ]
