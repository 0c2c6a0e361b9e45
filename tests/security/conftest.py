from __future__ import annotations

import re
from typing import Any

from django.test import Client

from tests.conftest import STRONG_PASSWORD

# Frames of a Python traceback, Django internals and settings names: none may reach a visitor.
INTERNALS = re.compile(
    r"Traceback|File \"|site-packages|django\.|tollgate\.|SECRET_KEY|settings\.py|Exception",
)


def login(client: Client, email: str, password: str = STRONG_PASSWORD) -> Any:
    return client.post("/accounts/login/", {"login": email, "password": password})


def client_from(ip: str, **kwargs: Any) -> Client:
    return Client(REMOTE_ADDR=ip, **kwargs)
