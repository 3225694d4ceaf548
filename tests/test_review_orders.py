"""Review of cart, checkout, the order workflow, Idempotency-Key and stock
restoration (reviewer: orders). Each test fails on the current code."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import event

from app.extensions import db
from tests.helpers import DATABASE_URL, SHIPPING, auth, order_for, pay
from tests.live import gunicorn


def test_an_order_cancelled_while_the_list_reads_it_is_listed_whole(
    app, client, buyer, make_product
):
    """The same defect as the race below, made deterministic: the cancel (the
    app's own, through a second client in another thread) commits exactly
    between the list's statement that reads the orders and the one that
    reads their history (`_page_of_orders`' selectinload; each statement of
    a GET runs on its own, `app.db.begin_only_where_writes_may_happen`). The
    list then answers `"status": "pending"` with a history ending in
    `cancelled`: one order that contradicts itself."""
    _, token = buyer
    order = order_for(client, token, (make_product(stock=5), 1))
    cancelled = []

    def cancel_in_between(conn, cursor, statement, parameters, context, executemany):
        if cancelled or "FROM order_status_history" not in statement:
            return
        if threading.current_thread() is not threading.main_thread():
            return

        def cancel():
            with app.test_client() as other:
                answer = other.post(f"/api/orders/{order['id']}/cancel", headers=auth(token))
                cancelled.append(answer.status_code)

        worker = threading.Thread(target=cancel)
        worker.start()
        worker.join()

    event.listen(db.engine, "before_cursor_execute", cancel_in_between)
    try:
        listed = client.get("/api/orders", headers=auth(token))
    finally:
        event.remove(db.engine, "before_cursor_execute", cancel_in_between)
    assert cancelled == [200]
    (item,) = listed.get_json()["items"]
    history = [entry["status"] for entry in item["status_history"]]
    assert item["status"] == history[-1], (item["status"], history)


@pytest.mark.server
def test_an_order_listed_while_it_is_cancelled_is_never_torn(make_user, login, make_product):
    """API.md, Orders: an order is `{..., status, ..., status_history}` with
    `status_history` "oldest first", so its last entry is the order's status.

    GET /api/orders reads the page of orders and then their history in
    separate statements (`services.orders._page_of_orders`: selectinload), and
    a read request runs each statement on its own, in autocommit
    (`app.db.begin_only_where_writes_may_happen`): a cancel that commits
    between the two makes the list answer `"status": "pending"` with a
    history ending in `cancelled` (seen on SQLite and PostgreSQL, dozens of
    times in one run). GET /api/orders/<id> reads both in one statement and
    never tears."""
    product = make_product(stock=100_000)
    token = login(make_user())["access_token"]
    with gunicorn(DATABASE_URL, workers=2, threads=4) as server:
        ids = []
        for _ in range(50):
            added = server.request("POST", "/api/cart", {"product_id": product.id}, token)
            assert added[0] == 201, added
            status, order = server.request("POST", "/api/orders", SHIPPING, token)
            assert status == 201, order
            ids.append(order["id"])
        torn: list[tuple[int, str, list[str]]] = []
        done = threading.Event()

        def list_orders() -> None:
            while not done.is_set():
                status, page = server.request("GET", "/api/orders?per_page=100", None, token)
                assert status == 200, page
                for order in page["items"]:
                    history = [event["status"] for event in order["status_history"]]
                    if order["status"] != history[-1]:
                        torn.append((order["id"], order["status"], history))

        listers = [threading.Thread(target=list_orders) for _ in range(3)]
        for lister in listers:
            lister.start()
        try:
            for order_id in ids:
                status, body = server.request("POST", f"/api/orders/{order_id}/cancel", None, token)
                assert status == 200, body
        finally:
            done.set()
            for lister in listers:
                lister.join()
    assert torn == [], f"{len(torn)} torn answers, e.g. {torn[:3]}"


def test_the_cancel_answer_of_a_paid_order_is_the_order_as_stored(client, buyer, make_product):
    """API.md, Payments: "Cancelling a paid order refunds it in full:
    `payment_status` becomes `refunded`"; the 200 answer is the order.

    The cancel's answer carries the `updated_at` its status change set, but
    the refund then writes `payment_status` with an ORM-enabled UPDATE of
    `Order` (`services.payments._set_payment_status`, from
    `refund_if_paid`), which also applies the column's `onupdate=utcnow`: the
    stored `updated_at` moves on a few ms later, and a GET right after the
    cancel answers another `updated_at` than the cancel did (SQLite and
    PostgreSQL). An unpaid order's cancel answers what is stored."""
    _, token = buyer
    order = order_for(client, token, (make_product(stock=5), 2))
    assert pay(client, token, order["id"]).status_code == 200
    cancelled = client.post(f"/api/orders/{order['id']}/cancel", headers=auth(token))
    assert cancelled.status_code == 200, cancelled.get_json()
    assert cancelled.get_json()["payment_status"] == "refunded"
    stored = client.get(f"/api/orders/{order['id']}", headers=auth(token)).get_json()
    assert cancelled.get_json() == stored
