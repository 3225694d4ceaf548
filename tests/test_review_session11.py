"""Findings of session 11 (the lead's own), each test failed before its fix."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text

from app.extensions import db
from app.models.types import utcnow
from tests.helpers import auth, order_for


def test_an_order_history_follows_the_workflow_when_app_clocks_disagree(
    client, buyer, admin_token, make_product
):
    """API.md, Orders: `status_history` is oldest first, and its last entry
    is the order's status. Each event's `at` is the clock of the app host that
    made the change; with several hosts one clock may run ahead of another.
    Here the "processing" event was written by a host an hour ahead, then "shipped"
    by one on time: ordered by `at`, the history read pending, shipped, processing
    (detail), and the list trimmed it at "shipped" (`_history_as_read`),
    losing "processing". The order of the changes is the order they committed in
    (each is a compare-and-set on the order row), which the events' ids
    follow."""
    user, token = buyer
    order = order_for(client, token, (make_product(stock=5), 1))
    admin = auth(admin_token)
    answer = client.put(f"/api/orders/{order['id']}", json={"status": "processing"}, headers=admin)
    assert answer.status_code == 200, answer.get_json()
    db.session.execute(
        text(
            "UPDATE order_status_history SET at = :at "
            "WHERE order_id = :id AND status = 'processing'"
        ),
        {"at": utcnow() + timedelta(hours=1), "id": order["id"]},
    )
    db.session.commit()
    answer = client.put(f"/api/orders/{order['id']}", json={"status": "shipped"}, headers=admin)
    assert answer.status_code == 200, answer.get_json()
    expected = ["pending", "processing", "shipped"]
    assert [e["status"] for e in answer.get_json()["status_history"]] == expected
    detail = client.get(f"/api/orders/{order['id']}", headers=auth(token)).get_json()
    assert [e["status"] for e in detail["status_history"]] == expected
    (listed,) = client.get("/api/orders", headers=auth(token)).get_json()["items"]
    assert [e["status"] for e in listed["status_history"]] == expected
    (as_admin_lists,) = client.get(f"/api/orders/user/{user.id}", headers=admin).get_json()["items"]
    assert [e["status"] for e in as_admin_lists["status_history"]] == expected
