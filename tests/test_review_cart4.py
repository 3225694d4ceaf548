"""Cart, product administration and reviews, found by review (session 14):
each test failed on the code before its fix (its docstring says how)."""

from __future__ import annotations

import pytest

from tests.helpers import DATABASE_URL, PASSWORD, auth, scalar
from tests.live import gunicorn
from tests.reviewing import give_order
from tests.test_integrity_races import one_after_another, postgres_only, product_locked

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def server(app):
    with gunicorn(DATABASE_URL, workers=2, threads=4) as live:
        yield live


@postgres_only
@pytest.mark.parametrize("method", ["PUT", "DELETE"])
def test_a_review_change_queued_behind_a_product_delete_is_a_404(
    server, db, make_user, login, make_product, method
):
    """API.md: "A deleted product's reviews are a 404". An edit of the
    rating or a delete of a review read the product unlocked (live: its
    delete had not committed) and then waited for the product's row only
    to move its rating: once the delete committed, it wrote the rating
    onto the deleted product and answered 200 / 204 for a review no one
    can see any more. It now locks the product first, as a new review does
    (docs/ARCHITECTURE.md), and finds it gone."""
    admin = login(make_user(admin=True))["access_token"]
    product = make_product()
    buyer = make_user()
    give_order(buyer, product)
    token = login(buyer)["access_token"]
    status, review = server.request(
        "POST", f"/api/products/{product.id}/reviews", {"rating": 5}, token
    )
    assert status == 201, review
    body = {"rating": 1} if method == "PUT" else None
    (delete_status, _), (change_status, changed) = one_after_another(
        product_locked(db, product.id),
        lambda: server.request("DELETE", f"/api/products/{product.id}", None, admin),
        lambda: server.request(method, f"/api/reviews/{review['id']}", body, token),
    )
    assert (delete_status, change_status) == (204, 404), changed
    assert scalar("SELECT rating FROM reviews WHERE id = :i", i=review["id"]) == 5
    assert scalar("SELECT rating_count FROM products WHERE id = :i", i=product.id) == 1
    assert scalar("SELECT rating_sum FROM products WHERE id = :i", i=product.id) == 5


def test_a_login_with_rate_limits_off_logs_no_storage_failure(client, make_user, caplog):
    """With RATELIMIT_ENABLED off (the testing default, an operator's choice
    too), every login's window reading asked Flask-Limiter for a storage it
    never made (`assert limiter`) and logged "could not read a rate limit's
    window" with a traceback, the warning meant for a storage that is down
    (found by the cart/products/reviews review, session 13)."""
    import logging

    user = make_user()
    with caplog.at_level(logging.WARNING):
        response = client.post("/api/auth/login", json={"email": user.email, "password": "x"})
        assert response.status_code == 401
        response = client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
        assert response.status_code == 200
    assert not [r for r in caplog.records if "rate limit's window" in r.getMessage()]


def test_a_removed_lines_id_never_names_a_later_line(client, buyer, make_product):
    """On SQLite a new cart line took the highest rowid + 1: remove the
    newest line, add another product, and the new line had the removed
    line's id, so a retried DELETE (a flaky network, an offline queue)
    answered 200 and emptied the new line, and a retried PUT changed it.
    The id of a removed line is a 404 for good, on either database."""
    _, token = buyer
    first, second = make_product(stock=5), make_product(stock=5)
    added = client.post(
        "/api/cart", json={"product_id": first.id, "quantity": 1}, headers=auth(token)
    )
    assert added.status_code == 201, added.get_json()
    [line] = added.get_json()["items"]
    assert client.delete(f"/api/cart/{line['id']}", headers=auth(token)).status_code == 200
    again = client.post(
        "/api/cart", json={"product_id": second.id, "quantity": 2}, headers=auth(token)
    )
    [new_line] = again.get_json()["items"]
    assert new_line["id"] != line["id"]
    assert client.delete(f"/api/cart/{line['id']}", headers=auth(token)).status_code == 404
    put = client.put(f"/api/cart/{line['id']}", json={"quantity": 1}, headers=auth(token))
    assert put.status_code == 404
    assert client.get("/api/cart", headers=auth(token)).get_json()["items"] == [new_line]
