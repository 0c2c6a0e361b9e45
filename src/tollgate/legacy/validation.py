"""Reading and checking a legacy data set (the layout is in docs/migration.md).

``dataset_load`` reads ``users.json``, ``subscriptions.json``, ``payments.json`` and the plan map,
checks every record on its own and against the others, and returns the records it could read with
every problem found, each naming its file, its position in the file's array (from 0, as ``jq
'.[N]'`` counts) and its legacy id. ``dataset_check_database`` adds the conflicts with what
Tollgate already holds (an email address, a Stripe customer or payment that belongs to something
the import did not create; in ``conflicts.py``). Nothing here writes.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email

from tollgate.accounts.models import User
from tollgate.billing import periods
from tollgate.billing.periods import price_months
from tollgate.billing.states import SUBSCRIPTION_ENDED, SubscriptionStatus
from tollgate.catalog.models import Price
from tollgate.core import clock
from tollgate.core.money import currency_exponent, validate_currency

USERS_FILE = "users.json"
SUBSCRIPTIONS_FILE = "subscriptions.json"
PAYMENTS_FILE = "payments.json"
PLAN_MAP_FILE = "plan_map.json"

# The gateway the old portal's ids belong to.
LEGACY_GATEWAY = "stripe"

STRIPE_CUSTOMER = re.compile(r"cus_[A-Za-z0-9]{1,250}")
STRIPE_SUBSCRIPTION = re.compile(r"sub_[A-Za-z0-9]{1,250}")
STRIPE_PAYMENT = re.compile(r"(pi|ch|py)_[A-Za-z0-9]{1,250}")

# Subscription statuses Tollgate takes over as they are. The others mean the old portal is still
# collecting a payment (past_due, unpaid, incomplete): Tollgate holds no invoice to collect it with.
IMPORTABLE_LIVE = frozenset({SubscriptionStatus.ACTIVE, SubscriptionStatus.TRIALING})
UNSETTLED_SUBSCRIPTION = frozenset(
    {SubscriptionStatus.PAST_DUE, SubscriptionStatus.UNPAID, SubscriptionStatus.INCOMPLETE}
)
# Payment statuses (Stripe PaymentIntent and Charge): only a succeeded payment moved money and is
# imported; these never moved any and are left out; any other is a problem (still moving).
PAYMENT_SUCCEEDED = "succeeded"
PAYMENT_NO_MONEY = frozenset(
    {
        "failed",
        "canceled",
        "requires_payment_method",
        "requires_confirmation",
        "requires_action",
    }
)
DB_CHUNK = 1000
NAME_MAX = 150
DESCRIPTION_MAX = 200


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    index: int | str
    legacy_id: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.index} ({self.legacy_id or 'no id'}): {self.message}"


@dataclass(slots=True)
class LegacyUser:
    index: int
    legacy_id: str
    email: str
    name: str
    created_at: dt.datetime
    stripe_customer_id: str
    email_verified: bool
    ok: bool = True


@dataclass(slots=True)
class LegacySubscription:
    index: int
    legacy_id: str
    user_id: str
    price: Price
    status: SubscriptionStatus
    billing_anchor: dt.datetime
    current_period_start: dt.datetime
    current_period_end: dt.datetime
    trial_end: dt.datetime | None
    cancel_at_period_end: bool
    canceled_at: dt.datetime | None
    ended_at: dt.datetime | None
    created_at: dt.datetime
    stripe_subscription_id: str
    ok: bool = True

    @property
    def live(self) -> bool:
        return self.status not in SUBSCRIPTION_ENDED


@dataclass(slots=True)
class LegacyPayment:
    index: int
    legacy_id: str
    user_id: str
    amount: int
    currency: str
    created_at: dt.datetime
    stripe_payment_id: str
    description: str
    ok: bool = True


@dataclass
class Dataset:
    """What a legacy directory holds: the readable records in file order and every problem."""

    users: list[LegacyUser] = field(default_factory=list)
    subscriptions: list[LegacySubscription] = field(default_factory=list)
    payments: list[LegacyPayment] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    # Payments that never moved money (failed, canceled, ...): read and left out.
    payments_not_taken: int = 0

    def importable(
        self,
    ) -> tuple[
        list[LegacyUser], dict[str, list[LegacySubscription]], dict[str, list[LegacyPayment]]
    ]:
        """The records without problems whose user has none either: the users in file order, and
        the subscriptions and payments of each user id."""
        users = [user for user in self.users if user.ok]
        ok_ids = {user.legacy_id for user in users}
        subscriptions: dict[str, list[LegacySubscription]] = defaultdict(list)
        for subscription in self.subscriptions:
            if subscription.ok and subscription.user_id in ok_ids:
                subscriptions[subscription.user_id].append(subscription)
        payments: dict[str, list[LegacyPayment]] = defaultdict(list)
        for payment in self.payments:
            if payment.ok and payment.user_id in ok_ids:
                payments[payment.user_id].append(payment)
        return users, subscriptions, payments


class _Record:
    """One raw record being checked: collects its problems under its file, index and id."""

    def __init__(self, dataset: Dataset, file: str, index: int, raw: dict[str, Any]) -> None:
        self.dataset, self.file, self.index, self.raw = dataset, file, index, raw
        self.legacy_id = ""
        self.ok = True

    def problem(self, message: str) -> None:
        self.ok = False
        self.dataset.problems.append(Problem(self.file, self.index, self.legacy_id, message))

    def identity(self) -> str:
        value = self.raw.get("id")
        if isinstance(value, bool) or not isinstance(value, int | str) or str(value).strip() == "":
            self.problem("id is missing (a whole number or a text)")
            return ""
        self.legacy_id = str(value).strip()
        if len(self.legacy_id) > 255:
            self.problem("id is longer than 255 characters")
        return self.legacy_id

    def text(self, name: str, *, required: bool = False, max_length: int = 255) -> str:
        value = self.raw.get(name)
        if value is None or value == "":
            if required:
                self.problem(f"{name} is missing")
            return ""
        if not isinstance(value, str):
            self.problem(f"{name} must be a text, not {json.dumps(value)[:40]}")
            return ""
        if len(value) > max_length:
            self.problem(f"{name} is longer than {max_length} characters")
            return ""
        return value.strip()

    def reference(self, name: str) -> str:
        """An id of another record (``user_id``), as text."""
        value = self.raw.get(name)
        if isinstance(value, bool) or not isinstance(value, int | str) or str(value).strip() == "":
            self.problem(f"{name} is missing")
            return ""
        return str(value).strip()

    def moment(self, name: str, *, required: bool = True) -> dt.datetime | None:
        value = self.raw.get(name)
        if value is None or value == "":
            if required:
                self.problem(f"{name} is missing")
            return None
        if not isinstance(value, str):
            self.problem(f"{name} must be an ISO 8601 date and time, not {json.dumps(value)[:40]}")
            return None
        try:
            moment = dt.datetime.fromisoformat(value)
        except ValueError:
            self.problem(f"{name} {value[:40]!r} is not an ISO 8601 date and time")
            return None
        # The old portal wrote naive UTC times (datetime.utcnow().isoformat()).
        return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)

    def flag(self, name: str) -> bool:
        value = self.raw.get(name, False)
        if value is None:
            return False
        if not isinstance(value, bool):
            self.problem(f"{name} must be true or false, not {json.dumps(value)[:40]}")
            return False
        return value

    def gateway_id(self, name: str, pattern: re.Pattern[str], *, required: bool = False) -> str:
        value = self.text(name, required=required)
        if value and not pattern.fullmatch(value):
            self.problem(f"{name} {value[:40]!r} is not a Stripe id of that kind")
            return ""
        return value


def _read_array(dataset: Dataset, directory: Path, name: str) -> list[Any]:
    path = directory / name
    try:
        with path.open("rb") as handle:
            # JSON numbers with a fraction are read exactly (never as binary floats).
            document = json.load(handle, parse_float=Decimal)
    except FileNotFoundError:
        dataset.problems.append(Problem(name, "-", "", "the file is missing"))
        return []
    except (OSError, ValueError) as exc:
        dataset.problems.append(Problem(name, "-", "", f"cannot be read as JSON: {exc}"))
        return []
    if not isinstance(document, list):
        dataset.problems.append(Problem(name, "-", "", "must hold a JSON array of records"))
        return []
    return document


def _records(dataset: Dataset, directory: Path, name: str) -> Iterator[_Record]:
    for index, raw in enumerate(_read_array(dataset, directory, name)):
        if not isinstance(raw, dict):
            dataset.problems.append(Problem(name, index, "", "is not a JSON object"))
            continue
        yield _Record(dataset, name, index, raw)


def dataset_load(directory: Path, *, plan_map: Path | None = None) -> Dataset:
    """Read and check the legacy data set in ``directory`` (see the module's docstring)."""
    dataset = Dataset()
    prices = _plan_map_load(dataset, plan_map or directory / PLAN_MAP_FILE)
    users = _users_load(dataset, directory)
    _subscriptions_load(dataset, directory, users, prices)
    _payments_load(dataset, directory, users)
    return dataset


# --- Plan map -------------------------------------------------------------------------------------
def _plan_map_load(dataset: Dataset, path: Path) -> dict[str, Price | None]:
    """Old plan key -> Tollgate price (None when the entry is wrong, reported once here)."""
    name = path.name
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        dataset.problems.append(Problem(name, "-", "", "the plan map is missing"))
        return {}
    except (OSError, ValueError) as exc:
        dataset.problems.append(Problem(name, "-", "", f"cannot be read as JSON: {exc}"))
        return {}
    if not isinstance(document, dict):
        dataset.problems.append(Problem(name, "-", "", "must map old plan keys to prices"))
        return {}
    prices: dict[str, Price | None] = {}
    for key, entry in document.items():
        price, message = _price_for(entry)
        if message:
            dataset.problems.append(Problem(name, key, key, message))
        prices[key] = price
    return prices


def _price_for(entry: Any) -> tuple[Price | None, str]:
    if not isinstance(entry, dict):
        return None, 'must be {"price": "price_..."} or {"plan", "interval", "currency"}'
    if "price" in entry:
        price = Price.objects.select_related("plan").filter(public_id=entry["price"]).first()
        return (price, "") if price else (None, f"price {entry['price']!r} does not exist")
    count = entry.get("interval_count", 1)
    if isinstance(count, bool) or not isinstance(count, int):
        return None, "interval_count must be a whole number"
    try:
        currency = validate_currency(str(entry.get("currency", "")))
    except ValueError:
        return None, "currency must be an ISO 4217 code"
    candidates = Price.objects.select_related("plan").filter(
        plan__code=entry.get("plan", ""),
        interval=entry.get("interval", ""),
        interval_count=count,
        currency=currency,
    )
    if "product" in entry:
        candidates = candidates.filter(plan__product__code=entry["product"])
    found = list(candidates.order_by("-active", "-id")[:2])
    if not found:
        return None, "no Tollgate price has that plan, interval and currency"
    if len(found) > 1 and found[0].plan_id != found[1].plan_id:
        return None, "that plan code is in several products: name the product"
    return found[0], ""


# --- Users ----------------------------------------------------------------------------------------
def _users_load(dataset: Dataset, directory: Path) -> dict[str, LegacyUser | None]:
    """Every user id seen -> the user (None when it has problems)."""
    seen: dict[str, LegacyUser | None] = {}
    emails: dict[str, str] = {}
    customers: dict[str, str] = {}
    for record in _records(dataset, directory, USERS_FILE):
        legacy_id = record.identity()
        email = record.text("email", required=True, max_length=254)
        if email:
            try:
                validate_email(email)
            except DjangoValidationError:
                record.problem("email is not a valid email address")
        user = LegacyUser(
            index=record.index,
            legacy_id=legacy_id,
            email=User.objects.normalize_email(email),
            name=record.text("name", max_length=NAME_MAX),
            created_at=record.moment("created_at") or clock.now(),
            stripe_customer_id=record.gateway_id("stripe_customer_id", STRIPE_CUSTOMER),
            email_verified=record.flag("email_verified"),
        )
        if legacy_id in seen:
            record.problem("another user has this id")
        elif email and email.lower() in emails:
            record.problem(f"user {emails[email.lower()]} has the same email address")
        elif user.stripe_customer_id in customers:
            record.problem(
                f"user {customers[user.stripe_customer_id]} has the same Stripe customer"
            )
        if legacy_id and legacy_id not in seen:
            seen[legacy_id] = user if record.ok else None
        if not record.ok:
            continue
        emails[email.lower()] = legacy_id
        if user.stripe_customer_id:
            customers[user.stripe_customer_id] = legacy_id
        dataset.users.append(user)
    return seen


def _owner(record: _Record, users: dict[str, LegacyUser | None]) -> str:
    user_id = record.reference("user_id")
    if user_id and user_id not in users:
        record.problem(f"user {user_id} is not in {USERS_FILE}")
    elif user_id and users[user_id] is None:
        record.problem(f"user {user_id} has problems of its own and is not imported")
    return user_id


# --- Subscriptions --------------------------------------------------------------------------------
def _subscriptions_load(
    dataset: Dataset,
    directory: Path,
    users: dict[str, LegacyUser | None],
    prices: dict[str, Price | None],
) -> None:
    seen: set[str] = set()
    references: set[str] = set()
    live_of: dict[str, str] = {}
    now = clock.now()
    for record in _records(dataset, directory, SUBSCRIPTIONS_FILE):
        legacy_id = record.identity()
        if legacy_id in seen:
            record.problem("another subscription has this id")
        seen.add(legacy_id)
        user_id = _owner(record, users)
        price = _subscription_price(record, prices)
        status = _subscription_status(record)
        start, end = record.moment("current_period_start"), record.moment("current_period_end")
        trial_end = record.moment("trial_end", required=False)
        ended_at = record.moment("ended_at", required=False)
        reference = record.gateway_id("stripe_subscription_id", STRIPE_SUBSCRIPTION)
        if reference in references:
            record.problem("another subscription has this stripe_subscription_id")
        references.add(reference or f"-{legacy_id}")
        if start is None or end is None or price is None or status is None:
            # Reported above; without these nothing else can be checked.
            record.ok = False
            continue
        subscription = LegacySubscription(
            index=record.index,
            legacy_id=legacy_id,
            user_id=user_id,
            price=price,
            status=status,
            billing_anchor=record.moment("billing_cycle_anchor", required=False)
            or (trial_end if status == SubscriptionStatus.TRIALING and trial_end else start),
            current_period_start=start,
            current_period_end=end,
            trial_end=trial_end,
            cancel_at_period_end=record.flag("cancel_at_period_end"),
            canceled_at=record.moment("canceled_at", required=False),
            ended_at=ended_at,
            created_at=record.moment("created_at", required=False) or start,
            stripe_subscription_id=reference,
        )
        _subscription_check(record, subscription, now)
        if subscription.live and user_id and record.ok:
            if user_id in live_of:
                record.problem(
                    f"user {user_id} already has a live subscription ({live_of[user_id]}); "
                    "Tollgate keeps one per customer"
                )
            else:
                live_of[user_id] = legacy_id
        if record.ok:
            dataset.subscriptions.append(subscription)


def _subscription_price(record: _Record, prices: dict[str, Price | None]) -> Price | None:
    plan = record.text("plan", required=True)
    if not plan:
        return None
    if plan not in prices:
        record.problem(f"plan {plan!r} is not in the plan map")
        return None
    if prices[plan] is None:
        record.problem(f"plan {plan!r} has a wrong entry in the plan map")
    return prices[plan]


def _subscription_status(record: _Record) -> SubscriptionStatus | None:
    value = record.text("status", required=True)
    if not value:
        return None
    if value not in SubscriptionStatus.values:
        record.problem(f"status {value!r} is not a Stripe subscription status")
        return None
    status = SubscriptionStatus(value)
    if status in UNSETTLED_SUBSCRIPTION:
        record.problem(
            f"status {value!r}: the old portal is still collecting a payment for it; import it "
            "once it is active or canceled"
        )
        return None
    return status


def _subscription_check(record: _Record, sub: LegacySubscription, now: dt.datetime) -> None:
    if sub.current_period_end <= sub.current_period_start:
        record.problem("current_period_end is not after current_period_start")
        return
    if not sub.live:
        if sub.ended_at is None:
            record.problem(f"ended_at is missing (required when the status is {sub.status})")
        return
    if sub.ended_at is not None:
        record.problem(f"ended_at is set but the status is {sub.status}")
    if sub.current_period_end <= now:
        record.problem(
            "its current period ended before now: export the data again right before the import"
        )
    if sub.status == SubscriptionStatus.TRIALING:
        if sub.trial_end != sub.current_period_end:
            record.problem("trial_end must be the end of the current period while trialing")
        return
    months = price_months(sub.price)
    if sub.billing_anchor > sub.current_period_start:
        record.problem("billing_cycle_anchor is after current_period_start")
        return
    expected = periods.period_at(
        anchor=sub.billing_anchor, months=months, at=sub.current_period_start
    )
    if (expected.start, expected.end) != (sub.current_period_start, sub.current_period_end):
        record.problem(
            f"the current period is not one {months}-month period of its billing anchor "
            f"({sub.billing_anchor:%Y-%m-%d}); Tollgate's next period would not start where it ends"
        )


# --- Payments -------------------------------------------------------------------------------------
def _payments_load(dataset: Dataset, directory: Path, users: dict[str, LegacyUser | None]) -> None:
    seen: set[str] = set()
    references: set[str] = set()
    for record in _records(dataset, directory, PAYMENTS_FILE):
        legacy_id = record.identity()
        if legacy_id in seen:
            record.problem("another payment has this id")
        seen.add(legacy_id)
        status = record.text("status", required=True)
        if status in PAYMENT_NO_MONEY:
            dataset.payments_not_taken += 1
            continue
        if status and status != PAYMENT_SUCCEEDED:
            record.problem(
                f"status {status!r}: only settled payments are imported (succeeded, or one that "
                "moved no money)"
            )
        user_id = _owner(record, users)
        currency = _payment_currency(record)
        amount = _payment_amount(record, currency)
        refunded = record.raw.get("amount_refunded") or 0
        if refunded:
            record.problem("it was refunded (amount_refunded); refunds are not imported")
        reference = record.gateway_id("stripe_payment_intent_id", STRIPE_PAYMENT, required=True)
        if reference and reference in references:
            record.problem("another payment has this stripe_payment_intent_id")
        references.add(reference)
        payment = LegacyPayment(
            index=record.index,
            legacy_id=legacy_id,
            user_id=user_id,
            amount=amount,
            currency=currency,
            created_at=record.moment("created_at") or clock.now(),
            stripe_payment_id=reference,
            description=record.text("description", max_length=10_000)[:DESCRIPTION_MAX],
        )
        if record.ok:
            dataset.payments.append(payment)


def _payment_currency(record: _Record) -> str:
    value = record.text("currency", required=True)
    if not value:
        return ""
    try:
        return validate_currency(value)
    except ValueError:
        record.problem(f"currency {value[:20]!r} is not an ISO 4217 code")
        return ""


def _payment_amount(record: _Record, currency: str) -> int:
    """Minor units. A whole number is minor units already; a number with a fraction is in major
    units (dollars, as some old records have it) and is taken only when exact to the minor unit."""
    value = record.raw.get("amount")
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        record.problem("amount is missing (a whole number of minor units, e.g. cents)")
        return 0
    if isinstance(value, Decimal):
        if not currency:
            return 0
        minor = value.scaleb(currency_exponent(currency))
        if minor != minor.to_integral_value():
            record.problem(
                f"amount {value} is in major units but not a whole number of {currency} minor "
                "units; refused rather than rounded"
            )
            return 0
        value = int(minor)
    if value <= 0:
        record.problem(f"amount {value} is not above zero")
    return value
