from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "tollgate.catalog"
    label = "catalog"
    verbose_name = "Catalog"

    def ready(self) -> None:
        from tollgate.catalog.selectors import catalog_cached_forget
        from tollgate.catalog.services import CATALOG_CHANGED
        from tollgate.core import outbox

        outbox.register(CATALOG_CHANGED, catalog_cached_forget)
