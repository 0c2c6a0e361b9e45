import importlib.util

from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "tollgate.notifications"
    label = "notifications"
    verbose_name = "Notifications"

    def ready(self) -> None:
        from allauth.account.signals import email_confirmed

        from tollgate.core import outbox
        from tollgate.notifications import receivers
        from tollgate.notifications.services import email_deliver

        outbox.register("email", email_deliver)
        email_confirmed.connect(
            receivers.email_confirmed_clears_suppression,
            dispatch_uid="tollgate.notifications.email_confirmed",
        )
        if importlib.util.find_spec("anymail") is not None:  # the optional 'anymail' extra
            from anymail.signals import tracking

            from tollgate.notifications.bounces import email_tracking_received

            tracking.connect(
                email_tracking_received, dispatch_uid="tollgate.notifications.tracking"
            )
