"""Review (races, round 9): combinations the earlier race tests leave out,
through real gunicorn workers on PostgreSQL. Admin stock adjustments racing
checkouts and cancels of one product; a product's delete racing checkouts,
cart adds and quantity changes, reviews, review edits and adjustments of it;
admin status moves racing each other and the owner's cancel; two
PaymentIntents' successes racing a cancel and the payment-timeout sweep;
the synchronous pay racing both. Each test computes the books from the
answers it got and checks the database against them.

Already covered elsewhere (not repeated here): one webhook, a cancel and the
payment-timeout sweep on one order (test_review_faults8), one user's racing
posts of one review (test_review_races), cancels racing `processing`
(test_review_orders8). The API has no account deletion."""

from __future__ import annotations

import itertools
import json
import random
from collections import Counter
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text

from app.extensions import db
from app.models import OrderStatus
from app.models.types import utcnow
from app.services.payment_timeouts import cancel_expired_orders
from app.services.workflow import can_move
from tests.helpers import (
    SHIPPING,
    VISA,
    auth,
    buyers_with_carts,
    fill_cart,
    place_order,
    race,
    scalar,
)
from tests.reviewing import give_order
from tests.test_integrity_races import postgres_only
from tests.test_payments_stripe import (  # noqa: F401 - fixtures
    deliver,
    signed,
    stripe_app,
    stripe_client,
    stripe_http,
    succeeded,
)
from tests.test_races import server  # noqa: F401 - the module's gunicorn, as test_races has it
from tests.test_review_payments8 import REFUNDED, _refund_calls

pytestmark = [pytest.mark.server, postgres_only]


def _stock(product_id: int) -> int:
    return scalar("SELECT stock FROM products WHERE id = :i", i=product_id)


def _fetch(db, sql: str, **params) -> list[tuple]:
    """The rows of one query, its transaction ended (the next read sees the
    workers' commits)."""
    rows = db.session.execute(text(sql), params).all()
    db.session.rollback()
    return [tuple(row) for row in rows]


def _ledger(db, product_id: int) -> list[tuple[int, int, str]]:
    return _fetch(
        db,
        "SELECT delta, stock_after, reason FROM stock_movements WHERE product_id = :p ORDER BY id",
        p=product_id,
    )


def _check_ledger(db, product_id: int) -> dict[str, int]:
    """The ledger's running sum is each row's stock_after, never below 0, and
    ends at the stock; returns the sum of the deltas by reason."""
    running, by_reason = 0, Counter()
    for n, (delta, after, reason) in enumerate(_ledger(db, product_id)):
        running += delta
        assert after == running >= 0, (product_id, n, delta, after, running)
        by_reason[reason] += delta
    assert running == _stock(product_id), (product_id, running)
    return by_reason


def _checkout(server, token) -> tuple[int, dict]:  # noqa: F811
    return server.request("POST", "/api/orders", SHIPPING, token)


def _place(server, token) -> dict:  # noqa: F811
    status, order = _checkout(server, token)
    assert status == 201, order
    return order


def _units(order: dict, product_id: int) -> int:
    return sum(i["quantity"] for i in order["items"] if i["product_id"] == product_id)


def _sweeper(app):
    """The payment-timeout sweep as of a day later, in an app context and a
    session of its own (a racer in another thread): the ids it cancelled."""

    def sweep():
        with app.app_context():
            try:
                return [o.id for o in cancel_expired_orders(now=utcnow() + timedelta(days=1))]
            finally:
                db.session.remove()

    return sweep


# --- adjustments racing checkouts and cancels of one product --------------------------


def test_adjustments_racing_checkouts_and_cancels_keep_the_books_exact(
    server,  # noqa: F811
    db,
    make_user,
    login,
    admin_token,
    make_product,
):
    rng = random.Random(9)
    for round_ in range(3):
        product = make_product(stock=20, low_stock_threshold=0)
        placers = buyers_with_carts(make_user, login, [(product, 2)], 6)
        placed = [(t, _place(server, t)) for t in placers]  # 12 units out: 8 left
        buyers = buyers_with_carts(make_user, login, [(product, 3)], 6)
        deltas = [-5, 4, -6, 7, -9, 2, -3]
        calls, kinds = [], []
        for n, (token, order) in enumerate(placed):
            who = token if n % 2 else admin_token
            path = f"/api/orders/{order['id']}/cancel"
            calls.append(lambda p=path, w=who: server.request("POST", p, None, w))
            kinds.append(("cancel", 2))
        for token in buyers:
            calls.append(lambda t=token: _checkout(server, t))
            kinds.append(("order", 3))
        for delta in deltas:
            body = {"delta": delta, "note": "recount"}
            path = f"/api/products/{product.id}/stock"
            calls.append(lambda b=body, p=path: server.request("POST", p, b, admin_token))
            kinds.append(("adjust", delta))
        order_ = list(range(len(calls)))
        rng.shuffle(order_)
        results = race([calls[i] for i in order_])
        results = [r for _, r in sorted(zip(order_, results, strict=True))]

        returned = sold = adjusted = 0
        for (kind, amount), (status, body) in zip(kinds, results, strict=True):
            if kind == "cancel":
                assert status == 200, (round_, body)
                returned += amount
            elif kind == "order":
                assert status in (201, 409), (round_, status, body)
                if status == 201:
                    assert _units(body, product.id) == amount
                    sold += amount
                else:
                    assert body["code"] == "out_of_stock", body
            else:
                assert status in (200, 409), (round_, status, body)
                if status == 200:
                    adjusted += amount
                else:
                    assert body["code"] == "insufficient_stock", body
                    assert 0 <= body["details"]["available"] < -amount, body
        expected = 8 + adjusted - sold + returned
        assert _stock(product.id) == expected >= 0, (round_, expected)
        by_reason = _check_ledger(db, product.id)
        assert by_reason == {
            "created": 20,
            "order": -(12 + sold),
            "cancel": returned,
            "adjustment": adjusted,
        }, (round_, by_reason)
        assert (
            scalar(
                "SELECT count(*) FROM orders o JOIN order_items i ON i.order_id = o.id "
                "WHERE o.status = 'pending' AND i.product_id = :p",
                p=product.id,
            )
            == sold // 3
        )


# --- a product's delete racing everything that writes about it -------------------------


def test_a_product_delete_racing_its_checkouts_carts_reviews_and_adjustments(
    server,  # noqa: F811
    db,
    make_user,
    login,
    admin_token,
    make_product,
):
    """Whatever came before the delete took effect whole, whatever came after
    is a 404, and nothing is half done: no cart holds the product, its stock
    is its first stock less what orders hold plus the adjustments answered
    200, its ledger says so, and its rating is exactly its reviews'."""
    for round_ in range(3):
        doomed, kept = make_product(stock=50), make_product(stock=50)
        checkers = buyers_with_carts(make_user, login, [(kept, 1), (doomed, 2)], 4)
        only = buyers_with_carts(make_user, login, [(doomed, 2)], 2)
        adders = [login(make_user())["access_token"] for _ in range(4)]
        changers = buyers_with_carts(make_user, login, [(kept, 1), (doomed, 1)], 3)
        change_ids = []
        for token in changers:
            status, cart = server.request("GET", "/api/cart", None, token)
            assert status == 200
            change_ids.append(next(i["id"] for i in cart["items"] if i["product_id"] == doomed.id))
        reviewers, editors, first_ratings = [], [], {}
        for n in range(7):
            user = make_user()
            give_order(user, doomed)
            token = login(user)["access_token"]
            if n < 3:
                path = f"/api/products/{doomed.id}/reviews"
                status, review = server.request("POST", path, {"rating": 1 + n}, token)
                assert status == 201, review
                editors.append((token, review["id"]))
                first_ratings[review["id"]] = 1 + n
            else:
                reviewers.append(token)

        calls, kinds = [], []
        for token in checkers:
            calls.append(lambda t=token: _checkout(server, t))
            kinds.append(("order", token))
        for token in only:
            calls.append(lambda t=token: _checkout(server, t))
            kinds.append(("only", token))
        for token in adders:
            body = {"product_id": doomed.id, "quantity": 2}
            calls.append(lambda t=token, b=body: server.request("POST", "/api/cart", b, t))
            kinds.append(("add", token))
        for token, item_id in zip(changers, change_ids, strict=True):
            path = f"/api/cart/{item_id}"
            calls.append(lambda t=token, p=path: server.request("PUT", p, {"quantity": 4}, t))
            kinds.append(("change", token))
        for n, token in enumerate(reviewers):
            path = f"/api/products/{doomed.id}/reviews"
            calls.append(
                lambda t=token, p=path, r=5 - n: server.request("POST", p, {"rating": r}, t)
            )
            kinds.append(("review", 5 - n))
        for token, review_id in editors:
            path = f"/api/reviews/{review_id}"
            calls.append(lambda t=token, p=path: server.request("PUT", p, {"rating": 5}, t))
            kinds.append(("edit", review_id))
        for delta in (3, -2):
            path = f"/api/products/{doomed.id}/stock"
            calls.append(
                lambda p=path, d=delta: server.request("POST", p, {"delta": d}, admin_token)
            )
            kinds.append(("adjust", delta))
        calls.append(
            lambda p=doomed.id: server.request("DELETE", f"/api/products/{p}", None, admin_token)
        )
        kinds.append(("delete", None))
        results = race(calls)

        sold = adjusted = 0
        ratings = dict(first_ratings)
        for (kind, what), (status, body) in zip(kinds, results, strict=True):
            if kind == "order":
                assert status == 201, (round_, body)
                assert _units(body, doomed.id) in (0, 2), body
                assert _units(body, kept.id) == 1, body
                sold += _units(body, doomed.id)
            elif kind == "only":  # its one line ordered, or swept out first
                assert status in (201, 409), (round_, status, body)
                if status == 201:
                    assert _units(body, doomed.id) == 2, body
                    sold += 2
                else:
                    assert body["code"] == "empty_cart", body
            elif kind in ("add", "change"):
                assert status in (200, 201, 404), (round_, kind, status, body)
                if status == 404:
                    assert body["code"] == "not_found", body
            elif kind == "review":
                assert status in (201, 404), (round_, status, body)
                if status == 201:
                    ratings[body["id"]] = what
            elif kind == "edit":
                assert status in (200, 404), (round_, status, body)
                if status == 200:
                    ratings[what] = 5
            elif kind == "adjust":
                assert status in (200, 404), (round_, status, body)
                adjusted += what if status == 200 else 0
            else:
                assert status == 204, (round_, body)

        assert server.request("GET", f"/api/products/{doomed.id}")[0] == 404
        assert scalar("SELECT count(*) FROM cart_items WHERE product_id = :p", p=doomed.id) == 0
        assert _stock(doomed.id) == 50 - sold + adjusted, (round_, sold, adjusted)
        by_reason = _check_ledger(db, doomed.id)
        assert by_reason == {
            "created": 50,
            **({"order": -sold} if sold else {}),
            **({"adjustment": adjusted} if adjusted or "adjustment" in by_reason else {}),
        }, (round_, by_reason)
        assert _stock(kept.id) == 50 - 4 == sum(_check_ledger(db, kept.id).values())
        [(count, total)] = _fetch(
            db, "SELECT rating_count, rating_sum FROM products WHERE id = :p", p=doomed.id
        )
        rows = dict(_fetch(db, "SELECT id, rating FROM reviews WHERE product_id = :p", p=doomed.id))
        assert rows == ratings, (round_, rows, ratings)
        assert (count, total) == (len(ratings), sum(ratings.values())), (round_, count, total)
        # Every cart that still has lines checks out (none holds the deleted product).
        for token in adders + changers + only:
            status, cart = server.request("GET", "/api/cart", None, token)
            assert all(i["product_id"] != doomed.id for i in cart["items"]), cart
            if cart["items"]:
                assert _checkout(server, token)[0] == 201


# --- admin status moves racing each other and the owner's cancel ----------------------

MOVES = {
    "pending": ["processing", "processing", "cancelled", "shipped"],
    "processing": ["shipped", "cancelled", "shipped", "cancelled", "delivered"],
    "shipped": ["delivered", "cancelled", "delivered", "processing"],
}


def _history(db, order_id: int) -> list[str]:
    sql = "SELECT status FROM order_status_history WHERE order_id = :i ORDER BY id"
    return [status for (status,) in _fetch(db, sql, i=order_id)]


@pytest.mark.parametrize(
    ("start", "paid"),
    [("pending", False), ("processing", False), ("processing", True), ("shipped", True)],
)
def test_admin_moves_racing_each_other_follow_the_workflow(
    server,  # noqa: F811
    db,
    make_user,
    login,
    admin_token,
    make_product,
    start,
    paid,
):
    """Two admins and the owner change one order's status at once: every
    answer is a 200 or a 409 `invalid_transition` (its `from` a status the
    order had), the 200s are exactly the history's new entries, each step
    of the history is a move the workflow allows, the stock comes back only
    if it ended cancelled, and a paid order cancelled is refunded once."""
    other_admin = login(make_user(admin=True))["access_token"]
    product = make_product(stock=30, price="12.50")
    for round_ in range(3):
        (token,) = buyers_with_carts(make_user, login, [(product, 2)], 1)
        order = _place(server, token)
        path = f"/api/orders/{order['id']}"
        if paid:
            status, body = server.request("POST", f"{path}/pay", VISA, token)
            assert status == 200, body
        walk = {"pending": [], "processing": ["processing"], "shipped": ["processing", "shipped"]}
        for status_ in walk[start]:
            if status_ == "processing" and paid:
                continue  # paying moved it there
            status, body = server.request("PUT", path, {"status": status_}, admin_token)
            assert status == 200, body
        before = _history(db, order["id"])
        assert before[-1] == start
        stock_before = _stock(product.id)

        calls = [
            lambda s=s, n=n, p=path: server.request(
                "PUT", p, {"status": s}, admin_token if n % 2 else other_admin
            )
            for n, s in enumerate(MOVES[start])
        ]
        calls.append(lambda p=path, t=token: server.request("POST", f"{p}/cancel", None, t))
        wanted = [*MOVES[start], "cancelled"]
        results = race(calls)

        history = _history(db, order["id"])
        assert history[: len(before)] == before, (round_, history)
        new = history[len(before) :]
        won = [w for w, (status, _) in zip(wanted, results, strict=True) if status == 200]
        assert sorted(won) == sorted(new), (round_, results, history)
        for status, body in results:
            assert status in (200, 409), (round_, status, body)
            if status == 409:
                assert body["code"] == "invalid_transition", body
                assert body["details"]["from"] in history, (body, history)
        for old, new_status in itertools.pairwise(history):
            assert can_move(old, new_status), (round_, history)
        final = scalar("SELECT status FROM orders WHERE id = :i", i=order["id"])
        assert final == history[-1], (round_, final, history)
        assert history.count(OrderStatus.CANCELLED.value) <= 1
        cancelled = final == "cancelled"
        assert _stock(product.id) == stock_before + (2 if cancelled else 0)
        assert sum(_check_ledger(db, product.id).values()) == _stock(product.id)
        payment = scalar("SELECT payment_status FROM orders WHERE id = :i", i=order["id"])
        refunds = scalar(
            "SELECT count(*) FROM payments WHERE order_id = :i AND status = 'refunded'",
            i=order["id"],
        )
        if paid:
            assert (payment, refunds) == (("refunded", 1) if cancelled else ("paid", 0))
        else:
            assert (payment, refunds) == ("unpaid", 0)
        status, shown = server.request("GET", path, None, token)
        assert shown["status"] == final
        assert [e["status"] for e in shown["status_history"]] == history
        assert Decimal(str(shown["total_amount"])) == Decimal("25.00")


# --- two PaymentIntents' successes, a cancel and the sweep on one order ----------------


def test_two_intents_a_cancel_and_the_sweep_at_once_give_each_charge_back_once(
    stripe_app,  # noqa: F811 - the imported fixture
    stripe_client,  # noqa: F811
    stripe_http,  # noqa: F811
    buyer,
    make_product,
):
    """The customer paid one order twice (two PaymentIntents succeed at
    Stripe) while they cancel it and the payment-timeout sweep looks at it.
    Whichever comes first, the order ends cancelled and refunded, each
    intent's charge is given back exactly once (money in equals money out),
    the stock comes back once, and redeliveries change nothing."""
    _, token = buyer
    product = make_product(stock=5, price="19.99")
    refund = (200, {**REFUNDED, "id": "re_race9"})
    sweep = _sweeper(stripe_app)
    for round_ in range(4):
        fill_cart(stripe_client, token, (product, 1))
        placed = place_order(stripe_client, token)
        assert placed.status_code == 201, placed.get_json()
        order_id = placed.get_json()["id"]
        stripe_http.requests.clear()
        stripe_http.answers = [refund] * 4  # two are used; more would be a double refund
        hooks = [
            succeeded(order_id, intent_id=f"pi_{x}_{order_id}", event_id=f"evt_{x}_{order_id}")
            for x in ("a", "b")
        ]

        def webhook(payload):
            return deliver(stripe_client, payload, signed(payload))

        def cancel(order_id=order_id):
            return stripe_client.post(f"/api/orders/{order_id}/cancel", headers=auth(token))

        calls = [lambda p=hooks[0]: webhook(p), lambda p=hooks[1]: webhook(p), cancel, sweep]
        if round_ % 2:
            calls.reverse()
        results = race(calls)
        if round_ % 2:
            results.reverse()
        hook_a, hook_b, cancelled, swept = results
        assert (hook_a.status_code, hook_b.status_code) == (200, 200), (
            hook_a.get_json(),
            hook_b.get_json(),
        )
        assert cancelled.status_code in (200, 409), cancelled.get_json()
        if cancelled.status_code == 409:
            assert cancelled.get_json()["code"] == "invalid_transition"
        assert swept in ([], [order_id])
        assert (cancelled.status_code == 200) != (swept == [order_id]), (cancelled, swept)
        [row] = _fetch(db, "SELECT status, payment_status FROM orders WHERE id = :i", i=order_id)
        assert row == ("cancelled", "refunded"), (round_, row)
        refunded = sorted(r["form"]["payment_intent"] for r in _refund_calls(stripe_http))
        assert refunded == [f"pi_a_{order_id}", f"pi_b_{order_id}"], (round_, refunded)
        assert all(r["form"]["amount"] == "1999" for r in _refund_calls(stripe_http))
        payments = _fetch(
            db,
            "SELECT intent_id, status, amount, amount_refunded FROM payments "
            "WHERE order_id = :i ORDER BY intent_id",
            i=order_id,
        )
        assert payments == [
            (f"pi_a_{order_id}", "refunded", 1999, 1999),
            (f"pi_b_{order_id}", "refunded", 1999, 1999),
        ], (round_, payments)
        assert _stock(product.id) == 5
        assert (
            scalar(
                "SELECT count(*) FROM order_status_history WHERE order_id = :i "
                "AND status = 'cancelled'",
                i=order_id,
            )
            == 1
        )
        # The customer hears of each charge given back once: the cancellation
        # email says what it refunded, the others are one per late charge.
        told = Counter()
        for topic, payload in _fetch(
            db,
            "SELECT topic, payload FROM outbox WHERE payload->'context'->'order'->>'id' = :o",
            o=str(order_id),
        ):
            payload = payload if isinstance(payload, dict) else json.loads(payload)
            given = payload["context"].get("refund")
            told[topic, None if given is None else str(given["amount"])] += 1
        cancel_mail = [k for k in told if k[0] == "order_cancelled"]
        assert len(cancel_mail) == 1 and told[cancel_mail[0]] == 1, (round_, told)
        back = (cancel_mail[0][1] is not None) + told["order_refunded", None]
        back += sum(n for (t, _), n in told.items() if t == "second_payment_refunded")
        assert back == 2, (round_, told)
        for payload in hooks:  # redeliveries
            assert webhook(payload).status_code == 200
        assert len(_refund_calls(stripe_http)) == 2
    assert sum(_check_ledger(db, product.id).values()) == 5


def test_a_pay_a_cancel_and_the_sweep_at_once_through_gunicorn_settle_once(
    app,
    server,  # noqa: F811
    db,
    make_user,
    login,
    make_product,
):
    """The synchronous pay (the test provider) races its owner's cancel and
    the payment-timeout sweep: one of them decides. Paid first, the cancel
    refunds it; cancelled first (by either), the pay is a 409. The order
    always ends cancelled, the stock back once, and money refunded exactly
    when it was taken."""
    product = make_product(stock=10, price="7.25")
    sweep = _sweeper(app)
    outcomes = Counter()
    for round_ in range(6):
        (token,) = buyers_with_carts(make_user, login, [(product, 3)], 1)
        order = _place(server, token)
        path = f"/api/orders/{order['id']}"
        calls = [
            lambda p=path, t=token: server.request("POST", f"{p}/pay", VISA, t),
            lambda p=path, t=token: server.request("POST", f"{p}/cancel", None, t),
            sweep,
        ]
        if round_ % 2:
            (swept, (cancelled, c_body), (paid, p_body)) = race(calls[::-1])
        else:
            ((paid, p_body), (cancelled, c_body), swept) = race(calls)
        assert paid in (200, 409) and cancelled in (200, 409), (p_body, c_body)
        for status, body in ((paid, p_body), (cancelled, c_body)):
            if status == 409:
                assert body["code"] == "invalid_transition", body
        assert swept in ([], [order["id"]])
        assert (cancelled == 200) + (swept == [order["id"]]) == 1, (c_body, swept)
        if paid == 200:
            assert cancelled == 200, c_body  # the sweep leaves a paid order alone
        [row] = _fetch(db, "SELECT status, payment_status FROM orders WHERE id = :i", i=order["id"])
        assert row == ("cancelled", "refunded" if paid == 200 else "unpaid"), round_
        payments = _fetch(
            db,
            "SELECT status, amount, amount_refunded FROM payments WHERE order_id = :i",
            i=order["id"],
        )
        assert payments == ([("refunded", 2175, 2175)] if paid == 200 else [])
        assert _stock(product.id) == 10
        outcomes["paid" if paid == 200 else "swept" if swept else "cancelled"] += 1
    assert sum(_check_ledger(db, product.id).values()) == 10
    assert sum(outcomes.values()) == 6
