"""The simulated people of bench/load.py (run by locust in processes of its own; never imported
where Django runs, since locust patches the standard library with gevent).

Each simulated person waits 8 to 12 s between two actions (``between(8, 12)``: 10 s on average,
so that people spawned together drift apart), and each action is, by weight:

    60%  an entitlement check with the operator's API key, for one of the accounts' customers
    20%  the pricing page, anonymous
    15%  the billing page, signed in
     5%  one of: a sign-in (GET the form, POST it with its CSRF token: two requests), the receipt
         of a paid invoice, the preview of a change to another price (1/3 each)

Every request carries the headers of the TLS-terminating proxy in front (X-Forwarded-Proto, and an
X-Forwarded-For address): each simulated person has an address of its own in 10.0.0.0/8, so that
the per-address sign-in limits count one person, as they would in production; the signed-in pages
use the address of their account's session (a session is shared by the people given the same
account, and moving between addresses would make Tollgate record the session's activity on every
request). Cookies are sent by hand: the production profile's cookies are ``Secure`` and
``__Host-`` prefixed, which a cookie jar keeps off a plain-HTTP connection.

Each action has a tag (check, pricing, billing, receipt, change, sign-in): bench/load.py --only
runs the given ones alone, with the same weights among them.

The plan (API key, accounts with their session cookies, customers, invoices, price) comes from the
JSON file named by TOLLGATE_LOAD_PLAN, written by bench/load.py. Every request is also written,
by each locust process, to a file in the directory TOLLGATE_LOAD_RECORDS (one line: when it was
sent, how long it took, whether it failed, its name), and the process that spawns the users notes
there when all of them run (``measured_from``): bench/load.py computes its figures from these
exact times, over the requests sent from then on (locust's own percentiles are rounded).
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import os
import re
import time
from http.cookiejar import DefaultCookiePolicy
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from locust import between, events, tag, task
from locust.contrib.fasthttp import FastHttpUser
from locust.runners import WorkerRunner

with open(os.environ["TOLLGATE_LOAD_PLAN"], encoding="utf-8") as _file:
    PLAN: dict[str, Any] = json.load(_file)

CHECK_PATH = "/api/v1/entitlements/check"
LOGIN_PATH = "/accounts/login/"
_CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
_counter = itertools.count()
# 10.0.0.0/8 split among the load-generating processes: 2**20 addresses each.
_ADDRESSES = int(ipaddress.IPv4Address("10.0.0.0"))


RECORDS = Path(os.environ["TOLLGATE_LOAD_RECORDS"])
_records: list[str] = []
_environment: list[Any] = []


def _flush(**kwargs: Any) -> None:
    if _records:
        with (RECORDS / f"{os.getpid()}.txt").open("a", encoding="utf-8") as file:
            file.writelines(_records)
        _records.clear()


@events.init.add_listener
def _on_init(environment: Any, **kwargs: Any) -> None:
    _environment.append(environment)


@events.request.add_listener
def _on_request(
    name: str, response_time: float, exception: BaseException | None = None, **kwargs: Any
) -> None:
    sent = time.time() - response_time / 1000
    _records.append(f"{sent:.4f} {response_time:.2f} {0 if exception is None else 1} {name}\n")
    if len(_records) >= 500:
        _flush()


@events.spawning_complete.add_listener
def _on_spawned(user_count: int, **kwargs: Any) -> None:
    if _environment and not isinstance(_environment[0].runner, WorkerRunner):
        (RECORDS / "measured_from").write_text(f"{time.time():.4f} {user_count}\n")


events.test_stop.add_listener(_flush)
events.quitting.add_listener(_flush)


def _cookie(set_cookie_headers: list[str], name: str) -> str | None:
    for header in set_cookie_headers:
        first = header.split(";", 1)[0]
        key, _, value = first.partition("=")
        if key.strip() == name and value:
            return value.strip()
    return None


def _allowed(text: str | None) -> bool:
    try:
        return json.loads(text or "").get("allowed") is True
    except (ValueError, AttributeError):
        return False


class Person(FastHttpUser):
    wait_time = between(8, 12)
    network_timeout = 30.0
    connection_timeout = 10.0
    max_redirects = 0
    host = PLAN["base_url"]

    def on_start(self) -> None:
        number = next(_counter)
        worker = max(0, int(getattr(self.environment.runner, "worker_index", 0) or 0))
        self.client.cookiejar.set_policy(DefaultCookiePolicy(allowed_domains=[]))  # by hand
        address = ipaddress.IPv4Address(_ADDRESSES + (worker % 8) * 2**20 + number % 2**20)
        proxy = {"Host": PLAN["host"], "X-Forwarded-Proto": PLAN["scheme"]}
        self.anonymous = proxy | {"X-Forwarded-For": str(address)}
        accounts = PLAN["accounts"]
        self.account = accounts[(number + worker * 7919) % len(accounts)]
        self.signed_in = proxy | {
            "X-Forwarded-For": self.account["address"],
            "Cookie": f"{PLAN['session_cookie']}={self.account['session']}",
        }
        self.check_body = json.dumps(
            {"customer": self.account["customer"], "feature": PLAN["feature"], "quantity": 1}
        )
        self.api = self.anonymous | {
            "Authorization": f"Bearer {PLAN['api_key']}",
            "Content-Type": "application/json",
        }

    def _page(self, path: str, headers: dict[str, str], name: str, marker: str) -> None:
        with self.client.get(
            path, headers=headers, name=name, allow_redirects=False, catch_response=True
        ) as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}")
            elif marker not in (response.text or ""):
                response.failure(f"the page does not say {marker!r}")

    @tag("check")
    @task(180)
    def entitlement_check(self) -> None:
        with self.client.post(
            CHECK_PATH, data=self.check_body, headers=self.api, name="check",
            catch_response=True,
        ) as response:  # fmt: skip
            if response.status_code != 200:
                response.failure(f"status {response.status_code}")
            elif not _allowed(response.text):
                response.failure(f"the check did not allow: {(response.text or '')[:200]}")

    @tag("pricing")
    @task(60)
    def pricing(self) -> None:
        self._page("/pricing/", self.anonymous, "pricing", PLAN["pricing_marker"])

    @tag("billing")
    @task(45)
    def billing(self) -> None:
        self._page("/billing/", self.signed_in, "billing", PLAN["billing_marker"])

    @tag("receipt")
    @task(5)
    def receipt(self) -> None:
        path = f"/billing/invoices/{self.account['invoice']}/"
        self._page(path, self.signed_in, "receipt", self.account["invoice_number"])

    @tag("change")
    @task(5)
    def change_preview(self) -> None:
        path = f"/billing/change/?price={PLAN['other_price']}"
        self._page(path, self.signed_in, "change preview", PLAN["change_marker"])

    @tag("sign-in")
    @task(5)
    def sign_in(self) -> None:
        csrf_cookie = PLAN["csrf_cookie"]
        with self.client.get(
            LOGIN_PATH, headers=self.anonymous, name="sign-in form", allow_redirects=False,
            catch_response=True,
        ) as form:  # fmt: skip
            token = _CSRF_FIELD.search(form.text or "") if form.status_code == 200 else None
            cookie = _cookie(form.headers.get_all("Set-Cookie") or [], csrf_cookie)
            if token is None or cookie is None:
                form.failure(f"status {form.status_code}, no CSRF token or cookie")
                return
        origin = f"{PLAN['scheme']}://{PLAN['host']}"
        headers = self.anonymous | {
            "Cookie": f"{csrf_cookie}={cookie}",
            "Origin": origin,
            "Referer": origin + LOGIN_PATH,
            "Content-Type": "application/x-www-form-urlencoded",
        }
        body = urlencode(
            {
                "csrfmiddlewaretoken": token.group(1),
                "login": self.account["email"],
                "password": PLAN["password"],
            }
        )
        with self.client.post(
            LOGIN_PATH, data=body, headers=headers, name="sign-in", allow_redirects=False,
            catch_response=True,
        ) as response:  # fmt: skip
            location = response.headers.get("Location") or ""
            session = _cookie(response.headers.get_all("Set-Cookie") or [], PLAN["session_cookie"])
            if response.status_code != 302 or LOGIN_PATH in location or session is None:
                response.failure(f"status {response.status_code} to {location!r}, no session")
