"""The precompiled dumps of the private reads (`dump_cart`, `dump_order`)
answer exactly what their schemas' `dump()` would, key order and JSON bytes
included, over varied data; and the API's answers, read as plain rows, are the
schemas' dump of the same cart and order loaded as ORM objects."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import update

from app.models import OrderItem, OrderStatus
from app.schemas.cart import CartSchema, dump_cart
from app.schemas.order import OrderSchema, dump_order
from app.services.cart import find_cart
from app.services.orders import get_order
from app.web.json import encode
from app.web.openapi import response_schema
from tests.helpers import auth, fill_cart, order_for

CART_SCHEMAS = [CartSchema(), response_schema(CartSchema)()]
ORDER_SCHEMAS = [OrderSchema(), response_schema(OrderSchema)()]
AT = datetime(2026, 11, 24, 17, 5, 0, 123456, tzinfo=UTC)


def assert_same(fast: dict, schemas: list, value) -> None:
    for schema in schemas:
        expected = schema.dump(value)
        assert fast == expected
        assert encode(fast) == encode(expected)  # same keys, same order, same numbers


def product(**changes) -> dict:
    values = {
        "id": 7,
        "name": "Phone",
        "price": Decimal("699.99"),
        "image_url": "https://img.example.com/p.jpg",
        "stock": 5,
    }
    return {**values, **changes}


def line(n: int = 1, quantity: int = 2, **product_changes) -> dict:
    item = product(**product_changes)
    price = item["price"]
    return {
        "id": n,
        "product_id": item["id"],
        "product": item,
        "quantity": quantity,
        "unit_price": price,
        "subtotal": None if price is None else Decimal(str(price)) * quantity,
    }


CARTS = [
    {"id": 1, "items": [], "total_items": 0, "total": Decimal("0.00")},
    {"id": 2, "items": [line()], "total_items": 2, "total": Decimal("1399.98")},
    {
        "id": 2**31 - 1,
        "items": [
            line(1, 1000, price=Decimal("1000000.00"), stock=1_000_000_000),
            line(2, 1, name='Téléphone 📱 «über» 日本 \u2028 "q" \\', image_url=None),
            line(3, 3, price=Decimal("0.005"), stock=0),  # rounding: half even
            line(4, 1, price=12.1),  # a float, as a driver could hand it
            line(5, 1, price=Decimal("0"), name=""),
        ],
        "total_items": 1006,
        "total": Decimal("1000000012.13"),
    },
    {
        "id": 3,
        "items": [line(1, price=None, stock=None, name=None)],
        "total_items": None,
        "total": None,
    },
    {"id": 4, "items": [{**line(), "product": None}, None], "total_items": 2, "total": 1},
    {"id": 5, "items": None, "total_items": 0, "total": Decimal("0.00")},
]


@pytest.mark.parametrize("cart", CARTS)
def test_dump_cart_equals_the_schema(cart):
    assert_same(dump_cart(cart), CART_SCHEMAS, cart)


def order(**changes) -> dict:
    values = {
        "id": 12,
        "user_id": 3,
        "status": "pending",
        "total_amount": Decimal("1399.98"),
        "currency": "USD",
        "payment_status": "unpaid",
        "shipping_address": "221B Baker Street, London",
        "items": [
            {
                "id": 1,
                "product_id": 7,
                "product_name": "Phone",
                "unit_price": Decimal("699.99"),
                "quantity": 2,
                "subtotal": Decimal("1399.98"),
            }
        ],
        "status_history": [{"status": "pending", "at": AT}],
        "created_at": AT,
        "updated_at": AT + timedelta(seconds=1),
    }
    return {**values, **changes}


ORDERS = [
    {},
    {"items": [], "status_history": []},
    {
        "status": "cancelled",
        "currency": "EUR",
        "payment_status": "refunded",
        "shipping_address": 'Straße 1, 東京 📦 "x" \\ \u2028',
        "total_amount": Decimal("1000000000.00"),
        "items": [
            {
                "id": 9,
                "product_id": None,  # its product was removed for good
                "product_name": "Ünïcode",
                "unit_price": Decimal("1000000.00"),
                "quantity": 1000,
                "subtotal": Decimal("1000000000.00"),
            },
            {
                "id": 10,
                "product_id": 8,
                "product_name": "",
                "unit_price": 0.1,
                "quantity": 3,
                "subtotal": Decimal("0.305"),
            },
        ],
        "status_history": [
            {"status": "pending", "at": AT.astimezone(timezone(timedelta(hours=5, minutes=30)))},
            {"status": "cancelled", "at": datetime(2026, 11, 25)},  # naive
        ],
    },
    {"updated_at": None, "total_amount": None, "items": None, "status_history": None},
    {"items": [None], "status_history": [None], "created_at": datetime(2026, 1, 1, tzinfo=UTC)},
]


@pytest.mark.parametrize("changes", ORDERS)
def test_dump_order_equals_the_schema(changes):
    value = order(**changes)
    assert_same(dump_order(value), ORDER_SCHEMAS, value)


@pytest.fixture
def varied_products(make_product):
    return [
        make_product(price=Decimal("1000000.00"), stock=5000),
        make_product(name="Téléphone 📱 «über» 日本", image_url=None, category=None),
        make_product(price=Decimal("0.10"), stock=2),
        make_product(price=Decimal("0.00")),
    ]


def test_the_cart_answers_are_the_schema_dump_of_the_orm_cart(
    client, db, make_user, login, varied_products
):
    user = make_user()
    token = login(user)["access_token"]
    empty = client.get("/api/cart", headers=auth(token)).get_json()
    assert empty == CartSchema().dump(find_cart(user))
    fill_cart(
        client, token, *((p, q) for p, q in zip(varied_products, (1000, 2, 1, 3), strict=True))
    )
    answer = client.get("/api/cart", headers=auth(token))
    assert answer.get_data() == encode(CartSchema().dump(find_cart(user))) + b"\n"
    db.session.rollback()
    item_id = answer.get_json()["items"][1]["id"]
    changed = client.put(f"/api/cart/{item_id}", json={"quantity": 4}, headers=auth(token))
    assert changed.get_data() == encode(CartSchema().dump(find_cart(user))) + b"\n"


def test_the_order_answer_is_the_schema_dump_of_the_orm_order(
    client, db, make_user, login, admin_token, varied_products
):
    user = make_user()
    token = login(user)["access_token"]
    placed = order_for(client, token, *((p, 2) for p in varied_products))
    for status in (OrderStatus.PROCESSING, OrderStatus.SHIPPED):
        moved = client.put(
            f"/api/orders/{placed['id']}", json={"status": status}, headers=auth(admin_token)
        )
        assert moved.status_code == 200
    first_line = placed["items"][0]["id"]
    db.session.execute(update(OrderItem).where(OrderItem.id == first_line).values(product_id=None))
    db.session.commit()
    for reader in (token, admin_token):
        answer = client.get(f"/api/orders/{placed['id']}", headers=auth(reader))
        expected = OrderSchema().dump(get_order(user, placed["id"]))
        db.session.rollback()
        assert answer.get_data() == encode(expected) + b"\n"
        assert [e["status"] for e in answer.get_json()["status_history"]] == [
            "pending",
            "processing",
            "shipped",
        ]
        assert answer.get_json()["items"][0]["product_id"] is None
        assert len(answer.get_json()["items"]) == len(varied_products)
