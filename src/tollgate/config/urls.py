from django.contrib import admin
from django.urls import include, path

from tollgate.api.v1 import api
from tollgate.ops import views as ops_views

urlpatterns = [
    path("healthz", ops_views.healthz, name="healthz"),
    path("readyz", ops_views.readyz, name="readyz"),
    path("metrics", ops_views.metrics, name="metrics"),
    path("api/v1/", api.urls),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("sandbox/", include("tollgate.web.sandbox_urls")),
    path("stripe/", include("tollgate.web.stripe_urls")),
    path("webhooks/email/", include("tollgate.notifications.urls")),
    path("webhooks/", include("tollgate.billing.inbound.webhooks")),
    path("billing/", include("tollgate.web.billing_urls")),
    path("staff/", include("tollgate.web.staff_urls")),
    path("", include("tollgate.web.urls")),
]

handler400 = "tollgate.web.errors.bad_request"
handler403 = "tollgate.web.errors.permission_denied"
handler404 = "tollgate.web.errors.page_not_found"
handler500 = "tollgate.web.errors.server_error"
