from django.apps import AppConfig


class LegacyConfig(AppConfig):
    name = "tollgate.legacy"
    label = "legacy"
    verbose_name = "Legacy import"
