"""Staff pages: customer lookup, a customer's billing on one page, refunds, cancellations,
extensions and invoice retries, reconciliation reports, the inbound-event inbox and revenue.

Views only read through ``billing.reports`` and write through the services, which check the rules
and audit every action. Only staff get here: anyone signed in who is not staff gets the house
"not found" page (the staff area does not say it exists), and a visitor who is not signed in is
sent to sign in first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar, cast

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from tollgate.accounts.models import User
from tollgate.audit.services import audit_access_record
from tollgate.billing import customer_summary as summary
from tollgate.billing import reports, services
from tollgate.billing.inbound import inbox
from tollgate.billing.models import (
    Dispute,
    InboundEvent,
    Invoice,
    PaymentAttempt,
    Refund,
    Subscription,
)
from tollgate.billing.seats import members_count
from tollgate.billing.services.disputes import dispute_acknowledge as dispute_seen
from tollgate.billing.states import InvoiceStatus, PaymentStatus
from tollgate.core.errors import IdempotencyKeyInProgress, TollgateError
from tollgate.core.idempotency import form_token_issue, form_token_redeem
from tollgate.core.money import Money
from tollgate.ops.backup_status import backup_status
from tollgate.organisations.selectors import organisation_overview
from tollgate.web import errors
from tollgate.web.staff_forms import (
    AuditFilterForm,
    CancelForm,
    ExtendForm,
    LookupForm,
    RefundForm,
    SeatsForm,
    TokenForm,
)
from tollgate.web.staff_tables import list_page, table_page

View = TypeVar("View", bound=Callable[..., HttpResponse])
FormT = TypeVar("FormT", bound=TokenForm)


def staff_required(view: View) -> View:
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not request.user.is_staff:
            return errors.error_response(request, 404)
        return view(request, *args, **kwargs)

    return never_cache(wrapper)  # type: ignore[return-value]


def _staff(request: HttpRequest) -> User:
    """The signed-in staff member (``staff_required`` has checked)."""
    return cast(User, request.user)


def _not_found(request: HttpRequest) -> HttpResponse:
    return errors.error_response(request, 404)


# --- Lookup and the customer page ------------------------------------------------------------------------
LOOKUP_SORTS = {"created": "created_at", "email": "email", "name": "name"}
AUDIT_SORTS = {"time": "created_at", "action": "action"}
SUBSCRIPTION_SORTS = {"created": "created_at", "status": "status", "period": "current_period_end"}
INVOICE_SORTS = {
    "created": "created_at",
    "number": "number",
    "status": "status",
    "total": "total",
    "period": "period_start",
}
PAYMENT_SORTS = {"created": "created_at", "status": "status", "amount": "amount"}
REFUND_SORTS = {"created": "created_at", "status": "status", "amount": "amount"}
AUDIT_PER_PAGE = 50
RUN_SORTS = {"started": "started_at", "status": "status", "mismatches": "mismatched_count"}
EVENT_SORTS = {"received": "received_at", "type": "type", "attempts": "attempts"}


@require_safe
@staff_required
def index(request: HttpRequest) -> HttpResponse:
    form = LookupForm(request.GET or None)
    results = None
    if form.is_valid():
        results = table_page(
            reports.customers_matching(query=form.cleaned_data["q"]),
            params=request.GET,
            sorts=LOOKUP_SORTS,
            default="created",
        )
        if results.page.paginator.count == 1 and results.page.number == 1:
            return redirect("staff:customer", customer_id=results.rows[0].public_id)
    return render(
        request,
        "staff/index.html",
        {"form": form, "results": results, "backups": backup_status()},
    )


@require_safe
@staff_required
def customer(request: HttpRequest, customer_id: str) -> HttpResponse:
    found = reports.customer_get(public_id=customer_id)
    if found is None:
        return _not_found(request)
    audit_access_record(viewer=request.user, action="staff.viewed_customer", target=found)
    params = request.GET
    audit_filter = AuditFilterForm(
        params or None, actions=summary.customer_audit_actions(customer=found)
    )
    audit = table_page(
        summary.customer_audit_trail(customer=found, **audit_filter.filters()),
        params=params,
        sorts=AUDIT_SORTS,
        default="time",
        per_page=AUDIT_PER_PAGE,
        anchor="#audit",
    )
    invoices = table_page(
        summary.customer_invoices(customer=found),
        params=params,
        sorts=INVOICE_SORTS,
        default="created",
        prefix="invoices",
        anchor="#invoices",
    )
    context = {
        "customer": found,
        "summary": summary.customer_summary(customer=found),
        "payment_methods": summary.customer_payment_methods(customer=found),
        "organisation": organisation_overview(organisation_id=found.organisation_id),
        "subscriptions": table_page(
            summary.customer_subscriptions(customer=found),
            params=params,
            sorts=SUBSCRIPTION_SORTS,
            default="created",
            prefix="subscriptions",
            anchor="#subscriptions",
            per_page=10,
        ),
        "invoices": invoices,
        "invoice_rows": summary.invoice_rows(invoices=invoices.rows),
        "payments": table_page(
            summary.customer_payments(customer=found),
            params=params,
            sorts=PAYMENT_SORTS,
            default="created",
            prefix="payments",
            anchor="#payments",
        ),
        "refunds": table_page(
            summary.customer_refunds(customer=found),
            params=params,
            sorts=REFUND_SORTS,
            default="created",
            prefix="refunds",
            anchor="#refunds",
        ),
        "audit": audit,
        "audit_events": summary.audit_rows(audit.rows),
        "audit_filter": audit_filter,
    }
    return render(request, "staff/customer.html", context)


# --- Actions -------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Token:
    purpose: str
    owner: str

    def issue(self) -> str:
        return form_token_issue(purpose=self.purpose, owner=self.owner)

    def redeem(self, token: str) -> str:
        return form_token_redeem(token=token, purpose=self.purpose, owner=self.owner)


def _action(
    request: HttpRequest,
    *,
    make_form: Callable[..., FormT],
    token: _Token,
    act: Callable[[FormT, str], str],
    template: str,
    context: dict[str, Any],
    done_url: str,
) -> HttpResponse:
    """The shape of every staff action: a form with a single-use token; on POST the token is
    redeemed for an idempotency key and the service runs under it. A refusal from the service is
    shown on the form with a fresh token (the old one is bound to the refused request), except
    while the first request is still in progress: the form keeps its token, so sending it again
    finds that request's result instead of doing the work a second time."""
    if request.method != "POST":
        form = make_form(initial={"form_token": token.issue()})
        return render(request, template, {**context, "form": form})
    form = make_form(request.POST)
    if form.is_valid():
        try:
            key = token.redeem(form.cleaned_data["form_token"])
            message = act(form, key)
        except IdempotencyKeyInProgress as exc:
            form.add_error(None, exc.message)
            return render(request, template, {**context, "form": form}, status=422)
        except TollgateError as exc:
            if exc.status in (403, 404):
                return errors.from_exception(request, exc)
            form.add_error(None, exc.message)
        else:
            messages.success(request, message)
            return redirect(done_url)
        form = _with_fresh_token(form, token)
    elif form.token_refused:  # missing or mangled: the form shown again needs a token that works
        form = _with_fresh_token(form, token)
    return render(request, template, {**context, "form": form}, status=422)


def _with_fresh_token(form: FormT, token: _Token) -> FormT:
    data = QueryDict(mutable=True)
    data.update(form.data)
    data["form_token"] = token.issue()
    form.data = data
    return form


def _customer_url(customer_id: str) -> str:
    return reverse("staff:customer", kwargs={"customer_id": customer_id})


@require_http_methods(["GET", "HEAD", "POST"])
@staff_required
def payment_refund(request: HttpRequest, payment_id: str) -> HttpResponse:
    payment = (
        PaymentAttempt.objects.select_related("invoice__customer")
        .filter(public_id=payment_id)
        .first()
    )
    if payment is None:
        return _not_found(request)
    staff = _staff(request)
    customer_id = payment.invoice.customer.public_id
    refundable = Money(payment.amount - payment.amount_refunded, payment.currency)

    def act(form: RefundForm, key: str) -> str:
        refund = services.refund_issue(
            payment=payment,
            amount=form.cleaned_data["amount"],
            reason=Refund.Reason(form.cleaned_data["reason"]),
            note=form.cleaned_data["note"],
            actor=staff,
            idempotency_key=key,
        )
        amount = Money(refund.amount, refund.currency).format()
        if refund.status == "succeeded":
            return f"Refunded {amount} of {payment.public_id} ({refund.public_id})."
        if refund.status == "failed":
            return (
                f"The gateway refused the refund of {amount} ({refund.public_id}: "
                f"{refund.failure_code or 'no reason given'}); nothing was refunded."
            )
        return f"The refund of {amount} ({refund.public_id}) is waiting for the gateway's answer."

    if payment.status != PaymentStatus.SUCCEEDED or refundable.amount <= 0:
        return render(
            request,
            "staff/refund.html",
            {
                "payment": payment,
                "refundable": refundable,
                "form": None,
                "customer_id": customer_id,
            },
        )
    return _action(
        request,
        make_form=lambda *args, **kwargs: RefundForm(*args, payment=payment, **kwargs),
        token=_Token(purpose=f"staff_refund:{payment.public_id}", owner=staff.public_id),
        act=act,
        template="staff/refund.html",
        context={"payment": payment, "refundable": refundable, "customer_id": customer_id},
        done_url=_customer_url(customer_id),
    )


def _subscription(subscription_id: str) -> Subscription | None:
    return (
        Subscription.objects.select_related("customer", "price__plan")
        .filter(public_id=subscription_id)
        .first()
    )


@require_http_methods(["GET", "HEAD", "POST"])
@staff_required
def subscription_cancel(request: HttpRequest, subscription_id: str) -> HttpResponse:
    subscription = _subscription(subscription_id)
    if subscription is None:
        return _not_found(request)
    staff = _staff(request)

    def act(form: CancelForm, key: str) -> str:
        now = form.cleaned_data["when"] == "now"
        canceled = services.subscription_cancel(
            subscription=subscription,
            at_period_end=not now,
            prorated_refund=bool(form.cleaned_data["prorated_refund"]),
            actor=staff,
            idempotency_key=key,
        )
        if now:
            return f"{canceled.public_id} is canceled."
        return (
            f"{canceled.public_id} will be canceled at the end of its period, "
            f"{canceled.current_period_end:%-d %B %Y %H:%M} UTC."
        )

    return _action(
        request,
        make_form=CancelForm,
        token=_Token(purpose=f"staff_cancel:{subscription.public_id}", owner=staff.public_id),
        act=act,
        template="staff/subscription_cancel.html",
        context={"subscription": subscription},
        done_url=_customer_url(subscription.customer.public_id),
    )


@require_http_methods(["GET", "HEAD", "POST"])
@staff_required
def subscription_seats(request: HttpRequest, subscription_id: str) -> HttpResponse:
    subscription = _subscription(subscription_id)
    if subscription is None:
        return _not_found(request)
    staff = _staff(request)

    def act(form: SeatsForm, key: str) -> str:
        changed = services.subscription_seats_change(
            subscription=subscription,
            seats=form.cleaned_data["seats"],
            actor=staff,
            idempotency_key=key,
            off_session=True,
        )
        if changed.scheduled_seats is not None:
            return (
                f"{changed.public_id} has {changed.scheduled_seats} seats from "
                f"{changed.current_period_end:%-d %B %Y %H:%M} UTC."
            )
        return f"{changed.public_id} has {changed.seats} seats now."

    return _action(
        request,
        make_form=SeatsForm,
        token=_Token(purpose=f"staff_seats:{subscription.public_id}", owner=staff.public_id),
        act=act,
        template="staff/subscription_seats.html",
        context={"subscription": subscription, "members": members_count(subscription.customer)},
        done_url=_customer_url(subscription.customer.public_id),
    )


@require_http_methods(["GET", "HEAD", "POST"])
@staff_required
def subscription_extend(request: HttpRequest, subscription_id: str) -> HttpResponse:
    subscription = _subscription(subscription_id)
    if subscription is None:
        return _not_found(request)
    staff = _staff(request)

    def act(form: ExtendForm, key: str) -> str:
        extended = services.subscription_extend(
            subscription=subscription,
            days=form.cleaned_data["days"],
            reason=form.cleaned_data["reason"],
            actor=staff,
            idempotency_key=key,
        )
        return (
            f"{extended.public_id} now runs to {extended.current_period_end:%-d %B %Y %H:%M} UTC."
        )

    return _action(
        request,
        make_form=ExtendForm,
        token=_Token(purpose=f"staff_extend:{subscription.public_id}", owner=staff.public_id),
        act=act,
        template="staff/subscription_extend.html",
        context={"subscription": subscription},
        done_url=_customer_url(subscription.customer.public_id),
    )


@require_http_methods(["GET", "HEAD", "POST"])
@staff_required
def invoice_retry(request: HttpRequest, invoice_id: str) -> HttpResponse:
    invoice = Invoice.objects.select_related("customer").filter(public_id=invoice_id).first()
    if invoice is None:
        return _not_found(request)
    staff = _staff(request)
    if request.method != "POST":
        audit_access_record(viewer=staff, action="staff.viewed_invoice", target=invoice)

    def act(form: TokenForm, key: str) -> str:
        payment = services.invoice_pay(
            invoice=invoice, off_session=True, actor=staff, idempotency_key=key
        )
        outcome = {
            PaymentStatus.SUCCEEDED: "succeeded: the invoice is paid",
            PaymentStatus.FAILED: f"was declined ({payment.decline_code})",
            PaymentStatus.REQUIRES_ACTION: "needs the customer to authenticate; they were emailed",
        }.get(PaymentStatus(payment.status), f"is {payment.status}")
        return f"The charge of {invoice.number} ({payment.public_id}) {outcome}."

    return _action(
        request,
        make_form=TokenForm,
        token=_Token(purpose=f"staff_invoice_pay:{invoice.public_id}", owner=staff.public_id),
        act=act,
        template="staff/invoice_retry.html",
        context={"invoice": invoice, "payable": invoice.status == InvoiceStatus.OPEN},
        done_url=_customer_url(invoice.customer.public_id),
    )


# --- Reconciliation and the inbox ------------------------------------------------------------------------
# A run's findings (lists kept on the run) by the keys of their rows; "found": the run's own order.
FINDING_SORTS: dict[str, dict[str, str | None]] = {
    "mismatches": {"found": None, "kind": "kind", "record": "id"},
    "heals": {"found": None, "record": "id"},
    "unresolved": {"found": None, "record": "id", "status": "status"},
}


@require_safe
@staff_required
def reconciliation_list(request: HttpRequest) -> HttpResponse:
    runs = table_page(
        reports.reconciliation_runs(), params=request.GET, sorts=RUN_SORTS, default="started"
    )
    return render(request, "staff/reconciliation_list.html", {"runs": runs})


@require_safe
@staff_required
def reconciliation_detail(request: HttpRequest, run_id: str) -> HttpResponse:
    run = reports.reconciliation_run_get(public_id=run_id)
    if run is None:
        return _not_found(request)
    findings = {
        name: list_page(
            getattr(run, name),
            params=request.GET,
            sorts=sorts,
            default="found",
            prefix=name,
            anchor=f"#{name}",
        )
        for name, sorts in FINDING_SORTS.items()
    }
    return render(request, "staff/reconciliation_detail.html", {"run": run, **findings})


@require_safe
@staff_required
def event_list(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status", "")
    if status not in InboundEvent.Status.values:
        status = ""
    return render(
        request,
        "staff/events.html",
        {
            "events": table_page(
                reports.inbound_events(status=status),
                params=request.GET,
                sorts=EVENT_SORTS,
                default="received",
            ),
            "counts": reports.inbound_event_counts(),
            "status": status,
            "statuses": InboundEvent.Status.values,
        },
    )


@require_POST
@staff_required
def event_retry(request: HttpRequest, gateway: str, event_id: str) -> HttpResponse:
    event = InboundEvent.objects.filter(gateway=gateway, event_id=event_id).first()
    if event is None:
        return _not_found(request)
    try:
        retried = inbox.event_retry(event=event, actor=_staff(request))
    except TollgateError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request,
            f"Event {retried.event_id} is queued to be processed again; reload in a moment to "
            "see the outcome.",
        )
    return redirect(reverse("staff:events"))


# --- Disputes -------------------------------------------------------------------------------------------
DISPUTE_SORTS = {
    "attention": None,
    "opened": "opened_at",
    "due": "evidence_due_by",
    "amount": "amount",
    "status": "status",
}


@require_safe
@staff_required
def disputes(request: HttpRequest) -> HttpResponse:
    """Chargebacks the gateway reported: those nobody has looked at since they changed first."""
    return render(
        request,
        "staff/disputes.html",
        {
            "disputes": table_page(
                reports.disputes_for_staff(),
                params=request.GET,
                sorts=DISPUTE_SORTS,
                default="attention",
            ),
            "attention": reports.disputes_needing_attention_count(),
        },
    )


@require_POST
@staff_required
def dispute_acknowledge(request: HttpRequest, dispute_id: str) -> HttpResponse:
    found = Dispute.objects.filter(public_id=dispute_id).first()
    if found is None:
        return _not_found(request)
    dispute_seen(dispute=found, actor=_staff(request))
    messages.success(
        request,
        f"Dispute {found.public_id} is marked as seen; it is flagged again if it changes.",
    )
    return redirect(reverse("staff:disputes"))
