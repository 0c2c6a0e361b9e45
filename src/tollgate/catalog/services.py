"""Writes to the catalog. Loading a catalog file is idempotent: loading it twice changes nothing."""

from __future__ import annotations

import re
import secrets
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import transaction

from tollgate.audit.services import audit_record
from tollgate.catalog.models import (
    UNLIMITED,
    Feature,
    Metric,
    Plan,
    Price,
    Product,
    TrialEndWithoutCard,
)
from tollgate.core import outbox
from tollgate.core.errors import ValidationFailed
from tollgate.core.money import Money, chargeable_exactly, validate_currency
from tollgate.security.policies import parse_rate

# Outbox message after a change to the catalog: what is cached from it is dropped.
CATALOG_CHANGED = "catalog.changed"
# Feature and limit keys: what a catalog entry's code and a plan's keys may be.
KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass
class CatalogLoadResult:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.retired)


def _require(mapping: dict[str, Any], key: str, where: str) -> Any:
    if key not in mapping:
        raise ValidationFailed(
            f"{where}: '{key}' is required.", details={"field": f"{where}.{key}"}
        )
    return mapping[key]


def _check_price(raw: dict[str, Any], where: str) -> tuple[int, str, str, int]:
    amount = _require(raw, "amount", where)
    if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
        raise ValidationFailed(
            f"{where}: amount must be a whole, non-negative number of minor units (cents).",
            details={"field": f"{where}.amount"},
        )
    try:
        currency = validate_currency(str(_require(raw, "currency", where)))
    except ValueError as exc:
        raise ValidationFailed(f"{where}: {exc}.", details={"field": f"{where}.currency"}) from exc
    interval = _require(raw, "interval", where)
    if interval not in Price.Interval.values:
        raise ValidationFailed(
            f"{where}: interval must be 'month' or 'year'.", details={"field": f"{where}.interval"}
        )
    count = raw.get("interval_count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 36:
        raise ValidationFailed(
            f"{where}: interval_count must be 1 to 36.",
            details={"field": f"{where}.interval_count"},
        )
    problem = price_charge_problem(amount=amount, currency=currency)
    if problem:
        raise ValidationFailed(f"{where}: {problem}", details={"field": f"{where}.amount"})
    return amount, currency, interval, count


def price_charge_problem(*, amount: int, currency: str) -> str:
    """Why a price of ``amount`` ``currency`` could not be charged exactly by the configured
    payment gateway (Stripe takes three-decimal currencies in steps of 0.010, MGA in whole
    units); "" when it can."""
    money = Money(amount, currency)
    if chargeable_exactly(money):
        return ""
    return (
        f"the payment gateway cannot charge {money} exactly; "
        f"choose an amount it can charge, such as one rounded to whole {money.currency}."
    )


def _sync(instance: Any, values: dict[str, Any]) -> bool:
    changed = [name for name, value in values.items() if getattr(instance, name) != value]
    for name in changed:
        setattr(instance, name, values[name])
    if changed:
        instance.save(update_fields=changed)
    return bool(changed)


def catalog_load(*, document: dict[str, Any], actor: Any = None) -> CatalogLoadResult:
    """Bring the catalog in line with ``document`` (the parsed form of a plans.toml file).

    Products and plans are matched by code and updated in place. Prices are matched by plan, currency,
    interval and interval count; a different amount (or ``per_seat``: the amount is per seat)
    retires the old price and creates a new one, so a price that subscriptions use is never edited. ``[[features]]`` and ``[[metrics]]`` name the
    feature and limit keys plans use (a key no entry names is named after itself). Nothing is
    deleted.
    """
    result = CatalogLoadResult()
    products = document.get("products")
    if not isinstance(products, list) or not products:
        raise ValidationFailed("The catalog needs at least one [[products]] entry.")
    with transaction.atomic(durable=True):
        for p_index, raw_product in enumerate(products):
            where = f"products[{p_index}]"
            code = _require(raw_product, "code", where)
            product, created = Product.objects.get_or_create(
                code=code, defaults={"name": _require(raw_product, "name", where)}
            )
            values = {
                "name": _require(raw_product, "name", where),
                "description": raw_product.get("description", ""),
                "active": raw_product.get("active", True),
            }
            if created:
                _sync(product, values)
                result.created.append(f"product {code}")
            elif _sync(product, values):
                result.updated.append(f"product {code}")
            for l_index, raw_plan in enumerate(raw_product.get("plans", [])):
                _load_plan(product, raw_plan, f"{where}.plans[{l_index}]", l_index, result)
        _load_metrics(document, result)
        _load_features(document, result)
        _keys_name_missing(result)
        if result.changed:
            _cached_forget_enqueue()
            audit_record(
                action="catalog.loaded",
                actor=actor,
                details={
                    "created": result.created,
                    "updated": result.updated,
                    "retired": result.retired,
                },
            )
    return result


def _load_plan(
    product: Product, raw: dict[str, Any], where: str, index: int, result: CatalogLoadResult
) -> None:
    code = _require(raw, "code", where)
    features = raw.get("features", {})
    limits = raw.get("limits", {})
    if not all(isinstance(v, bool) for v in features.values()):
        raise ValidationFailed(f"{where}: features must be true or false.")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in limits.values()):
        raise ValidationFailed(f"{where}: limits must be whole numbers.")
    if any(v < UNLIMITED for v in limits.values()):
        raise ValidationFailed(f"{where}: limits are 0 or more, or -1 for no limit.")
    for key in (*features, *limits):
        _check_key(key, f"{where}: the key {key!r}")
    values = {
        "name": _require(raw, "name", where),
        "description": raw.get("description", ""),
        "features": features,
        "limits": limits,
        "api_rate_limits": _api_rate_limits(raw, where),
        "trial_days": int(raw.get("trial_days", 0)),
        "trial_requires_card": _require_bool(raw, "trial_requires_card", where),
        "trial_end_without_card": _trial_end_rule(raw, where),
        "display_order": int(raw.get("display_order", index)),
        "active": raw.get("active", True),
    }
    plan, created = Plan.objects.get_or_create(product=product, code=code, defaults=values)
    if created:
        result.created.append(f"plan {code}")
    elif _sync(plan, values):
        result.updated.append(f"plan {code}")
    for r_index, raw_price in enumerate(raw.get("prices", [])):
        price_where = f"{where}.prices[{r_index}]"
        amount, currency, interval, count = _check_price(raw_price, price_where)
        per_seat = raw_price.get("per_seat", False)
        if not isinstance(per_seat, bool):
            raise ValidationFailed(
                f"{price_where}: per_seat must be true or false.",
                details={"field": f"{price_where}.per_seat"},
            )
        current = Price.objects.filter(
            plan=plan, currency=currency, interval=interval, interval_count=count, active=True
        ).first()
        if current is not None and (current.amount, current.per_seat) == (amount, per_seat):
            continue
        if current is not None:
            current.active = False
            current.save(update_fields=["active"])
            result.retired.append(f"price {current.public_id}")
        Price.objects.create(
            plan=plan,
            amount=amount,
            currency=currency,
            interval=interval,
            interval_count=count,
            per_seat=per_seat,
        )
        seat = " per seat" if per_seat else ""
        result.created.append(f"price {code} {amount} {currency}/{count} {interval}{seat}")


def _load_metrics(document: dict[str, Any], result: CatalogLoadResult) -> None:
    """``[[metrics]]`` entries name a limit key, its unit and how its usage resets."""
    for index, raw in enumerate(_entries(document, "metrics")):
        where = f"metrics[{index}]"
        reset = raw.get("reset", Metric.Reset.PERIOD)
        if reset not in Metric.Reset.values:
            raise ValidationFailed(f"{where}: reset must be 'period' or 'level'.")
        values = {
            **_names(raw, where),
            "unit": _text(raw, "unit", where),
            "reset": reset,
            "display_order": index,
        }
        _key_sync(Metric, "metric", values, result)


def _load_features(document: dict[str, Any], result: CatalogLoadResult) -> None:
    """``[[features]]`` entries name a feature key and say what it is."""
    for index, raw in enumerate(_entries(document, "features")):
        where = f"features[{index}]"
        values = {
            **_names(raw, where),
            "description": _text(raw, "description", where),
            "display_order": index,
        }
        _key_sync(Feature, "feature", values, result)


def _entries(document: dict[str, Any], name: str) -> list[dict[str, Any]]:
    entries = document.get(name, [])
    if not isinstance(entries, list) or not all(isinstance(raw, dict) for raw in entries):
        raise ValidationFailed(f"{name} must be a list of [[{name}]] entries.")
    return entries


def _names(raw: dict[str, Any], where: str) -> dict[str, Any]:
    code = _require(raw, "code", where)
    _check_key(code, f"{where}: code")
    return {"code": code, "name": _text(raw, "name", where) or _humanize(code)}


def _check_key(key: Any, what: str) -> None:
    if not isinstance(key, str) or not KEY_PATTERN.match(key):
        raise ValidationFailed(f"{what} must be 1 to 64 letters, digits, '_' or '-'.")


def _text(raw: dict[str, Any], key: str, where: str) -> str:
    value = raw.get(key, "")
    if not isinstance(value, str):
        raise ValidationFailed(f"{where}: {key} must be text.", details={"field": f"{where}.{key}"})
    return value


def _key_sync(
    model: type[Feature] | type[Metric],
    kind: str,
    values: dict[str, Any],
    result: CatalogLoadResult,
) -> None:
    code = values["code"]
    entry, created = model.objects.get_or_create(code=code, defaults=values)
    if created:
        result.created.append(f"{kind} {code}")
    elif _sync(entry, values):
        result.updated.append(f"{kind} {code}")


def _keys_name_missing(result: CatalogLoadResult | None = None) -> None:
    """Every feature and limit key a plan uses that no entry names gets a name made from the key
    (after the named ones); a limit's usage then starts at zero each month."""
    features: set[str] = set()
    limits: set[str] = set()
    for plan_features, plan_limits in Plan.objects.values_list("features", "limits"):
        features.update(plan_features)
        limits.update(plan_limits)
    for model, kind, codes in ((Feature, "feature", features), (Metric, "metric", limits)):
        known = set(model.objects.filter(code__in=codes).values_list("code", flat=True))
        after = model.objects.count()
        for code in sorted(codes - known):
            model.objects.create(code=code, name=_humanize(code), display_order=after)
            if result is not None:
                result.created.append(f"{kind} {code}")


def _humanize(code: str) -> str:
    return code.replace("_", " ").capitalize()


def _cached_forget_enqueue() -> None:
    outbox.outbox_enqueue(
        kind=CATALOG_CHANGED,
        payload={},
        dedupe_key=f"{CATALOG_CHANGED}:{secrets.token_hex(12)}",
    )


def catalog_changed_announce() -> None:
    """After an edit of plans, features or metrics (the admin's), inside its transaction: every new
    feature or limit key gets a name made from it, and what is cached from the catalog is dropped
    once the edit commits (in every process; nothing is dropped if it rolls back)."""
    _keys_name_missing()
    _cached_forget_enqueue()


API_OPERATION_CLASSES = ("default", "read", "write", "usage", "check")


def _api_rate_limits(raw: dict[str, Any], where: str) -> dict[str, str]:
    rates = raw.get("api_rate_limits", {})
    if not isinstance(rates, dict):
        raise ValidationFailed(f"{where}: api_rate_limits must be a table.")
    for name, rate in rates.items():
        if name not in API_OPERATION_CLASSES:
            allowed = ", ".join(API_OPERATION_CLASSES)
            raise ValidationFailed(f"{where}: api_rate_limits keys are {allowed}.")
        try:
            parse_rate(str(rate))
        except ValueError as exc:
            raise ValidationFailed(
                f"{where}: api_rate_limits.{name} must be a rate such as '600/minute'."
            ) from exc
    return {name: str(rate) for name, rate in rates.items()}


def _require_bool(raw: dict[str, Any], key: str, where: str) -> bool:
    value = raw.get(key, False)
    if not isinstance(value, bool):
        raise ValidationFailed(f"{where}: {key} must be true or false.")
    return value


def _trial_end_rule(raw: dict[str, Any], where: str) -> str:
    value = raw.get("trial_end_without_card", "")
    if value not in ("", *TrialEndWithoutCard.values):
        allowed = ", ".join(repr(choice) for choice in TrialEndWithoutCard.values)
        raise ValidationFailed(f"{where}: trial_end_without_card must be one of {allowed}.")
    return str(value)


def catalog_load_file(*, path: Path, actor: Any = None) -> CatalogLoadResult:
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValidationFailed(f"{path} is not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ValidationFailed(f"{path} cannot be read: {exc.strerror}") from exc
    return catalog_load(document=document, actor=actor)
