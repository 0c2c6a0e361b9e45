"""How allauth sends mail and builds links for Tollgate."""

from __future__ import annotations

import uuid
from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from django.conf import settings
from django.db import transaction
from django.template import TemplateDoesNotExist
from django.template.loader import render_to_string

from tollgate.notifications.services import email_enqueue, html_from_text


class AccountAdapter(DefaultAccountAdapter):
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
