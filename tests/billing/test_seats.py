"""Seats through the real services and the emulator: added at once with the previewed
proration, never below the seats in use (409)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.billing.test_account import _call
from tests.billing.test_plan_changes import DAY, _advance, _subscribe
from tests.entitlements.conftest import Api

pytestmark = pytest.mark.integration


def _seats(api: Api, customer: str) -> int:
    sub = api.deps.subscriptions.get(api.tenant_id, customer)
    assert sub is not None and sub.stripe_subscription_id
    found = api.stripe.client().v1.subscriptions.retrieve(sub.stripe_subscription_id)
    return int(found["items"].data[0].quantity)


def _post(api: Api, path: str, body: dict[str, Any]) -> Any:
    return _call(api, "POST", path, body)


def test_added_seats_charge_their_preview_and_apply_at_once(api: Api) -> None:
    _subscribe(api, "u1", "basic")
    _advance(api, 9 * DAY)
    preview = _post(api, "/v1/customers/u1/seats/preview", {"seats": 4, "in_use": 1})
    assert preview.status_code == 200, preview.text
    shown = preview.json()
    assert (shown["seats"], shown["current"]) == (4, 1)
    due = shown["due_today"]
    assert due["amount_due"] > 0 and all(line["proration"] for line in due["lines"])
    assert shown["next_invoice"]["date"] > shown["proration_date"]
    _advance(api, DAY)
    body = {"seats": 4, "in_use": 1, "proration_date": shown["proration_date"]}
    changed = _post(api, "/v1/customers/u1/seats", body)
    assert changed.status_code == 200, changed.text
    assert (changed.json()["seats"], changed.json()["previous"]) == (4, 1)
    assert changed.json()["invoice"]["amount_due"] == due["amount_due"]
    assert _seats(api, "u1") == 4


def test_seats_never_go_below_those_in_use(api: Api) -> None:
    _subscribe(api, "u2", "basic")
    assert _post(api, "/v1/customers/u2/seats", {"seats": 6, "in_use": 1}).status_code == 200
    for path in ("/v1/customers/u2/seats/preview", "/v1/customers/u2/seats"):
        refused = _post(api, path, {"seats": 3, "in_use": 5})
        assert refused.status_code == 409, refused.text
        assert refused.json()["message"] == (
            "3 seats is below the 5 seats in use; free seats first"
        )
    assert _seats(api, "u2") == 6
    fewer = _post(api, "/v1/customers/u2/seats", {"seats": 5, "in_use": 5})
    assert fewer.status_code == 200 and fewer.json()["invoice"] is None
    assert _seats(api, "u2") == 5


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"seats": 0, "in_use": 0}, "seats"),
        ({"seats": 2}, "in_use"),
        ({"seats": 2, "in_use": -1}, "in_use"),
        ({"seats": "two", "in_use": 1}, "seats"),
        ({"seats": 2, "in_use": 1, "proration_date": 1}, "proration_date"),
    ],
)
def test_bad_seat_input_is_a_422_naming_the_field(
    api: Api, body: dict[str, Any], field: str
) -> None:
    _subscribe(api, "u3", "basic")
    answer = _post(api, "/v1/customers/u3/seats", body)
    assert answer.status_code == 422, answer.text
    assert [e["field"] for e in answer.json()["errors"]] == [field]


def test_a_plan_without_seats_is_a_409(api: Api) -> None:
    _subscribe(api, "u4", "power")
    answer = _post(api, "/v1/customers/u4/seats", {"seats": 2, "in_use": 1})
    assert answer.status_code == 409 and "no seats feature" in answer.json()["message"]
