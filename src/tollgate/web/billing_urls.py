from django.urls import path

from tollgate.web import (
    billing_card_views,
    billing_checkout_views,
    billing_invoice_views,
    billing_link_views,
    billing_subscription_views,
    billing_views,
)
from tollgate.web.organisation_access import billing_managers_only as managers

app_name = "billing"

# The customer's billing pages are for its organisation's owners and admins (``managers``); the
# signed links name their customer themselves.
urlpatterns = [
    path("", managers(billing_views.dashboard), name="dashboard"),
    path(
        "checkout/return/",
        managers(billing_checkout_views.checkout_return),
        name="checkout_return",
    ),
    path("checkout/<str:price_id>/", managers(billing_checkout_views.checkout), name="checkout"),
    path("payment-method/", managers(billing_card_views.payment_method), name="payment_method"),
    path("invoices/<str:invoice_id>/", managers(billing_invoice_views.invoice), name="invoice"),
    path(
        "invoices/<str:invoice_id>/pdf/",
        managers(billing_invoice_views.invoice_pdf),
        name="invoice_pdf",
    ),
    path(
        "invoices/<str:invoice_id>/pay/",
        managers(billing_invoice_views.invoice_pay),
        name="invoice_pay",
    ),
    path("change/", managers(billing_subscription_views.change_plan), name="change_plan"),
    path("seats/", managers(billing_subscription_views.seats), name="seats"),
    path("cancel/", managers(billing_subscription_views.cancel), name="cancel"),
    path("resume/", managers(billing_subscription_views.resume), name="resume"),
    path("link/<str:token>/", billing_link_views.signed_link, name="signed_link"),
    path("receipts/<str:token>/", billing_link_views.receipt_pdf, name="receipt_pdf"),
]
