"""Public identifiers: a short type prefix and 20 random base32 characters (``usr_7F3KQ2...``).

Internal primary keys never leave the database; everything shown or sent carries a public id.
Each model field uses a named factory below, so migrations can refer to it.
"""

from __future__ import annotations

import secrets

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
_LENGTH = 20  # 100 bits


def new_public_id(prefix: str) -> str:
    body = "".join(secrets.choice(_ALPHABET) for _ in range(_LENGTH))
    return f"{prefix}_{body}"


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
