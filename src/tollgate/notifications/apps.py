from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "tollgate.notifications"
    label = "notifications"
    verbose_name = "Notifications"

    def ready(self) -> None:
        from tollgate.core import outbox
        from tollgate.notifications.services import email_deliver

        outbox.register("email", email_deliver)
