from django.apps import AppConfig


class WebConfig(AppConfig):
    name = "tollgate.web"
    label = "web"
    verbose_name = "Web pages"
