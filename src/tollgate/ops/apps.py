from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "tollgate.ops"
    label = "ops"
    verbose_name = "Operations"

    def ready(self) -> None:
        from tollgate.ops import instrumentation

        instrumentation.install()
