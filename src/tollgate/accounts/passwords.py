"""Password rules: long passwords welcome, never truncated; guessable ones refused with a reason."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

_WORD = re.compile(r"[a-z0-9]{4,}")


class LengthValidator:
    """At least ``min_length`` characters and at most ``max_length`` (a bound on hashing cost).

    The whole password is always hashed: nothing beyond the limit is silently dropped; a longer one is
    refused with a message instead.
    """

    def __init__(self, min_length: int = 12, max_length: int = 1024) -> None:
        self.min_length = min_length
        self.max_length = max_length

    def validate(self, password: str, user: Any = None) -> None:
        if len(password) < self.min_length:
            raise ValidationError(
                _("Use at least %(min)d characters; a few unrelated words make a strong password.")
                % {"min": self.min_length},
                code="password_too_short",
            )
        if len(password) > self.max_length:
            raise ValidationError(
                _("Use at most %(max)d characters.") % {"max": self.max_length},
                code="password_too_long",
            )

    def get_help_text(self) -> str:
        return _("Use %(min)d to %(max)d characters.") % {
            "min": self.min_length,
            "max": self.max_length,
        }


class ContextWordsValidator:
    """Refuses passwords built on words an attacker would try first for this site and this person:
    the site's name, and the parts of the user's email address."""

    def _context_words(self, user: Any) -> set[str]:
        words = {"tollgate", *_WORD.findall(settings.TOLLGATE_BRAND["name"].lower())}
        email = (getattr(user, "email", "") or "").lower()
        if email:
            local, _sep, domain = email.partition("@")
            words.update(_WORD.findall(local))
            words.update(part for part in _WORD.findall(domain.rsplit(".", 1)[0]))
        return words

    def validate(self, password: str, user: Any = None) -> None:
        lowered = password.lower()
        found = sorted(word for word in self._context_words(user) if word in lowered)
        if not found:
            return
        # A context word inside a long passphrase is fine when the rest is strong on its own.
        rest = lowered
        for word in found:
            rest = rest.replace(word, "")
        if len(rest) >= settings.PASSWORD_MIN_LENGTH:
            return
        raise ValidationError(
            _(
                "Don't build your password on %(words)s: it is among the first things an attacker tries."
            )
            % {"words": ", ".join(f"“{word}”" for word in found)},
            code="password_context_word",
        )

    def get_help_text(self) -> str:
        return _("Don't build it on this site's name or your email address.")
