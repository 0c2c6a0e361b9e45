from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "tollgate.core"
    label = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        from django.core.signals import request_finished, request_started

        from tollgate.core import tasks  # noqa: F401  (registers the outbox and purge tasks)
        from tollgate.core.memo import request_begin, request_end

        request_started.connect(request_begin, dispatch_uid="tollgate.core.memo.begin")
        request_finished.connect(request_end, dispatch_uid="tollgate.core.memo.end")
