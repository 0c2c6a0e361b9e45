from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "tollgate.ops"
    label = "ops"
    verbose_name = "Operations"
