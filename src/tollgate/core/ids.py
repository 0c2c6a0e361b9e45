"""Public identifiers: a short type prefix and 20 random base32 characters (``usr_7F3KQ2...``).

Internal primary keys never leave the database; everything shown or sent carries a public id.
Each model field uses a named factory below, so migrations can refer to it.
"""

from __future__ import annotations

import base64
import secrets

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
_LENGTH = 20  # 100 bits
# RFC 4648 base32 digit -> the Crockford digit of the same value.
_TO_CROCKFORD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _ALPHABET)


def new_public_id(prefix: str) -> str:
    # 13 random bytes encode to 21 base32 digits; the first 20 carry 100 uniformly random bits.
    body = base64.b32encode(secrets.token_bytes(13)).decode("ascii")[:_LENGTH]
    return f"{prefix}_{body.translate(_TO_CROCKFORD)}"


def new_usr_id() -> str:
    return new_public_id("usr")


def new_prod_id() -> str:
    return new_public_id("prod")


def new_plan_id() -> str:
    return new_public_id("plan")


def new_price_id() -> str:
    return new_public_id("price")


def new_evt_id() -> str:
    return new_public_id("evt")


def new_cus_id() -> str:
    return new_public_id("cus")


def new_pm_id() -> str:
    return new_public_id("pm")


def new_sub_id() -> str:
    return new_public_id("sub")


def new_inv_id() -> str:
    return new_public_id("inv")


def new_pay_id() -> str:
    return new_public_id("pay")


def new_ref_id() -> str:
    return new_public_id("ref")


def new_txn_id() -> str:
    return new_public_id("txn")


def new_rec_id() -> str:
    return new_public_id("rec")


def new_org_id() -> str:
    return new_public_id("org")


def new_invite_id() -> str:
    return new_public_id("invite")


_INVOICE_PREFIX_LENGTH = 8  # 40 bits: a clash among a million customers has odds of about 1 in 10^6


def new_invoice_prefix() -> str:
    """The per-customer invoice number prefix (``7F3KQ2AB`` in ``7F3KQ2AB-0004``)."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(_INVOICE_PREFIX_LENGTH))
