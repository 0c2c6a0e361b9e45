from django.urls import path

from tollgate.web import account_api_key_views, email_views, views

app_name = "web"

urlpatterns = [
    path("", views.home, name="home"),
    path("pricing/", views.pricing, name="pricing"),
    path("account/", views.account, name="account"),
    path("account/export/", views.account_export, name="account_export"),
    path("account/delete/", views.account_delete_page, name="account_delete"),
    path("account/api-keys/", account_api_key_views.api_keys, name="account_api_keys"),
    path(
        "account/api-keys/<str:key_id>/rotate/",
        account_api_key_views.api_key_rotate,
        name="account_api_key_rotate",
    ),
    path(
        "account/api-keys/<str:key_id>/revoke/",
        account_api_key_views.api_key_revoke,
        name="account_api_key_revoke",
    ),
    path("email/unsubscribe/<str:token>/", email_views.unsubscribe, name="email_unsubscribe"),
]
