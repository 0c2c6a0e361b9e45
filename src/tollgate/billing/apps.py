from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "tollgate.billing"
    label = "billing"
    verbose_name = "Billing"

    def ready(self) -> None:
        from tollgate.billing import tasks  # registers the billing clock task with the worker
        from tollgate.billing.entitlements import OUTBOX_KIND, entitlements_invalidate
        from tollgate.billing.gateways.registry import gateway_charges_exactly, gateways_ready
        from tollgate.billing.inbound import inbox
        from tollgate.core import money, outbox

        outbox.register(OUTBOX_KIND, entitlements_invalidate)
        inbox.process_task_register(tasks.inbound_events_process_task)
        gateways_ready()  # each gateway registers its inbound event handlers
        money.exact_charge_check_register(gateway_charges_exactly)
