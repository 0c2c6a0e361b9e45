from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "tollgate.audit"
    label = "audit"
    verbose_name = "Audit log"
