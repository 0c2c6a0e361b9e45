"""Transactional email: rendered from templates when the event happens, sent by the worker after commit."""

from __future__ import annotations

import functools
import re
from typing import Any

import structlog
from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.urls import get_script_prefix, reverse
from django.utils.html import escape, linebreaks

from tollgate.core import outbox
from tollgate.core.models import OutboxMessage
from tollgate.core.redaction import mask_email

log = structlog.get_logger(__name__)

# A link in plain text ends before white space and before the punctuation of the sentence around
# it ("go to https://example.org/a." links to https://example.org/a).
_LINK = re.compile(r"https?://[^\s<>\"']*[^\s<>\"'.,;:!?)\]}]")


def links_in_text(text: str) -> list[str]:
    """The http(s) links of a plain-text email, in order."""
    return _LINK.findall(text)


def _brand_context() -> dict[str, Any]:
    return {"brand": settings.TOLLGATE_BRAND, "site_url": settings.SITE_URL}


def absolute_url(name: str, *args: str) -> str:
    """The absolute address of the route ``name`` (for links in emails): ``SITE_URL`` + its path."""
    path = reverse(name, args=args) if args else _route_path(name, get_script_prefix())
    return f"{settings.SITE_URL}{path}"


@functools.lru_cache(maxsize=256)
def _route_path(name: str, script_prefix: str) -> str:
    # A route without arguments always has the same path (for a given script prefix); emails sent
    # in batches link to the same few pages thousands of times.
    return reverse(name)


def html_from_text(*, subject: str, text: str) -> str:
    """The branded HTML twin of a plain-text email whose template has no HTML version."""
    pieces, start = [], 0
    for link in _LINK.finditer(text):
        url = escape(link.group())
        pieces += [escape(text[start : link.start()]), f'<a href="{url}">{url}</a>']
        start = link.end()
    body = linebreaks("".join([*pieces, escape(text[start:])]))
    return render_to_string(
        "emails/layout.html", {**_brand_context(), "subject": subject, "body": body}
    )


def email_render(*, template: str, context: dict[str, Any]) -> tuple[str, str, str]:
    """Render ``emails/<template>_{subject.txt,message.txt,message.html}`` to (subject, text, html)."""
    full_context = {**_brand_context(), **context}
    subject = " ".join(render_to_string(f"emails/{template}_subject.txt", full_context).split())
    text = render_to_string(f"emails/{template}_message.txt", full_context).strip()
    html = render_to_string(f"emails/{template}_message.html", full_context)
    return subject, text, html


def email_enqueue(
    *,
    to: str,
    subject: str,
    text: str,
    html: str,
    template: str,
    dedupe_key: str,
    headers: dict[str, str] | None = None,
) -> OutboxMessage | None:
    """Queue a rendered email in the current transaction; it is sent once after commit.

    ``headers`` are extra message headers (for example ``List-Unsubscribe`` on marketing email).
    """
    payload: dict[str, Any] = {
        "to": to,
        "subject": subject,
        "text": text,
        "html": html,
        "template": template,
    }
    if headers:
        payload["headers"] = headers
    return outbox.outbox_enqueue(kind="email", dedupe_key=dedupe_key, payload=payload)


def email_send_template(
    *,
    to: str,
    template: str,
    context: dict[str, Any],
    dedupe_key: str,
    headers: dict[str, str] | None = None,
) -> OutboxMessage | None:
    """Render a Tollgate email template and queue it (see :func:`email_enqueue`)."""
    subject, text, html = email_render(template=template, context=context)
    return email_enqueue(
        to=to,
        subject=subject,
        text=text,
        html=html,
        template=template,
        dedupe_key=dedupe_key,
        headers=headers,
    )


def email_deliver(payload: dict[str, Any]) -> dict[str, Any]:
    """Outbox handler: send the email. Returns what is kept afterwards: not the body, which may hold
    single-use links."""
    message = EmailMultiAlternatives(
        subject=payload["subject"],
        body=payload["text"],
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[payload["to"]],
        headers={"Auto-Submitted": "auto-generated", **payload.get("headers", {})},
    )
    if payload.get("html"):
        message.attach_alternative(payload["html"], "text/html")
    message.send()
    log.info("email.sent", template=payload.get("template", ""), to=mask_email(payload["to"]))
    return {
        "to": mask_email(payload["to"]),
        "subject": payload["subject"],
        "template": payload.get("template", ""),
    }
