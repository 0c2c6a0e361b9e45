from typing import Any

from django.apps import AppConfig
from django.db.backends.signals import connection_created


def _sqlite_functions(sender: Any, connection: Any, **kwargs: Any) -> None:
    """SQLite has no SHA-256: the audit chain's head advance (tollgate.audit.chain) uses ours."""
    if connection.vendor == "sqlite":
        from tollgate.audit import chain

        connection.connection.create_function(
            chain.SQLITE_SHA256, 1, chain.sha256_hex, deterministic=True
        )


class AuditConfig(AppConfig):
    name = "tollgate.audit"
    label = "audit"
    verbose_name = "Audit log"

    def ready(self) -> None:
        connection_created.connect(_sqlite_functions, dispatch_uid="tollgate.audit.sqlite")
