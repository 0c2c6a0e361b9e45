"""Transactional email: rendered from templates when the event happens, sent by the worker after commit."""

from __future__ import annotations

import functools
import re
from typing import Any

import structlog
from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.template.loader import render_to_string
from django.urls import get_script_prefix, reverse
from django.utils.html import escape, linebreaks

from tollgate.audit.services import audit_record
from tollgate.core import clock, outbox
from tollgate.core.models import OutboxMessage
from tollgate.core.redaction import mask_email
from tollgate.notifications.metrics import EMAILS_SUPPRESSED
from tollgate.notifications.models import SuppressedAddress
from tollgate.notifications.selectors import address_hash, address_is_suppressed, address_normalize

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
    suppressible: bool = False,
) -> OutboxMessage | None:
    """Queue a rendered email in the current transaction; it is sent once after commit.

    ``headers`` are extra message headers (for example ``List-Unsubscribe`` on marketing email).
    A ``suppressible`` email is not sent to an address marked undeliverable (see
    :func:`address_suppress`); the default is to send, because what comes here directly is account
    mail the recipient asked for (address confirmation, password reset), which is also how an owner
    shows that a bounced address works again.
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
    if suppressible:
        payload["suppressible"] = True
    return outbox.outbox_enqueue(kind="email", dedupe_key=dedupe_key, payload=payload)


def email_send_template(
    *,
    to: str,
    template: str,
    context: dict[str, Any],
    dedupe_key: str,
    headers: dict[str, str] | None = None,
    suppressible: bool = True,
) -> OutboxMessage | None:
    """Render a Tollgate email template and queue it (see :func:`email_enqueue`).

    Template emails (billing, dunning, usage, welcome) skip an undeliverable address by default."""
    subject, text, html = email_render(template=template, context=context)
    return email_enqueue(
        to=to,
        subject=subject,
        text=text,
        html=html,
        template=template,
        dedupe_key=dedupe_key,
        headers=headers,
        suppressible=suppressible,
    )


def email_deliver(payload: dict[str, Any]) -> dict[str, Any]:
    """Outbox handler: send the email, unless it is suppressible and its address undeliverable.
    Returns what is kept afterwards: not the body, which may hold single-use links."""
    kept = {
        "to": mask_email(payload["to"]),
        "subject": payload["subject"],
        "template": payload.get("template", ""),
    }
    if payload.get("suppressible") and address_is_suppressed(address=payload["to"]):
        EMAILS_SUPPRESSED.labels(template=kept["template"] or "other").inc()
        log.info("email.suppressed", template=kept["template"], to=kept["to"])
        return {**kept, "suppressed": True}
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
    log.info("email.sent", template=kept["template"], to=kept["to"])
    return kept


def address_suppress(
    *, address: str, reason: str, esp: str, event_id: str = "", description: str = ""
) -> SuppressedAddress | None:
    """Mark ``address`` undeliverable (a provider reported a hard bounce, a hard rejection or a
    complaint), with an audit record, in one transaction. Suppressible email is no longer sent to
    it. Idempotent: an address already suppressed stays as it is, and a provider event seen before
    (same provider, event id and address) changes nothing, even after the address was cleared.
    Returns the new suppression, or None when nothing changed."""
    normalized = address_normalize(address)
    if not normalized:
        return None
    digest = address_hash(normalized)
    with transaction.atomic(durable=True):
        already = Q(cleared_at__isnull=True)
        if event_id:
            already |= Q(esp=esp[:40], event_id=event_id[:200])
        if SuppressedAddress.objects.filter(already, address_hash=digest).exists():
            return None
        try:
            with transaction.atomic():
                suppression = SuppressedAddress.objects.create(
                    address_hash=digest,
                    address_masked=mask_email(normalized),
                    reason=reason,
                    esp=esp[:40],
                    event_id=event_id[:200],
                    description=description[:500],
                )
        except IntegrityError:  # the same event or address, recorded by a concurrent delivery
            return None
        audit_record(
            action="email.address_suppressed",
            target=suppression,
            details={"reason": reason, "esp": esp, "event_id": event_id},
        )
    log.info("email.address_suppressed", to=suppression.address_masked, reason=reason, esp=esp)
    return suppression


def address_suppression_clear(*, address: str, cleared_by: str, actor: Any = None) -> bool:
    """Let suppressible email reach ``address`` again (its owner confirmed it); see
    :func:`suppression_clear`. False when the address was not suppressed."""
    suppression = SuppressedAddress.objects.filter(
        address_hash=address_hash(address_normalize(address)), cleared_at__isnull=True
    ).first()
    if suppression is None:
        return False
    return suppression_clear(suppression=suppression, cleared_by=cleared_by, actor=actor)


def suppression_clear(
    *, suppression: SuppressedAddress, cleared_by: str, actor: Any = None
) -> bool:
    """End an active suppression, with an audit record, in the caller's transaction (allauth's
    confirmation view runs in one) or its own. The row stays, as history. False when it was
    already cleared (by a concurrent request, say)."""
    with transaction.atomic():
        cleared = SuppressedAddress.objects.filter(
            pk=suppression.pk, cleared_at__isnull=True
        ).update(cleared_at=clock.now(), cleared_by=cleared_by)
        if not cleared:
            return False
        audit_record(
            action="email.address_suppression_cleared",
            actor=actor,
            target=suppression,
            details={"cleared_by": cleared_by},
        )
    return True
