"""The sandbox's hosted pages, mounted at /sandbox/ (the adapter hands out these URLs)."""

from django.urls import path

from tollgate.web import sandbox_views as views

app_name = "sandbox"

urlpatterns = [
    path("setup/<str:reference>/", views.setup, name="setup"),
    path("authenticate/<str:reference>/", views.authenticate, name="authenticate"),
    path("authenticate/<str:reference>/done/", views.authenticate_done, name="authenticate_done"),
]
