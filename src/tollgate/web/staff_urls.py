from django.urls import path

from tollgate.web import staff_api_key_views, staff_audit_views, staff_coupon_views
from tollgate.web import staff_revenue_views as revenue_views
from tollgate.web import staff_views as views
from tollgate.web import staff_webhook_views as webhook_views

app_name = "staff"

urlpatterns = [
    path("", views.index, name="index"),
    path("customers/<str:customer_id>/", views.customer, name="customer"),
    path("payments/<str:payment_id>/refund/", views.payment_refund, name="payment_refund"),
    path(
        "subscriptions/<str:subscription_id>/cancel/",
        views.subscription_cancel,
        name="subscription_cancel",
    ),
    path(
        "subscriptions/<str:subscription_id>/seats/",
        views.subscription_seats,
        name="subscription_seats",
    ),
    path(
        "subscriptions/<str:subscription_id>/extend/",
        views.subscription_extend,
        name="subscription_extend",
    ),
    path(
        "subscriptions/<str:subscription_id>/discount/",
        staff_coupon_views.subscription_discount,
        name="subscription_discount",
    ),
    path("coupons/", staff_coupon_views.coupons, name="coupons"),
    path("coupons/<str:coupon_id>/", staff_coupon_views.coupon, name="coupon"),
    path(
        "coupons/<str:coupon_id>/archive/",
        staff_coupon_views.coupon_archive,
        name="coupon_archive",
    ),
    path(
        "codes/<str:code_id>/archive/",
        staff_coupon_views.promotion_code_archive,
        name="promotion_code_archive",
    ),
    path("invoices/<str:invoice_id>/retry/", views.invoice_retry, name="invoice_retry"),
    path("reconciliation/", views.reconciliation_list, name="reconciliation"),
    path("reconciliation/<str:run_id>/", views.reconciliation_detail, name="reconciliation_run"),
    path("events/", views.event_list, name="events"),
    path("events/<str:gateway>/<str:event_id>/retry/", views.event_retry, name="event_retry"),
    path("disputes/", views.disputes, name="disputes"),
    path(
        "disputes/<str:dispute_id>/acknowledge/",
        views.dispute_acknowledge,
        name="dispute_acknowledge",
    ),
    path("revenue/", revenue_views.revenue_page, name="revenue"),
    path("revenue/<str:chart>.csv", revenue_views.revenue_csv, name="revenue_csv"),
    path("audit/export/", staff_audit_views.audit_export_download, name="audit_export"),
    path("api-keys/", staff_api_key_views.api_keys, name="api_keys"),
    path(
        "api-keys/<str:key_id>/rotate/",
        staff_api_key_views.api_key_rotate,
        name="api_key_rotate",
    ),
    path(
        "api-keys/<str:key_id>/revoke/",
        staff_api_key_views.api_key_revoke,
        name="api_key_revoke",
    ),
    path("webhooks/", webhook_views.webhook_endpoints, name="webhooks"),
    path("webhooks/new/", webhook_views.webhook_create, name="webhook_create"),
    path("webhooks/<str:endpoint_id>/", webhook_views.webhook_endpoint, name="webhook_endpoint"),
    path("webhooks/<str:endpoint_id>/edit/", webhook_views.webhook_edit, name="webhook_edit"),
    path("webhooks/<str:endpoint_id>/enable/", webhook_views.webhook_enable, name="webhook_enable"),
    path(
        "webhooks/<str:endpoint_id>/disable/",
        webhook_views.webhook_disable,
        name="webhook_disable",
    ),
    path("webhooks/<str:endpoint_id>/rotate/", webhook_views.webhook_rotate, name="webhook_rotate"),
    path(
        "webhooks/<str:endpoint_id>/deliveries/<str:event_id>/resend/",
        webhook_views.webhook_resend,
        name="webhook_resend",
    ),
]
