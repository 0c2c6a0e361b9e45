"""Email backend of the embedded default: one .eml file per message under var/mail/."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from email.generator import BytesGenerator
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.message import EmailMessage

from tollgate.core import clock
from tollgate.core.ids import new_public_id
from tollgate.notifications.services import links_in_text


class EmlFileBackend(BaseEmailBackend):
    """Writes each message to ``MAIL_DIR/<timestamp>-<id>.eml`` (open it with any mail client).

    With ``MAIL_ECHO_LINKS`` (development only) the links of each message are printed to the console,
    so the verification link of a new account is one click away.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.directory = Path(settings.MAIL_DIR)

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        self.directory.mkdir(parents=True, exist_ok=True)
        sent = 0
        for message in email_messages:
            name = f"{clock.now():%Y%m%dT%H%M%S}-{new_public_id('mail')}.eml"
            path = self.directory / name
            with path.open("wb") as handle:
                BytesGenerator(handle).flatten(message.message())
            sent += 1
            if settings.MAIL_ECHO_LINKS:
                links = links_in_text(str(message.body))
                sys.stderr.write(f"[mail] {message.subject} -> {path}\n")
                for link in links:
                    sys.stderr.write(f"[mail]   {link}\n")
        return sent
