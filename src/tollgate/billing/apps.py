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
        from tollgate.billing.seats import organisation_join_check
        from tollgate.billing.selectors import organisation_departure_check
        from tollgate.billing.services.customers import customer_opener_departed_locked
        from tollgate.core import money, outbox
        from tollgate.organisations.registry import (
            departure_check_register,
            departure_handler_register,
            join_check_register,
        )

        outbox.register(OUTBOX_KIND, entitlements_invalidate)
        inbox.process_task_register(tasks.inbound_events_process_task)
        gateways_ready()  # each gateway registers its inbound event handlers
        money.exact_charge_check_register(gateway_charges_exactly)
        departure_check_register(organisation_departure_check)
        departure_handler_register(customer_opener_departed_locked)
        join_check_register(organisation_join_check)
