"""What other apps decide about organisations, registered from their ``AppConfig.ready`` (the
organisations app sits below billing and never imports it).

- a departure check: called, under the organisation's lock, before its last member leaves it to
  join another organisation; raises a ``TollgateError`` to refuse (billing refuses while the
  organisation still pays for a plan).
- a departure handler: called in the transaction that removed a member (left or removed), with
  the organisation locked; billing hands the customer over to the organisation when the member who
  opened it goes.
- a join check: called, under the organisation's lock, with the number of people it would hold
  (members and open invitations) before someone is invited or joins; raises a ``TollgateError``
  to refuse (billing refuses when a per-seat plan has no free seat).
"""

from __future__ import annotations

from collections.abc import Callable

from tollgate.accounts.models import User
from tollgate.organisations.models import Organisation

DepartureCheck = Callable[[Organisation], None]
DepartureHandler = Callable[[Organisation, User], None]
JoinCheck = Callable[[Organisation, int], None]
_departure_checks: list[DepartureCheck] = []
_departure_handlers: list[DepartureHandler] = []
_join_checks: list[JoinCheck] = []


def departure_check_register(check: DepartureCheck) -> None:
    if check not in _departure_checks:
        _departure_checks.append(check)


def departure_checks_run(organisation: Organisation) -> None:
    for check in _departure_checks:
        check(organisation)


def departure_handler_register(handler: DepartureHandler) -> None:
    if handler not in _departure_handlers:
        _departure_handlers.append(handler)


def member_departed_locked(organisation: Organisation, user: User) -> None:
    for handler in _departure_handlers:
        handler(organisation, user)


def join_check_register(check: JoinCheck) -> None:
    if check not in _join_checks:
        _join_checks.append(check)


def join_checks_run(organisation: Organisation, people: int) -> None:
    for check in _join_checks:
        check(organisation, people)
