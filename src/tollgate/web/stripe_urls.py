"""Tollgate's own Stripe pages, mounted at /stripe/ (the adapter hands out these URLs)."""

from django.urls import path

from tollgate.web import stripe_views as views

app_name = "stripe"

urlpatterns = [
    path("setup/<str:token>/", views.setup, name="setup"),
    path("authenticate/<str:token>/", views.authenticate, name="authenticate"),
    path("authenticate/<str:token>/done/", views.authenticate_done, name="authenticate_done"),
]
