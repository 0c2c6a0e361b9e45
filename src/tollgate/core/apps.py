from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "tollgate.core"
    label = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        from tollgate.core import tasks  # noqa: F401  (registers the outbox and purge tasks)
