import os

import requests
from standardwebhooks.webhooks import Webhook

TOLLGATE = os.environ.get("TOLLGATE_URL", "https://billing.example.com") + "/api/v1"
HEADERS = {"Authorization": f"Bearer {os.environ['TOLLGATE_API_KEY']}"}


def may_create_project(user_id: str) -> bool:
    answer = requests.post(
        f"{TOLLGATE}/entitlements/check",
        json={"customer": user_id, "feature": "projects", "quantity": 1},
        headers=HEADERS,
        timeout=2,
    ).json()
    return answer["allowed"]  # answer["upgrade"] names the plan that would allow it


def project_created(user_id: str, project_id: str, when: str) -> None:
    event = {
        "id": f"project-{project_id}",  # a resend of the same id is counted once
        "customer": user_id,
        "metric": "projects",
        "quantity": 1,
        "timestamp": when,  # ISO 8601 with a time zone
    }
    requests.post(
        f"{TOLLGATE}/usage",
        json={"events": [event]},
        headers={**HEADERS, "Idempotency-Key": f"project-{project_id}"},
        timeout=5,
    ).raise_for_status()


def tollgate_webhook(body: bytes, headers: dict[str, str]) -> dict:
    """In your webhook view: raises unless Tollgate signed it. Dedupe on headers["webhook-id"]."""
    return Webhook(os.environ["TOLLGATE_WEBHOOK_SECRET"]).verify(body, headers)
