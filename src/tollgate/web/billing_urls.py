from django.urls import path

from tollgate.web import billing_link_views
from tollgate.web import billing_views as views

app_name = "billing"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("checkout/return/", views.checkout_return, name="checkout_return"),
    path("checkout/<str:price_id>/", views.checkout, name="checkout"),
    path("payment-method/", views.payment_method, name="payment_method"),
    path("invoices/<str:invoice_id>/", views.invoice, name="invoice"),
    path("invoices/<str:invoice_id>/pdf/", views.invoice_pdf, name="invoice_pdf"),
    path("invoices/<str:invoice_id>/pay/", views.invoice_pay, name="invoice_pay"),
    path("change/", views.change_plan, name="change_plan"),
    path("cancel/", views.cancel, name="cancel"),
    path("resume/", views.resume, name="resume"),
    path("link/<str:token>/", billing_link_views.signed_link, name="signed_link"),
    path("receipts/<str:token>/", billing_link_views.receipt_pdf, name="receipt_pdf"),
]
