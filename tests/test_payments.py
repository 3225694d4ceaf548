"""Payments with the `test` provider, through the API (API.md, Payments)."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

import pytest
from sqlalchemy import select

from app.models import Payment
from app.utils.money import from_minor_units, to_minor_units
from tests.helpers import DATABASE_URL, VISA, auth, order_for, pay, race, scalar, stock
from tests.live import gunicorn

DECLINED = {"payment_method": "pm_card_chargeDeclined"}


def test_pay_moves_the_order_to_paid_and_processing(client, buyer, make_product):
    _, token = buyer
    product = make_product(price="19.99", stock=5)
    order = order_for(client, token, (product, 2))
    assert order["payment_status"] == "unpaid" and order["currency"] == "USD"

    response = pay(client, token, order["id"])

    assert response.status_code == 200, response.get_json()
    paid = response.get_json()
    assert paid["payment_status"] == "paid" and paid["status"] == "processing"
    assert [h["status"] for h in paid["status_history"]] == ["pending", "processing"]
    assert client.get(f"/api/orders/{order['id']}", headers=auth(token)).get_json() == paid
    assert scalar("SELECT amount FROM payments WHERE order_id = :o", o=order["id"]) == 3998
    assert scalar("SELECT status FROM payments WHERE order_id = :o", o=order["id"]) == "succeeded"
    assert stock(product) == 3


def test_a_declined_payment_is_a_402_and_changes_nothing(db, client, buyer, make_product):
    _, token = buyer
    product = make_product(stock=5)
    order = order_for(client, token, (product, 1))

    response = pay(client, token, order["id"], DECLINED)

    assert response.status_code == 402
    body = response.get_json()
    assert body["message"] and body["code"] == "payment_declined"
    after = client.get(f"/api/orders/{order['id']}", headers=auth(token)).get_json()
    assert after == order
    assert stock(product) == 4
    # The declined attempt is kept; the next attempt is number 2 and succeeds.
    assert pay(client, token, order["id"]).status_code == 200
    statuses = db.session.scalars(select(Payment.status).order_by(Payment.attempt)).all()
    assert statuses == ["failed", "succeeded"]


def test_paying_twice_is_a_409_already_paid(client, buyer, make_product):
    _, token = buyer
    order = order_for(client, token, (make_product(), 1))
    assert pay(client, token, order["id"]).status_code == 200

    response = pay(client, token, order["id"])

    assert response.status_code == 409
    assert response.get_json()["code"] == "already_paid"
    assert scalar("SELECT count(*) FROM payments") == 1


def test_paying_a_cancelled_order_is_a_409(client, buyer, make_product):
    _, token = buyer
    product = make_product(stock=3)
    order = order_for(client, token, (product, 1))
    assert client.post(f"/api/orders/{order['id']}/cancel", headers=auth(token)).status_code == 200

    response = pay(client, token, order["id"])

    assert response.status_code == 409
    assert response.get_json()["code"] == "invalid_transition"
    assert scalar("SELECT payment_status FROM orders WHERE id = :i", i=order["id"]) == "unpaid"
    assert scalar("SELECT count(*) FROM payments") == 0
    assert stock(product) == 3


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"payment_method": "pm_card_mastercard"}, "payment_method"),
        ({"payment_method": ""}, "payment_method"),
        ({}, "payment_method"),
        ({"payment_method": "pm_card_visa", "amount": 1}, "amount"),
    ],
)
def test_bad_payment_methods_are_422(client, buyer, make_product, body, field):
    _, token = buyer
    order = order_for(client, token, (make_product(), 1))
    response = pay(client, token, order["id"], body)
    assert response.status_code == 422
    assert field in response.get_json()["errors"]
    assert scalar("SELECT payment_status FROM orders") == "unpaid"


def test_only_the_owner_pays(client, buyer, make_user, login, make_product, admin_token):
    _, token = buyer
    order = order_for(client, token, (make_product(), 1))
    stranger = login(make_user())["access_token"]
    assert pay(client, stranger, order["id"]).status_code == 404
    assert pay(client, admin_token, order["id"]).status_code == 404
    assert client.post(f"/api/orders/{order['id']}/pay", json=VISA).status_code == 401
    assert pay(client, token, 999999).status_code == 404
    assert scalar("SELECT payment_status FROM orders") == "unpaid"


def test_an_admin_may_move_an_unpaid_order_along(client, buyer, make_product, admin_token):
    _, token = buyer
    order = order_for(client, token, (make_product(), 1))
    response = client.put(
        f"/api/orders/{order['id']}", json={"status": "processing"}, headers=auth(admin_token)
    )
    assert response.status_code == 200
    assert response.get_json()["payment_status"] == "unpaid"
    # Payment is for pending orders only.
    assert pay(client, token, order["id"]).status_code == 409


@pytest.mark.parametrize("how", ["cancel", "put"])
def test_cancelling_a_paid_order_refunds_it_and_restocks_once(client, buyer, make_product, how):
    _, token = buyer
    product = make_product(stock=4)
    order = order_for(client, token, (product, 3))
    assert pay(client, token, order["id"]).status_code == 200
    assert stock(product) == 1

    if how == "cancel":
        response = client.post(f"/api/orders/{order['id']}/cancel", headers=auth(token))
    else:
        response = client.put(
            f"/api/orders/{order['id']}", json={"status": "cancelled"}, headers=auth(token)
        )

    assert response.status_code == 200, response.get_json()
    cancelled = response.get_json()
    assert cancelled["status"] == "cancelled" and cancelled["payment_status"] == "refunded"
    assert stock(product) == 4
    assert scalar("SELECT status FROM payments") == "refunded"
    again = client.post(f"/api/orders/{order['id']}/cancel", headers=auth(token))
    assert again.status_code == 409
    assert stock(product) == 4
    assert scalar("SELECT payment_status FROM orders") == "refunded"


def test_the_cancellation_email_of_a_paid_order_names_the_refund(
    client, make_user, login, make_product, smtp_server, deliver_outbox
):
    user = make_user()
    token = login(user)["access_token"]
    order = order_for(client, token, (make_product(price="19.99"), 2))
    assert pay(client, token, order["id"]).status_code == 200
    assert client.post(f"/api/orders/{order['id']}/cancel", headers=auth(token)).status_code == 200
    deliver_outbox()
    texts = [m.get_body(("plain",)).get_content() for m in smtp_server.messages]
    assert len(texts) == 3  # placed, processing (paid), cancelled
    [cancelled] = [text for text in texts if "cancelled" in text]
    assert "Refunded" in cancelled and "39.98" in cancelled
    assert all(m["X-Rcpt-To"] == user.email for m in smtp_server.messages)


def test_cancelling_an_unpaid_order_refunds_nothing(client, buyer, make_product):
    _, token = buyer
    product = make_product(stock=2)
    order = order_for(client, token, (product, 2))
    response = client.post(f"/api/orders/{order['id']}/cancel", headers=auth(token))
    assert response.status_code == 200
    assert response.get_json()["payment_status"] == "unpaid"
    assert stock(product) == 2


def test_the_order_currency_follows_shop_currency(make_app, make_user, login, make_product):
    other = make_app("testing", {"SHOP_CURRENCY": "JPY"})
    client = other.test_client()
    user = make_user()
    token = login(user)["access_token"]
    order = order_for(client, token, (make_product(price="1500.00"), 2))
    assert order["currency"] == "JPY"
    assert pay(client, token, order["id"]).status_code == 200
    assert scalar("SELECT amount FROM payments") == 3000
    assert scalar("SELECT currency FROM payments") == "JPY"


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        ("699.99", "USD", 69999),
        ("0.10", "usd", 10),
        ("1500", "JPY", 1500),
        ("1500.00", "JPY", 1500),
        ("12.345", "KWD", 12345),
        ("99999999999.99", "EUR", 9999999999999),
    ],
)
def test_minor_units_are_exact(amount, currency, minor):
    assert to_minor_units(Decimal(amount), currency) == minor
    assert from_minor_units(minor, currency) == Decimal(amount)


def test_minor_units_refuse_what_cannot_be_charged_exactly():
    with pytest.raises(ValueError):
        to_minor_units(Decimal("0.50"), "JPY")
    with pytest.raises(ValueError):
        to_minor_units(Decimal("0.005"), "USD")
    with pytest.raises(TypeError):
        to_minor_units(0.1, "USD")  # type: ignore[arg-type]


# --- races through real server processes ------------------------------------------


@pytest.fixture(scope="module")
def server(app):
    with gunicorn(DATABASE_URL, workers=3, threads=4) as live:
        yield live


@pytest.mark.server
def test_racing_pays_charge_once(server, client, buyer, make_product):
    _, token = buyer
    product = make_product(stock=10)
    orders = [order_for(client, token, (product, 1)) for _ in range(2)]
    calls = [
        lambda o=o: server.request("POST", f"/api/orders/{o['id']}/pay", VISA, token)
        for o in orders
        for _ in range(6)
    ]
    results = race(calls)
    statuses = Counter(status for status, _ in results)
    assert statuses == {200: 2, 409: 10}, statuses
    assert all(body["code"] == "already_paid" for s, body in results if s == 409)
    for order in orders:
        assert scalar("SELECT count(*) FROM payments WHERE order_id = :o", o=order["id"]) == 1
        assert (
            scalar(
                "SELECT count(*) FROM order_status_history WHERE order_id = :o "
                "AND status = 'processing'",
                o=order["id"],
            )
            == 1
        )
    assert scalar("SELECT count(*) FROM orders WHERE payment_status = 'paid'") == 2


@pytest.mark.server
def test_racing_cancels_of_a_paid_order_refund_and_restock_once(
    server, client, buyer, make_product
):
    _, token = buyer
    product = make_product(stock=10)
    order = order_for(client, token, (product, 4))
    assert pay(client, token, order["id"]).status_code == 200
    results = race(
        [lambda: server.request("POST", f"/api/orders/{order['id']}/cancel", None, token)] * 8
    )
    assert Counter(status for status, _ in results) == {200: 1, 409: 7}
    assert stock(product) == 10
    assert scalar("SELECT payment_status FROM orders") == "refunded"
    assert scalar("SELECT count(*) FROM order_status_history WHERE status = 'cancelled'") == 1


@pytest.mark.server
def test_a_pay_racing_a_cancel_ends_consistent(server, client, buyer, make_product):
    """The pay first (paid and processing, or then cancelled and refunded) or the
    cancel first (cancelled, unpaid): never a cancelled order that kept the
    money, and the stock back exactly for the cancelled ones."""
    _, token = buyer
    product = make_product(stock=20)
    orders = [order_for(client, token, (product, 1)) for _ in range(5)]
    calls = []
    for o in orders:
        calls.append(lambda o=o: server.request("POST", f"/api/orders/{o['id']}/pay", VISA, token))
        calls.append(
            lambda o=o: server.request("POST", f"/api/orders/{o['id']}/cancel", None, token)
        )
    race(calls)
    states = Counter()
    for o in orders:
        status = scalar("SELECT status FROM orders WHERE id = :i", i=o["id"])
        paid = scalar("SELECT payment_status FROM orders WHERE id = :i", i=o["id"])
        assert (status, paid) in {
            ("processing", "paid"),
            ("cancelled", "unpaid"),
            ("cancelled", "refunded"),
        }, (status, paid)
        states[status] += 1
    assert stock(product) == 20 - states["processing"]
