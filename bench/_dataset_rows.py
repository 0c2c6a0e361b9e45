"""The rows of the benchmark dataset (``bench/dataset.py`` loads them): one customer at a time, with
their account, card, subscription, invoices and lines, payment attempts and ledger postings, as text
lines of PostgreSQL's COPY format."""

from __future__ import annotations

import base64
import datetime as dt
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

CHUNK_CUSTOMERS = 2_000
PERIOD = 30 * 86_400  # the dataset's monthly periods are 30 days long
GATEWAY = "sandbox"

# The tables loaded, in foreign-key order, with the columns written.
TABLES: dict[str, tuple[str, ...]] = {
    "accounts_user": (
        "id", "password", "is_superuser", "public_id", "email", "name", "is_active", "is_staff",
        "date_joined",
    ),
    "billing_customer": (
        "id", "public_id", "user_id", "email", "name", "external_id", "invoice_prefix",
        "next_invoice_sequence", "gateway", "gateway_reference", "created_at",
    ),
    "billing_paymentmethod": (
        "id", "public_id", "customer_id", "gateway", "gateway_token", "brand", "last4",
        "exp_month", "exp_year", "is_default", "created_at",
    ),
    "billing_subscription": (
        "id", "public_id", "customer_id", "price_id", "status", "billing_anchor",
        "current_period_start", "current_period_end", "trial_end", "cancel_at_period_end",
        "canceled_at", "ended_at", "cancellation_reason", "cancellation_comment", "created_at",
    ),
    "billing_invoice": (
        "id", "public_id", "customer_id", "subscription_id", "billing_reason", "number", "status",
        "currency", "total", "amount_paid", "period_start", "period_end", "created_at",
        "finalized_at", "paid_at", "next_payment_attempt_at",
    ),
    "billing_invoiceline": (
        "id", "invoice_id", "kind", "description", "amount", "price_id", "period_start",
        "period_end",
    ),
    "billing_paymentattempt": (
        "id", "public_id", "invoice_id", "attempt_number", "idempotency_key", "status", "amount",
        "currency", "amount_refunded", "payment_method_id", "gateway", "off_session",
        "gateway_reference", "decline_code", "decline_kind", "action_url", "created_at",
        "completed_at",
    ),
    "billing_ledgertransaction": (
        "id", "public_id", "kind", "customer_id", "invoice_id", "payment_id", "occurred_at",
        "created_at",
    ),
    "billing_ledgerentry": ("id", "transaction_id", "account", "amount", "currency"),
}  # fmt: skip

FIRST_NAMES = [
    "Ada",
    "Alan",
    "Amara",
    "Anna",
    "Arjun",
    "Ben",
    "Bianca",
    "Carlos",
    "Chen",
    "Chloe",
    "Dara",
    "David",
    "Elena",
    "Emil",
    "Fatima",
    "Felix",
    "Grace",
    "Hana",
    "Hugo",
    "Ines",
    "Ivan",
    "Jamal",
    "Jana",
    "Jonas",
    "Julia",
    "Kai",
    "Karim",
    "Lea",
    "Lena",
    "Luca",
    "Maya",
    "Mei",
    "Mira",
    "Nadia",
    "Noah",
    "Nora",
    "Omar",
    "Otto",
    "Paula",
    "Priya",
    "Quinn",
    "Rafael",
    "Rosa",
    "Sami",
    "Sara",
    "Sofia",
    "Tariq",
    "Tess",
    "Uma",
    "Victor",
    "Wen",
    "Yara",
    "Yusuf",
    "Zoe",
]
SYLLABLES = [
    "ba",
    "be",
    "bo",
    "ca",
    "co",
    "da",
    "de",
    "di",
    "do",
    "fa",
    "fe",
    "ga",
    "go",
    "ha",
    "he",
    "ka",
    "ki",
    "ko",
    "la",
    "le",
    "li",
    "lo",
    "ma",
    "me",
    "mi",
    "mo",
    "na",
    "ne",
    "ni",
    "no",
    "pa",
    "pe",
    "ra",
    "re",
    "ri",
    "ro",
    "sa",
    "se",
    "si",
    "so",
    "ta",
    "te",
    "ti",
    "to",
    "va",
    "ve",
    "vi",
    "wa",
    "ya",
    "yo",
    "za",
    "zu",
]
DOMAINS = ("example.com", "example.org", "example.net", "mail.example", "corp.example")
BRANDS = ("visa", "mastercard", "amex")
_CROCKFORD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", "0123456789ABCDEFGHJKMNPQRSTVWXYZ")


@dataclass(frozen=True)
class Shape:
    customers: int
    invoices_per_customer: int = 10
    now: int = 0  # epoch seconds; the clock has caught up to it
    seed: int = 1


@dataclass(frozen=True)
class PriceRow:
    id: int
    amount: int
    currency: str
    description: str


@dataclass
class Counts:
    rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 0))


# --- Values ------------------------------------------------------------------------------------------
class PublicIds:
    """Public ids as ``core.ids`` makes them (a prefix, 20 Crockford base32 characters, 100 random
    bits), drawn in blocks: one ``os.urandom`` and one translation per 4,096 ids."""

    def __init__(self) -> None:
        self._bodies: list[str] = []

    def take(self, prefix: str) -> str:
        if not self._bodies:
            text = base64.b32encode(os.urandom(15 * 4096)).decode("ascii").translate(_CROCKFORD)
            self._bodies = [text[i : i + 20] for i in range(0, len(text), 24)]
        return f"{prefix}_{self._bodies.pop()}"


_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
_DAYS: dict[int, str] = {}


def ts(epoch: int) -> str:
    """A UTC timestamp for COPY's text format (day strings cached: most rows share few days)."""
    day, rest = divmod(epoch, 86_400)
    date = _DAYS.get(day)
    if date is None:
        date = _DAYS[day] = dt.date.fromordinal(_EPOCH_ORDINAL + day).isoformat()
    hour, rest = divmod(rest, 3600)
    minute, second = divmod(rest, 60)
    return f"{date} {hour:02d}:{minute:02d}:{second:02d}+00"


def invoice_prefix(number: int) -> str:
    """A unique 7-character prefix per customer (base 36 of its number)."""
    digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    out = []
    for _ in range(7):
        number, digit = divmod(number, 36)
        out.append(digits[digit])
    return "".join(reversed(out))


# --- Rows --------------------------------------------------------------------------------------------
N = "\\N"  # NULL in COPY's text format


class Generator:
    """Builds the rows customer by customer; ids are sequential per table."""

    def __init__(self, shape: Shape, prices: list[PriceRow]) -> None:
        self.shape = shape
        self.prices = prices
        self.rng = random.Random(shape.seed)
        self.ids = PublicIds()
        self.next_payment = 1
        self.next_transaction = 1
        self.next_entry = 1

    def chunks(self) -> Iterator[dict[str, list[str]]]:
        for start in range(1, self.shape.customers + 1, CHUNK_CUSTOMERS):
            rows: dict[str, list[str]] = {table: [] for table in TABLES}
            for number in range(start, min(start + CHUNK_CUSTOMERS, self.shape.customers + 1)):
                self.customer(number, rows)
            yield rows

    def customer(self, c: int, rows: dict[str, list[str]]) -> None:
        rng, ids, shape = self.rng, self.ids, self.shape
        k = shape.invoices_per_customer
        draw = rng.random()
        status = (
            "trialing" if draw < 0.02
            else "past_due" if draw < 0.05
            else "unpaid" if draw < 0.06
            else "canceled" if draw < 0.10
            else "active"
        )  # fmt: skip
        offset = rng.randrange(3600, 28 * 86_400)
        if status == "canceled":
            offset += PERIOD * rng.randrange(1, 6)
        anchor = shape.now - (k - 1) * PERIOD - offset
        created = anchor - 600
        first = rng.choice(FIRST_NAMES)
        last = "".join(rng.choice(SYLLABLES) for _ in range(3)).capitalize()
        name = f"{first} {last}"
        email = f"{first.lower()}.{last.lower()}{c}@{DOMAINS[c % len(DOMAINS)]}"
        price = self.prices[rng.randrange(len(self.prices))]
        total = 0 if status == "trialing" else price.amount
        user_id = ids.take("usr")
        rows["accounts_user"].append(
            f"{c}\t!dataset\tf\t{user_id}\t{email}\t{name}\tt\tf\t{ts(created)}"
        )
        prefix = invoice_prefix(c)
        external = f"ext-{c}" if c % 2 else N
        rows["billing_customer"].append(
            f"{c}\t{ids.take('cus')}\t{c}\t{email}\t{name}\t{external}\t{prefix}\t{k + 1}\t"
            f"{GATEWAY}\tsbcus_{c:024x}\t{ts(created)}"
        )
        rows["billing_paymentmethod"].append(
            f"{c}\t{ids.take('pm')}\t{c}\t{GATEWAY}\tsbpm_{c:024x}\t{BRANDS[c % 3]}\t"
            f"{rng.randrange(10_000):04d}\t{rng.randrange(1, 13)}\t{rng.randrange(2027, 2032)}\tt\t"
            f"{ts(created + 60)}"
        )
        period_start = anchor + (k - 1) * PERIOD
        period_end = period_start + PERIOD
        ended = ts(period_end) if status == "canceled" else N
        rows["billing_subscription"].append(
            f"{c}\t{ids.take('sub')}\t{c}\t{price.id}\t{status}\t{ts(anchor)}\t{ts(period_start)}\t"
            f"{ts(period_end)}\t{ts(period_end) if status == 'trialing' else N}\tf\t"
            f"{ts(period_end - 86_400) if status == 'canceled' else N}\t{ended}\t"
            f"{'too_expensive' if status == 'canceled' else ''}\t\t{ts(created)}"
        )
        for i in range(k):
            self.invoice(c, i, status, anchor, prefix, price, total, rows)

    def invoice(
        self,
        c: int,
        i: int,
        status: str,
        anchor: int,
        prefix: str,
        price: PriceRow,
        total: int,
        rows: dict[str, list[str]],
    ) -> None:
        rng, ids, shape = self.rng, self.ids, self.shape
        k = shape.invoices_per_customer
        invoice_id = (c - 1) * k + i + 1
        public_id = ids.take("inv")
        start = anchor + i * PERIOD
        end = start + PERIOD
        last = i == k - 1
        open_ = last and status in ("past_due", "unpaid")
        retry = (
            ts(shape.now + rng.randrange(3600, 3 * 86_400)) if open_ and status == "past_due" else N
        )
        currency = price.currency
        rows["billing_invoice"].append(
            f"{invoice_id}\t{public_id}\t{c}\t{c}\t"
            f"{'subscription_create' if i == 0 else 'subscription_cycle'}\t{prefix}-{i + 1:04d}\t"
            f"{'open' if open_ else 'paid'}\t{currency}\t{total}\t{0 if open_ else total}\t"
            f"{ts(start)}\t{ts(end)}\t{ts(start)}\t{ts(start)}\t"
            f"{N if open_ else ts(start + 180)}\t{retry}"
        )
        rows["billing_invoiceline"].append(
            f"{invoice_id}\t{invoice_id}\tplan_charge\t{price.description}\t{total}\t{price.id}\t"
            f"{ts(start)}\t{ts(end)}"
        )
        if total == 0:
            return
        self.transaction(c, invoice_id, None, "invoice_finalized", start, currency,
                         ("receivable", total), ("revenue", -total), rows)  # fmt: skip
        failures = (3 if status == "unpaid" else 1) if open_ else (1 if rng.random() < 0.04 else 0)
        for attempt in range(1, failures + 2 if not open_ else failures + 1):
            succeeded = attempt > failures
            payment_id = self.next_payment
            self.next_payment += 1
            at = start + 60 * attempt
            rows["billing_paymentattempt"].append(
                f"{payment_id}\t{ids.take('pay')}\t{invoice_id}\t{attempt}\t"
                f"{public_id}-attempt-{attempt}\t{'succeeded' if succeeded else 'failed'}\t{total}\t"
                f"{currency}\t0\t{c}\t{GATEWAY}\t{'t' if i else 'f'}\tsbch_{payment_id:024x}\t"
                f"{'' if succeeded else 'card_declined'}\t{'' if succeeded else 'soft'}\t\t"
                f"{ts(at)}\t{ts(at + 2)}"
            )
            if succeeded:
                self.transaction(c, invoice_id, payment_id, "payment_captured", at + 2, currency,
                                 ("gateway_clearing", total), ("receivable", -total), rows)  # fmt: skip

    def transaction(
        self,
        c: int,
        invoice_id: int,
        payment_id: int | None,
        kind: str,
        at: int,
        currency: str,
        debit: tuple[str, int],
        credit: tuple[str, int],
        rows: dict[str, list[str]],
    ) -> None:
        txn = self.next_transaction
        self.next_transaction += 1
        rows["billing_ledgertransaction"].append(
            f"{txn}\t{self.ids.take('txn')}\t{kind}\t{c}\t{invoice_id}\t"
            f"{N if payment_id is None else payment_id}\t{ts(at)}\t{ts(at)}"
        )
        for account, amount in (debit, credit):
            rows["billing_ledgerentry"].append(
                f"{self.next_entry}\t{txn}\t{account}\t{amount}\t{currency}"
            )
            self.next_entry += 1
