from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.legacy.conftest import INVALID, VALID
from tollgate.legacy.conflicts import dataset_check_database
from tollgate.legacy.validation import dataset_load

pytestmark = pytest.mark.django_db


def test_the_valid_sample_set_has_no_problems(catalog):
    dataset = dataset_load(VALID)
    assert [str(problem) for problem in dataset.problems] == []
    assert (len(dataset.users), len(dataset.subscriptions), len(dataset.payments)) == (6, 5, 10)
    assert dataset.payments_not_taken == 1  # the declined attempt moved no money


def test_a_number_with_a_fraction_is_read_as_dollars_when_exact_to_the_cent(catalog):
    amounts = {payment.legacy_id: payment.amount for payment in dataset_load(VALID).payments}
    assert amounts["1005"] == 900  # 9.00
    assert amounts["1007"] == 9000  # 90.00
    assert amounts["1001"] == 2900  # already cents


def test_every_problem_is_reported_with_its_file_record_and_legacy_id(catalog):
    dataset = dataset_load(INVALID)
    assert sorted(str(problem) for problem in dataset.problems) == sorted(
        [
            "plan_map.json:platinum (platinum): no Tollgate price has that plan, interval and "
            "currency",
            "users.json:1 (2): user 1 has the same email address",
            "users.json:2 (3): email is not a valid email address",
            "users.json:3 (4): created_at is missing",
            "users.json:4 (5): stripe_customer_id 'cust_5' is not a Stripe id of that kind",
            "users.json:5 (1): another user has this id",
            "users.json:6 (no id): is not a JSON object",
            "users.json:7 (8): created_at 'yesterday' is not an ISO 8601 date and time",
            "subscriptions.json:0 (201): plan 'gold' is not in the plan map",
            "subscriptions.json:1 (202): user 99 is not in users.json",
            "subscriptions.json:2 (203): status 'past_due': the old portal is still collecting a "
            "payment for it; import it once it is active or canceled",
            "subscriptions.json:3 (204): the current period is not one 1-month period of its "
            "billing anchor (2026-01-01); Tollgate's next period would not start where it ends",
            "subscriptions.json:4 (205): ended_at is missing (required when the status is "
            "canceled)",
            "subscriptions.json:5 (206): plan 'platinum' has a wrong entry in the plan map",
            "subscriptions.json:6 (207): its current period ended before now: export the data "
            "again right before the import",
            "subscriptions.json:8 (209): user 1 already has a live subscription (208); Tollgate "
            "keeps one per customer",
            "payments.json:0 (301): amount 19.999 is in major units but not a whole number of USD "
            "minor units; refused rather than rounded",
            "payments.json:1 (302): it was refunded (amount_refunded); refunds are not imported",
            "payments.json:2 (303): status 'processing': only settled payments are imported "
            "(succeeded, or one that moved no money)",
            "payments.json:3 (304): stripe_payment_intent_id is missing",
            "payments.json:4 (305): amount -500 is not above zero",
            "payments.json:5 (306): currency 'dollars' is not an ISO 4217 code",
            "payments.json:6 (307): user 3 has problems of its own and is not imported",
            "payments.json:7 (308): amount is missing (a whole number of minor units, e.g. cents)",
            "payments.json:9 (310): amount 12.5 is in major units but not a whole number of JPY "
            "minor units; refused rather than rounded",
        ]
    )
    users, subscriptions, payments = dataset.importable()
    assert [user.legacy_id for user in users] == ["1"]
    assert [s.legacy_id for s in subscriptions["1"]] == ["208"]
    assert [p.legacy_id for p in payments["1"]] == ["309"]


def test_missing_files_and_a_file_that_is_not_an_array_are_reported(catalog, tmp_path: Path):
    (tmp_path / "users.json").write_text(json.dumps({"users": []}))
    problems = [str(problem) for problem in dataset_load(tmp_path).problems]
    assert problems == [
        "plan_map.json:- (no id): the plan map is missing",
        "users.json:- (no id): must hold a JSON array of records",
        "subscriptions.json:- (no id): the file is missing",
        "payments.json:- (no id): the file is missing",
    ]


def test_an_email_or_stripe_id_tollgate_already_holds_is_a_problem(
    catalog, make_user, tmp_path: Path
):
    make_user(email="ANN@example.com")
    dataset = dataset_load(VALID)
    dataset_check_database(dataset)
    assert [str(problem) for problem in dataset.problems] == [
        "users.json:0 (1): a Tollgate account already has this email"
    ]
    # Ann's subscription and payments go with her.
    users, subscriptions, payments = dataset.importable()
    assert "1" not in {user.legacy_id for user in users}
    assert "1" not in subscriptions
    assert "1" not in payments


def test_a_plan_map_given_apart_replaces_the_one_in_the_directory(catalog, tmp_path: Path):
    data = tmp_path / "data"
    shutil.copytree(VALID, data)
    (data / "plan_map.json").unlink()
    dataset = dataset_load(data, plan_map=VALID / "plan_map.json")
    assert dataset.problems == []
