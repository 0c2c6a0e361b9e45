"""Every link in every email works when clicked: each template the project has (allauth's account
emails with Tollgate's overrides, and every template under ``emails/``) is rendered the way it is
sent, and every ``href`` of the HTML part and every URL of the text part must be a well-formed
absolute http(s) address without a sentence's punctuation stuck to its end."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.core import mail
from django.template import engines
from django.template.loader import get_template

from tollgate.accounts.adapter import AccountAdapter
from tollgate.notifications.backends import EmlFileBackend
from tollgate.notifications.services import email_render, html_from_text

pytestmark = pytest.mark.django_db

TEXT_URL = re.compile(r"https?://\S+")
TRAILING_PUNCTUATION = tuple(".,;:!?)]}'\"")
_VARIABLE = re.compile(
    r"{[{%]-?\s*(?:(?:el)?if|for \w+(?:, *\w+)* in|with \w+=)?\s*(?:not )?([a-z_]\w*)"
)
_COMPARISON = re.compile(r"([a-z_]\w*) ==? \"([^\"]*)\"")
_PROVIDED = {"brand", "site_url", "forloop", "block", "not", "and", "or", "in", "is", "none"}


def _template_names(pattern: str) -> list[str]:
    """Every template matching ``pattern`` that the project's loaders can find (app directories
    of Tollgate and allauth, and the operator's directory), each name once."""
    roots = [Path(d) for d in engines["django"].template_dirs]
    found = {
        str(path.relative_to(root))
        for root in roots
        if root.is_dir()
        for path in root.glob(pattern)
    }
    return sorted(found)


ACCOUNT_EMAILS = [
    name.removesuffix("_subject.txt") for name in _template_names("account/email/*_subject.txt")
]
EMAILS = [
    name.removeprefix("emails/").removesuffix("_subject.txt")
    for name in _template_names("emails/*_subject.txt")
]


class _Hrefs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.hrefs.extend(value or "" for name, value in attrs if name == "href")


def link_problems(*, text: str, html: str) -> list[str]:
    """What is wrong with the links of one email (nothing: an empty list)."""
    parser = _Hrefs()
    parser.feed(html)
    problems = []
    for href in parser.hrefs:
        if href.startswith("mailto:"):
            if not re.fullmatch(r"mailto:[^@\s]+@[^@\s]+\.[a-z]{2,}", href):
                problems.append(f"malformed mail link {href!r}")
            continue
        problems += [f"href {p}" for p in _url_problems(href)]
    for url in TEXT_URL.findall(text):
        problems += [f"text URL {p}" for p in _url_problems(url)]
    return problems


def _url_problems(url: str) -> list[str]:
    parts = urlsplit(url)
    problems = []
    if parts.scheme not in ("http", "https") or not parts.hostname:
        problems.append(f"{url!r} is not an absolute http(s) address")
    if url.endswith(TRAILING_PUNCTUATION):
        problems.append(f"{url!r} ends with punctuation")
    if re.search(r"\s", url):
        problems.append(f"{url!r} has white space")
    return problems


def test_the_project_has_the_emails_this_test_walks():
    assert "account/email/email_confirmation_signup" in ACCOUNT_EMAILS
    assert "account/email/password_reset_key" in ACCOUNT_EMAILS
    assert {"welcome", "billing_receipt", "webhook_endpoint_disabled"} <= set(EMAILS)


@pytest.mark.parametrize("with_code", [False, True], ids=["link", "code"])
@pytest.mark.parametrize("prefix", ACCOUNT_EMAILS)
def test_every_link_of_every_account_email_works(
    prefix, with_code, user, django_capture_on_commit_callbacks
):
    site = settings.SITE_URL
    context: dict[str, Any] = {
        "user": user,
        "key": "MQ:1x:abc",
        "activate_url": f"{site}/accounts/confirm-email/MQ:1x:abc/",
        "password_reset_url": f"{site}/accounts/password/reset/key/1-set-password/",
        "signup_url": f"{site}/accounts/signup/",
        "from_email": "jane@example.org",
        "to_email": "june@example.net",
        "deleted_email": "old@example.org",
        "ip": "203.0.113.7",
        "user_agent": "Mozilla/5.0",
        "timestamp": "2025-03-01 12:00",
    }
    if with_code:
        context["code"] = "ABC-123"
    with django_capture_on_commit_callbacks(execute=True):
        AccountAdapter().send_mail(prefix, "reader@example.org", context)
    [message] = mail.outbox
    [(html, _mimetype)] = message.alternatives
    assert link_problems(text=message.body, html=str(html)) == []


def _variables(template: str) -> set[str]:
    """The names the template (and those it extends or includes) reads from its context."""
    source = Path(get_template(template).origin.name).read_text(encoding="utf-8")
    names = set(_VARIABLE.findall(source))
    for parent in re.findall(r"{%\s*(?:extends|include)\s+\"([^\"]+)\"", source):
        names |= _variables(parent)
    return names - _PROVIDED


def _contexts(template: str) -> list[dict[str, Any]]:
    """Contexts for ``template``: links as the senders build them (``*_url`` absolute, ``*_path``
    a path on the site), everything else a word or empty, and each value the template compares a
    name with, so that every branch of every ``{% if %}`` is rendered by one of them."""
    sources = [
        f"emails/{template}_{part}" for part in ("subject.txt", "message.txt", "message.html")
    ]
    names = set().union(*(_variables(source) for source in sources))
    compared = {
        pair
        for source in sources
        for pair in _COMPARISON.findall(Path(get_template(source).origin.name).read_text())
    }

    def context(value: str, **chosen: str) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name in names:
            if name.endswith("_url"):
                values[name] = f"{settings.SITE_URL}/billing/invoices/inv_TEST/"
            elif name.endswith("_path"):
                values[name] = "/pricing/"
            else:
                values[name] = chosen.get(name, value)
        return values

    return [context("Pro"), context("")] + [
        context("", **{name: value}) for name, value in compared
    ]


@pytest.mark.parametrize("template", EMAILS)
def test_every_link_of_every_email_works(template):
    for context in _contexts(template):
        _subject, text, html = email_render(template=template, context=context)
        assert link_problems(text=text, html=html) == [], context


@pytest.mark.parametrize("end", [".", ",", ";", ":", "!", "?", ")"])
def test_a_link_at_the_end_of_a_sentence_leaves_the_punctuation_out(end):
    html = html_from_text(
        subject="Hi", text=f"Sign up on (or at) https://example.org/a?b=1&c=2{end}"
    )
    assert '<a href="https://example.org/a?b=1&amp;c=2">' in html
    assert link_problems(text="", html=html) == []


def test_the_console_echo_prints_links_without_the_sentences_punctuation(
    settings, tmp_path, capsys
):
    settings.MAIL_DIR = tmp_path
    settings.MAIL_ECHO_LINKS = True
    body = "Confirm at https://example.org/verify/abc. Or start over (https://example.org/signup/)."
    message = mail.EmailMessage("Verify", body, "from@example.org", ["to@example.org"])
    EmlFileBackend().send_messages([message])
    echoed = [line.split()[-1] for line in capsys.readouterr().err.splitlines()[1:]]
    assert echoed == ["https://example.org/verify/abc", "https://example.org/signup/"]
