import itertools

import pytest

from tollgate.billing.errors import TransitionRefused
from tollgate.billing.states import (
    INVOICE,
    PAYMENT,
    REFUND,
    SUBSCRIPTION,
    InvoiceStatus,
    PaymentStatus,
    RefundStatus,
    SubscriptionStatus,
)
from tollgate.core.errors import Conflict

S, Inv, P, R = SubscriptionStatus, InvoiceStatus, PaymentStatus, RefundStatus

# The expected tables, written out independently of the module under test.
ALLOWED = {
    SUBSCRIPTION: {
        (S.INCOMPLETE, S.ACTIVE),
        (S.INCOMPLETE, S.INCOMPLETE_EXPIRED),
        (S.INCOMPLETE, S.CANCELED),
        (S.TRIALING, S.ACTIVE),
        (S.TRIALING, S.PAST_DUE),
        (S.TRIALING, S.INCOMPLETE),
        (S.TRIALING, S.CANCELED),
        (S.ACTIVE, S.PAST_DUE),
        (S.ACTIVE, S.CANCELED),
        (S.PAST_DUE, S.ACTIVE),
        (S.PAST_DUE, S.UNPAID),
        (S.PAST_DUE, S.CANCELED),
        (S.UNPAID, S.ACTIVE),
        (S.UNPAID, S.CANCELED),
    },
    INVOICE: {
        (Inv.DRAFT, Inv.OPEN),
        (Inv.OPEN, Inv.PAID),
        (Inv.OPEN, Inv.UNCOLLECTIBLE),
        (Inv.OPEN, Inv.VOID),
        (Inv.UNCOLLECTIBLE, Inv.PAID),
        (Inv.UNCOLLECTIBLE, Inv.VOID),
    },
    PAYMENT: {
        (P.PENDING, P.SUCCEEDED),
        (P.PENDING, P.FAILED),
        (P.PENDING, P.REQUIRES_ACTION),
        (P.PENDING, P.UNKNOWN),
        (P.REQUIRES_ACTION, P.SUCCEEDED),
        (P.REQUIRES_ACTION, P.FAILED),
        (P.UNKNOWN, P.SUCCEEDED),
        (P.UNKNOWN, P.FAILED),
        (P.UNKNOWN, P.REQUIRES_ACTION),
    },
    REFUND: {(R.PENDING, R.SUCCEEDED), (R.PENDING, R.FAILED)},
}
STATUSES = {SUBSCRIPTION: S, INVOICE: Inv, PAYMENT: P, REFUND: R}

PAIRS = [
    pytest.param(
        machine,
        current,
        target,
        (current, target) in ALLOWED[machine],
        id=f"{machine.name}:{current}->{target}",
    )
    for machine, choices in STATUSES.items()
    for current, target in itertools.product(choices.values, repeat=2)
]


@pytest.mark.parametrize(("machine", "current", "target", "allowed"), PAIRS)
def test_every_transition_is_allowed_exactly_when_the_table_says_so(
    machine, current, target, allowed
):
    assert machine.allows(current, target) is allowed
    if allowed:
        assert machine.check(current=current, target=target) == target
    else:
        with pytest.raises(TransitionRefused) as refused:
            machine.check(current=current, target=target)
        assert refused.value.code == "transition_refused"
        assert refused.value.status == 409
        assert refused.value.details == {"object": machine.name, "from": current, "to": target}


@pytest.mark.parametrize("machine", list(STATUSES))
def test_every_status_has_a_row_and_every_target_is_a_known_status(machine):
    values = set(STATUSES[machine].values)
    assert set(machine.transitions) == values
    assert all(targets <= values for targets in machine.transitions.values())


def test_refusal_is_a_conflict_with_a_message_naming_both_states():
    with pytest.raises(Conflict, match="from canceled to active"):
        SUBSCRIPTION.check(current=S.CANCELED, target=S.ACTIVE)


def test_unknown_current_status_allows_nothing():
    assert not PAYMENT.allows("refunded", P.SUCCEEDED)
