from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "tollgate.catalog"
    label = "catalog"
    verbose_name = "Catalog"
