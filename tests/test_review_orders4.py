"""Review of orders, checkout, payments and inventory (session 13, reviewer:
orders). Each test fails on the code before its fix."""

from __future__ import annotations

from tests.helpers import auth, order_for, scalar, stock


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
