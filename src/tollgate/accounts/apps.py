from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "tollgate.accounts"
    label = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        from tollgate.accounts import receivers  # noqa: F401
