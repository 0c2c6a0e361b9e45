from django.apps import AppConfig


class OrganisationsConfig(AppConfig):
    name = "tollgate.organisations"
    label = "organisations"
    verbose_name = "Organisations"

    def ready(self) -> None:
        from tollgate.core import outbox
        from tollgate.organisations.cache import OUTBOX_KIND, membership_cache_forget

        outbox.register(OUTBOX_KIND, membership_cache_forget)
