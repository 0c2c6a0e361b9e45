"""Pages reached from links in emails: the unsubscribe page of marketing email."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from tollgate.accounts.services import account_marketing_opt_out, marketing_unsubscribe_account
from tollgate.core.errors import TollgateError
from tollgate.web import errors


# The signed token in the address is what authorises the opt-out, not a session: mail providers send
# the RFC 8058 one-click POST without cookies or a CSRF token. It can only ever stop marketing email.
@csrf_exempt
@require_http_methods(["GET", "HEAD", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    """GET shows what unsubscribing does and a button (it never changes anything: link scanners and
    previews follow links); POST, from that button or from the mail provider, unsubscribes."""
    try:
        if request.method == "POST":
            account_marketing_opt_out(token=token)
            return render(request, "web/email_unsubscribed.html")
        account = marketing_unsubscribe_account(token=token)
    except TollgateError as exc:
        return errors.from_exception(request, exc)
    return render(
        request,
        "web/email_unsubscribe.html",
        {"token": token, "opted_out": account.marketing_opt_out_at is not None},
    )
