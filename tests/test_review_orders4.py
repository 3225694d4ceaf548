"""Review of orders, checkout, payments and inventory (session 13, reviewer:
orders). Each test fails on the code before its fix."""

from __future__ import annotations

from tests.helpers import auth, fill_cart, order_for, place_order, scalar, stock


def _statements_of_a_cancel(client, token, count_queries, make_product, lines: int) -> int:
    products = [make_product(stock=5) for _ in range(lines)]
    order = order_for(client, token, *[(product, 2) for product in products])
    with count_queries() as q:
        response = client.post(f"/api/orders/{order['id']}/cancel", headers=auth(token))
    assert response.status_code == 200, response.get_json()
    assert [stock(product) for product in products] == [5] * lines
    return q.count


def test_a_cancel_puts_its_lines_back_in_statements_that_do_not_grow_with_them(
    client, buyer, make_product, count_queries
):
    """A checkout takes every line's stock in one guarded UPDATE and writes
    their ledger rows in one INSERT; a cancel (by its owner, an admin or the
    payment timeout) put each line back with an UPDATE and an INSERT of its
    own: 9 statements for one line, 47 for twenty, each a round trip on
    PostgreSQL while the order's and the products' rows stay locked."""
    _, token = buyer
    one = _statements_of_a_cancel(client, token, count_queries, make_product, 1)
    twenty = _statements_of_a_cancel(client, token, count_queries, make_product, 20)
    assert one == twenty, (one, twenty)
    # The ledger still has one `cancel` row per line, with the stock it left.
    rows = scalar("SELECT count(*) FROM stock_movements WHERE reason = 'cancel'")
    after = scalar(
        "SELECT count(*) FROM stock_movements WHERE reason = 'cancel' AND stock_after = 5"
    )
    assert rows == after == 21


def _statements_of_a_checkout_alerting(client, make_user, login, make_product, count_queries, n):
    """Statements of a checkout of four lines that takes `n` of their
    products below their threshold, with `n` admins to tell."""
    for _ in range(n):
        make_user(admin=True)
    _, token = _buyer(make_user, login)
    products = [make_product(stock=6 if k < n else 100, low_stock_threshold=5) for k in range(4)]
    fill_cart(client, token, *[(product, 2) for product in products])
    with count_queries() as q:
        response = place_order(client, token)
    assert response.status_code == 201, response.get_json()
    return q.count


def _buyer(make_user, login):
    user = make_user()
    return user, login(user)["access_token"]


def test_a_checkout_alerting_several_products_reads_the_admins_once(
    client, make_user, login, make_product, count_queries
):
    """Each product a checkout took across its low-stock threshold read every
    admin again and queued each admin's email with an INSERT of its own: a
    checkout's statements grew with products x admins (orders review,
    session 13). Now one admins query and one outbox INSERT for them all."""
    one = _statements_of_a_checkout_alerting(
        client, make_user, login, make_product, count_queries, 1
    )
    emails_before = scalar("SELECT count(*) FROM outbox WHERE topic = 'low_stock'")
    four = _statements_of_a_checkout_alerting(
        client, make_user, login, make_product, count_queries, 4
    )
    assert one == four, (one, four)
    # Every admin (1 + 4 now) hears of each of the 4 products, once.
    emails = scalar("SELECT count(*) FROM outbox WHERE topic = 'low_stock'") - emails_before
    assert emails == 4 * 5
    assert scalar("SELECT count(*) FROM stock_movements WHERE low_stock_alert") == 5
