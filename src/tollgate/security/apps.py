from django.apps import AppConfig


class SecurityConfig(AppConfig):
    name = "tollgate.security"
    label = "security"
    verbose_name = "Security"

    def ready(self) -> None:
        from tollgate.security import receivers  # noqa: F401
