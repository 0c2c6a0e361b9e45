"""Migration operations that add indexes to large tables without locking their writes.

On PostgreSQL an index is built with ``CREATE INDEX CONCURRENTLY`` (the migration must say
``atomic = False``): renewals, payments and sign-ups go on while a table of millions of rows is
indexed. SQLite, the embedded database, has no such thing and no tables that large: it gets the
plain statement.
"""

from __future__ import annotations

from typing import Any

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db.migrations.operations import AddField, AddIndex
from django.db.migrations.operations.base import Operation


class AddIndexConcurrentlyOnPostgres(AddIndexConcurrently):
    """``AddIndexConcurrently`` on PostgreSQL, ``AddIndex`` elsewhere. The index is part of the
    model's state (declared in its ``Meta.indexes``) on every database."""

    def database_forwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)
        else:
            AddIndex.database_forwards(self, app_label, schema_editor, from_state, to_state)

    def database_backwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)
        else:
            AddIndex.database_backwards(self, app_label, schema_editor, from_state, to_state)


class AddPostgresIndexConcurrently(Operation):
    """A PostgreSQL-only index (an operator class such as ``text_pattern_ops`` or
    ``gin_trgm_ops`` over an expression), built concurrently; nothing on other databases.

    It is not part of the model's state, so that SQLite, which cannot express it, never meets it
    (SQLite rebuilds a table with every index its state declares). ``columns`` is the index's
    definition after ``ON <table> USING <method>``, written by the migration, never from input.
    """

    reversible = True
    atomic = False

    def __init__(self, *, name: str, table: str, method: str, columns: str) -> None:
        self.name, self.table, self.method, self.columns = name, table, method, columns

    def state_forwards(self, app_label: str, state: Any) -> None:
        pass

    def database_forwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        if schema_editor.connection.vendor != "postgresql":
            return
        quote = schema_editor.quote_name
        schema_editor.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {quote(self.name)} "
            f"ON {quote(self.table)} USING {self.method} ({self.columns})"
        )

    def database_backwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(
                f"DROP INDEX CONCURRENTLY IF EXISTS {schema_editor.quote_name(self.name)}"
            )

    def describe(self) -> str:
        return f"Create index {self.name} on {self.table} (PostgreSQL only, concurrently)"

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        return (
            self.__class__.__qualname__,
            [],
            {
                "name": self.name,
                "table": self.table,
                "method": self.method,
                "columns": self.columns,
            },
        )


class AddNullableOneToOneConcurrentlyOnPostgres(AddField):
    """``AddField`` of a nullable one-to-one link to a large table without blocking it on
    PostgreSQL: the column is added empty (no rewrite), its unique index is built concurrently and
    then made the constraint, and the foreign key is added ``NOT VALID`` and validated apart
    (which does not block writes). Elsewhere: the plain ``AddField``. Later migrations find the
    constraints by introspection, so their names need not be Django's own. The migration must say
    ``atomic = False``."""

    def database_forwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        if schema_editor.connection.vendor != "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)
            return
        model = to_state.apps.get_model(app_label, self.model_name)
        field = model._meta.get_field(self.name)
        if not (field.null and field.one_to_one):
            raise ValueError("only a nullable one-to-one link is added this way")
        quote = schema_editor.quote_name
        table, column = model._meta.db_table, field.column
        target = field.remote_field.model._meta
        target_column = target.get_field(field.remote_field.field_name).column
        unique, foreign = f"{table}_{column}_uniq", f"{table}_{column}_fk"
        for statement in (
            f"ALTER TABLE {quote(table)} ADD COLUMN {quote(column)} bigint NULL",
            f"CREATE UNIQUE INDEX CONCURRENTLY {quote(unique)} ON {quote(table)} ({quote(column)})",
            f"ALTER TABLE {quote(table)} ADD CONSTRAINT {quote(unique)} UNIQUE USING INDEX "
            f"{quote(unique)}",
            f"ALTER TABLE {quote(table)} ADD CONSTRAINT {quote(foreign)} FOREIGN KEY "
            f"({quote(column)}) REFERENCES {quote(target.db_table)} ({quote(target_column)}) "
            "DEFERRABLE INITIALLY DEFERRED NOT VALID",
            f"ALTER TABLE {quote(table)} VALIDATE CONSTRAINT {quote(foreign)}",
        ):
            schema_editor.execute(statement)
