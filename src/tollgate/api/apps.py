from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "tollgate.api"
    label = "api"
    verbose_name = "API"
