"""Findings of session 11 (the lead's own), each test failed before its fix."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text

from app.extensions import db
from app.models.types import utcnow
from tests.helpers import PASSWORD, auth, order_for


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


def test_orders_the_timeout_cannot_cancel_do_not_keep_it_from_later_ones(
    app, db, client, buyer, make_product, monkeypatch
):
    """API.md, Payments: a pending, unpaid order older than the timeout "is
    cancelled by the worker and its stock restored". The sweep took the
    first BATCH (500) expired orders by id each time: as many that it could
    not cancel (a restock past the column's maximum, 409 stock_limit) kept
    every later order from ever being cancelled (the contract review's
    unconfirmed finding). Here with a batch of 2."""
    from app.services import payment_timeouts

    monkeypatch.setattr(payment_timeouts, "BATCH", 2)
    _, token = buyer
    stuck = make_product(stock=10)
    stuck_orders = [order_for(client, token, (stuck, 1))["id"] for _ in range(2)]
    later = order_for(client, token, (make_product(stock=5), 1))["id"]
    old = utcnow() - timedelta(seconds=app.config["ORDER_PAYMENT_TIMEOUT"] + 60)
    db.session.execute(text("UPDATE orders SET created_at = :at"), {"at": old})
    # A stock at the column's maximum: putting a unit back is a stock_limit.
    db.session.execute(
        text("UPDATE products SET stock = 2147483647 WHERE id = :id"), {"id": stuck.id}
    )
    db.session.commit()
    cancelled = payment_timeouts.cancel_expired_orders()
    db.session.commit()
    assert [order.id for order in cancelled] == [later]
    statuses = dict(db.session.execute(text("SELECT id, status FROM orders")).all())
    assert statuses == {stuck_orders[0]: "pending", stuck_orders[1]: "pending", later: "cancelled"}


def test_a_new_product_was_created_and_updated_at_one_instant(client, admin_token):
    """A product nobody has changed shows `updated_at` equal to `created_at`
    (as a review does): two calls of the clock made them microseconds apart
    (the contract review's unconfirmed finding)."""
    body = {"name": "Instant Lamp", "price": "9.99", "stock": 3, "category": "Home"}
    answer = client.post("/api/products", json=body, headers=auth(admin_token))
    assert answer.status_code == 201, answer.get_json()
    created = answer.get_json()
    assert created["updated_at"] == created["created_at"]
    stored = client.get(f"/api/products/{created['id']}").get_json()
    assert stored["updated_at"] == stored["created_at"] == created["created_at"]


def test_a_login_hashes_a_password_of_an_earlier_method_anew(app, client, make_user):
    """PASSWORD_HASH_METHOD raised (a costlier hash) reached only passwords
    set after it: an account's hash stayed the old one for ever, and its
    faster check told a known account from an unknown one (the auth review's
    note). A successful login hashes it anew with the current method; a
    wrong password changes nothing."""
    user = make_user()
    old = db.session.scalar(text("SELECT password_hash FROM users WHERE id = :i"), {"i": user.id})
    method = app.config["PASSWORD_HASH_METHOD"]
    app.config["PASSWORD_HASH_METHOD"] = "pbkdf2:sha256:1001"
    try:
        wrong = client.post("/api/auth/login", json={"email": user.email, "password": "x" * 9})
        assert wrong.status_code == 401
        stored = text("SELECT password_hash FROM users WHERE id = :i")
        assert db.session.scalar(stored, {"i": user.id}) == old
        db.session.remove()
        right = client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
        assert right.status_code == 200, right.get_json()
        anew = db.session.scalar(stored, {"i": user.id})
        assert anew.startswith("pbkdf2:sha256:1001$") and anew != old
        db.session.remove()
        again = client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
        assert again.status_code == 200
        assert db.session.scalar(stored, {"i": user.id}) == anew  # not hashed at every login
    finally:
        app.config["PASSWORD_HASH_METHOD"] = method
