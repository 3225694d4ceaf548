"""Review of orders and inventory under concurrency and odd sequences
(session 15, reviewer: orders6). Each test failed on the code before its fix."""

from __future__ import annotations

import pytest

from app.models.product import MAX_STOCK
from tests.helpers import SHIPPING, add_to_cart, auth, scalar, start_up_error


def test_a_default_low_stock_threshold_past_what_a_product_takes_is_refused_at_start_up(
    tmp_path,
):
    """LOW_STOCK_THRESHOLD was read with a minimum and no maximum: a value an
    admin could never give a product (API: 0 to 1,000,000,000) started, and
    then every product created without a threshold got it: past INTEGER, a
    500 on every such POST /api/products on PostgreSQL (SQLite stored it);
    within INTEGER, an answer whose threshold a PUT of the same product
    refuses (422). Start-up now refuses it, naming the variable, as it does
    every other bounded setting."""
    error = start_up_error(tmp_path, LOW_STOCK_THRESHOLD=str(MAX_STOCK + 1))
    assert "LOW_STOCK_THRESHOLD" in error, error or "started"
    assert start_up_error(tmp_path, LOW_STOCK_THRESHOLD=str(MAX_STOCK)) == ""


def test_a_server_error_the_checkout_raises_is_not_replayed_to_its_retry(
    client, buyer, make_product, monkeypatch
):
    """The Idempotency-Key docstring says server errors are not stored, so a
    retry with the same key runs again; a 5xx raised as one of the app's own
    errors (ServerBusy, 503) was stored and replayed to every retry for the
    key's lifetime: the order could never be placed with that key. The fault
    is injected at the service's door; the database is real."""
    from app.errors import ServerBusy
    from app.services import orders

    _, token = buyer
    product = make_product(stock=3)
    add_to_cart(client, token, product.id, 1)
    real = orders.place_order
    calls = []

    def busy_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise ServerBusy("Too busy; try again in a moment")
        return real(*args, **kwargs)

    monkeypatch.setattr(orders, "place_order", busy_once)
    headers = {**auth(token), "Idempotency-Key": "retry-after-busy"}
    first = client.post("/api/orders", json=SHIPPING, headers=headers)
    assert first.status_code == 503, first.get_json()
    second = client.post("/api/orders", json=SHIPPING, headers=headers)
    assert second.status_code == 201, second.get_json()
    assert len(calls) == 2
    assert scalar("SELECT count(*) FROM orders") == 1


@pytest.mark.parametrize("character", ["\x1b", "\x07", "\x7f", "\x85"])
def test_addresses_and_ledger_notes_refuse_control_characters(
    client, buyer, admin_token, make_product, character
):
    """A shipping address or a stock note took terminal escapes and bells
    (ESC[2J in an address clears the screen of an admin reading the log or a
    label printer's input), where product names and reviews refuse them; line
    breaks and tabs stay an address's own."""
    _, token = buyer
    product = make_product(stock=5)
    add_to_cart(client, token, product.id, 1)
    bad = {"shipping_address": f"221B Baker{character}[2J Street"}
    refused = client.post("/api/orders", json=bad, headers=auth(token))
    assert refused.status_code == 422, refused.get_json()
    assert "shipping_address" in refused.get_json()["errors"]
    address = "221B Baker Street\n\tLondon"
    placed = client.post("/api/orders", json={"shipping_address": address}, headers=auth(token))
    assert placed.status_code == 201, placed.get_json()
    moved = client.put(f"/api/orders/{placed.get_json()['id']}", json=bad, headers=auth(token))
    assert moved.status_code == 422, moved.get_json()
    note = client.post(
        f"/api/products/{product.id}/stock",
        json={"delta": 1, "note": f"count{character}"},
        headers=auth(admin_token),
    )
    assert note.status_code == 422, note.get_json()
    assert scalar("SELECT stock FROM products WHERE id = :p", p=product.id) == 4
    assert scalar("SELECT shipping_address FROM orders") == address
