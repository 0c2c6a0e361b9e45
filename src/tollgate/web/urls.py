from django.urls import path

from tollgate.web import account_api_key_views, email_views, organisation_views, views

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
    path("account/organisation/", organisation_views.organisation, name="organisation"),
    path(
        "account/organisation/name/",
        organisation_views.organisation_rename,
        name="organisation_rename",
    ),
    path(
        "account/organisation/invite/",
        organisation_views.organisation_invite,
        name="organisation_invite",
    ),
    path(
        "account/organisation/invitations/<str:invitation_id>/revoke/",
        organisation_views.invitation_revoke,
        name="organisation_invitation_revoke",
    ),
    path(
        "account/organisation/members/<str:user_id>/role/",
        organisation_views.member_role_change,
        name="organisation_member_role",
    ),
    path(
        "account/organisation/members/<str:user_id>/remove/",
        organisation_views.member_remove,
        name="organisation_member_remove",
    ),
    path(
        "account/organisation/leave/",
        organisation_views.organisation_leave,
        name="organisation_leave",
    ),
    path(
        "account/organisation/transfer/",
        organisation_views.organisation_transfer,
        name="organisation_transfer",
    ),
    path(
        "organisation/invitations/<str:token>/",
        organisation_views.invitation,
        name="organisation_invitation",
    ),
    path("email/unsubscribe/<str:token>/", email_views.unsubscribe, name="email_unsubscribe"),
]
