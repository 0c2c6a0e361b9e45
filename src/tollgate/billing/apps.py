from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "tollgate.billing"
    label = "billing"
    verbose_name = "Billing"

    def ready(self) -> None:
        from tollgate.billing import tasks  # noqa: F401  (registers the billing clock task)
        from tollgate.billing.entitlements import OUTBOX_KIND, entitlements_invalidate
        from tollgate.billing.gateways.registry import gateway_charges_exactly, gateways_ready
        from tollgate.core import money, outbox

        outbox.register(OUTBOX_KIND, entitlements_invalidate)
        gateways_ready()  # each gateway registers its inbound event handlers
        money.exact_charge_check_register(gateway_charges_exactly)
