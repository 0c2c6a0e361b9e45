from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "tollgate.ops"
    label = "ops"
    verbose_name = "Operations"

    def ready(self) -> None:
        from tollgate.ops import instrumentation

        instrumentation.install()
        from tollgate.ops import backup_tasks  # noqa: F401  (registers the daily backup task)
