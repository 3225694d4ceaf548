"""One unit of work commits a request's (or a command's, or a task's) writes
when it succeeds and rolls them all back when it raises."""

from __future__ import annotations

import pytest

from app.db import unit_of_work
from app.errors import Conflict
from app.models import Product
from tests.helpers import auth, scalar


def product(name: str) -> Product:
    return Product(name=name, price="1.00", stock=1)


def test_a_block_that_ends_commits(db):
    with unit_of_work():
        db.session.add(product("kept"))
    assert scalar("SELECT count(*) FROM products WHERE name = 'kept'") == 1


def test_a_block_that_raises_rolls_everything_back(db):
    with pytest.raises(Conflict), unit_of_work():
        db.session.add(product("flushed"))
        db.session.flush()
        raise Conflict("no")
    assert scalar("SELECT count(*) FROM products") == 0
    assert not db.session().in_transaction()


def test_as_a_decorator_each_call_is_its_own_unit(db):
    @unit_of_work()
    def add(name: str, fail: bool = False) -> None:
        db.session.add(product(name))
        if fail:
            raise RuntimeError("task failed")

    add("first")
    with pytest.raises(RuntimeError):
        add("second", fail=True)
    assert scalar("SELECT count(*) FROM products WHERE name = 'first'") == 1
    assert scalar("SELECT count(*) FROM products WHERE name = 'second'") == 0


def test_a_view_that_raises_after_writing_leaves_nothing(client, user_token, make_product):
    """add_item writes the line, then finds the quantity over the stock: 409, no line."""
    item = make_product(stock=2)
    response = client.post(
        "/api/cart", json={"product_id": item.id, "quantity": 3}, headers=auth(user_token)
    )
    assert response.status_code == 409
    assert scalar("SELECT count(*) FROM cart_items") == 0


def test_a_view_that_returns_commits(client, user_token, make_product):
    item = make_product(stock=2)
    response = client.post(
        "/api/cart", json={"product_id": item.id, "quantity": 2}, headers=auth(user_token)
    )
    assert response.status_code == 201
    assert scalar("SELECT quantity FROM cart_items") == 2
