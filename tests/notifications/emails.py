"""Reading sent emails in tests: both twins, the links, the headers."""

from __future__ import annotations

import re
from typing import Any

from django.core import mail

_LINK = re.compile(r"https?://[^\s<>\"']+")


def html_of(message: Any) -> str:
    [(content, mimetype)] = message.alternatives
    assert mimetype == "text/html"
    return str(content)


def sent(template_subject_start: str) -> Any:
    """The one sent email whose subject starts with ``template_subject_start``."""
    matching = [m for m in mail.outbox if m.subject.startswith(template_subject_start)]
    assert len(matching) == 1, [m.subject for m in mail.outbox]
    return matching[0]


def text_links(message: Any) -> list[str]:
    return _LINK.findall(str(message.body))


def assert_transactional(message: Any) -> None:
    """A transactional email: both twins, no unsubscribe link or header, branded layout."""
    html = html_of(message)
    assert message.body.strip()
    assert "List-Unsubscribe" not in message.extra_headers
    assert "unsubscribe" not in message.body.lower()
    assert "unsubscribe" not in html.lower()
    assert message.extra_headers["Auto-Submitted"] == "auto-generated"
