from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    name = "tollgate.integrations"
    label = "integrations"
    verbose_name = "Integrations"

    def ready(self) -> None:
        from tollgate.integrations import registrations

        registrations.register_all()
