from django.apps import AppConfig


class SecurityConfig(AppConfig):
    name = "tollgate.security"
    label = "security"
    verbose_name = "Security"
