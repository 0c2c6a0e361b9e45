"""How allauth sends mail, builds links and redirects for Tollgate."""

from __future__ import annotations

import uuid
from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from django.conf import settings
from django.db import transaction
from django.http import HttpRequest
from django.template import TemplateDoesNotExist
from django.template.loader import render_to_string
from django.utils.http import url_has_allowed_host_and_scheme

from tollgate.notifications.services import email_enqueue, html_from_text

# Where a new account goes after its first sign-in: the page it signed up from (a plan's checkout).
# Verification happens by email in between, so the sign-up's ``next`` would otherwise be lost.
RETURN_AFTER_SIGN_UP = "tollgate_return_after_sign_up"


def _local_path(request: HttpRequest, url: str | None) -> str | None:
    """``url`` if it is a path on this site (never another site, never a scheme-relative URL)."""
    if not url or not url.startswith("/") or url.startswith("//"):
        return None
    if not url_has_allowed_host_and_scheme(url, allowed_hosts={request.get_host()}):
        return None
    return url


def user_display(user: Any) -> str:
    """How allauth names an account to its owner ("Successfully signed in as ..."): its email
    address, never the internal id. Pages and emails someone else may see mask it instead."""
    return str(user.email)


class AccountAdapter(DefaultAccountAdapter):
    def save_user(self, request: HttpRequest, user: Any, form: Any, commit: bool = True) -> Any:
        saved = super().save_user(request, user, form, commit)
        target = _local_path(request, request.POST.get("next") or request.GET.get("next"))
        if target is not None:
            request.session[RETURN_AFTER_SIGN_UP] = target
        return saved

    def get_login_redirect_url(self, request: HttpRequest) -> str:
        """After the first sign-in of a new account, the page it signed up from (once)."""
        target = _local_path(request, request.session.pop(RETURN_AFTER_SIGN_UP, None))
        return target or str(super().get_login_redirect_url(request))

    def send_mail(self, template_prefix: str, email: str, context: dict[str, Any]) -> None:
        """Render the account email now and send it through the outbox after commit."""
        full_context = {
            "email": email,
            "brand": settings.TOLLGATE_BRAND,
            "site_url": settings.SITE_URL,
            "current_site": {"name": settings.TOLLGATE_BRAND["name"], "domain": settings.SITE_URL},
            **context,
        }
        message = self.render_mail(template_prefix, email, full_context)
        text = str(message.body)
        html: str
        try:
            html = render_to_string(f"{template_prefix}_message.html", full_context)
        except TemplateDoesNotExist:
            html = html_from_text(subject=str(message.subject), text=text)
        with transaction.atomic():
            email_enqueue(
                to=email,
                subject=str(message.subject),
                text=text,
                html=html,
                template=template_prefix.rsplit("/", 1)[-1],
                dedupe_key=f"account-mail:{uuid.uuid4()}",
            )
