from django.urls import path

from tollgate.web import email_views, views

app_name = "web"

urlpatterns = [
    path("", views.home, name="home"),
    path("pricing/", views.pricing, name="pricing"),
    path("account/", views.account, name="account"),
    path("email/unsubscribe/<str:token>/", email_views.unsubscribe, name="email_unsubscribe"),
]
