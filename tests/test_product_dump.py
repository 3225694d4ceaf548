"""The catalog's precompiled product dump (`dump_product`, `dump_product_page`)
answers exactly what the schemas' `dump()` would, key order and JSON bytes
included, so the fast path can never drift from the documented shape."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import update

from app.models import Product
from app.schemas.product import (
    ProductPageSchema,
    ProductSchema,
    dump_product,
    dump_product_page,
)
from app.services import catalog_cache
from app.web.json import encode
from app.web.openapi import response_schema

SCHEMA = ProductSchema()
PAGE_SCHEMA = response_schema(ProductPageSchema)()  # what the route documents and dumped
CREATED = datetime(2026, 11, 24, 17, 5, 0, 123456, tzinfo=UTC)

VARIED = [
    {},
    {"category": None, "image_url": None, "description": ""},
    {"price": Decimal("1000000.00"), "stock": 1_000_000_000, "low_stock_threshold": 0},
    {"price": Decimal("0"), "stock": 0, "rating_average": Decimal("5"), "rating_count": 1},
    {"name": "Téléphone 📱 «über» 日本", "description": 'naïve — \u2028 "quoted" \\ back'},
    {"price": Decimal("0.005"), "rating_average": Decimal("4.675")},  # rounding: half even
    {"price": 12.1, "rating_average": 3.333},  # floats, as a driver could hand them
    {"created_at": CREATED.astimezone(timezone(timedelta(hours=5, minutes=30)))},
    {"created_at": datetime(2026, 1, 1, tzinfo=UTC), "updated_at": datetime(2026, 1, 1)},
]


def row(**changes) -> dict:
    values = {
        "id": 7,
        "name": "Phone",
        "description": "A phone",
        "price": Decimal("699.99"),
        "stock": 5,
        "category": "Phones",
        "image_url": "https://img.example.com/p.jpg",
        "low_stock_threshold": 5,
        "rating_average": None,
        "rating_count": 0,
        "created_at": CREATED,
        "updated_at": CREATED + timedelta(days=1),
    }
    return {**values, **changes}


def assert_same(fast: dict, schema: dict) -> None:
    assert fast == schema
    assert encode(fast) == encode(schema)  # same keys in the same order, same values


@pytest.mark.parametrize("changes", VARIED)
def test_dump_product_equals_the_schema(changes):
    assert_same(dump_product(row(**changes)), SCHEMA.dump(row(**changes)))


def test_dump_product_page_equals_the_schema():
    page = {"items": [row(**c) for c in VARIED], "page": 3, "per_page": 9, "total": 25, "pages": 3}
    assert_same(dump_product_page(page), PAGE_SCHEMA.dump(page))
    empty = {"items": [], "page": 9, "per_page": 20, "total": 0, "pages": 0}
    assert_same(dump_product_page(empty), PAGE_SCHEMA.dump(empty))


def test_the_api_answers_what_the_schema_dumps_of_the_stored_products(client, db, make_product):
    """End to end: the rows the catalog reads, dumped fast, are the schema's
    dump of the same products loaded as ORM objects."""
    made = [
        make_product(**{k: v for k, v in c.items() if k in ("name", "description")}) for c in VARIED
    ]
    made.append(make_product(category=None, image_url=None, price="1000000"))
    made.append(make_product(price="0.10", stock=0))
    ratings = {made[0].id: Decimal("4.67"), made[1].id: Decimal("1.00"), made[2].id: Decimal("5")}
    for product_id, average in ratings.items():
        db.session.execute(
            update(Product)
            .where(Product.id == product_id)
            .values(rating_average=average, rating_count=3, rating_sum=3)
        )
    db.session.commit()
    catalog_cache.bump()
    db.session.expire_all()
    for product in made:
        response = client.get(f"/api/products/{product.id}")
        expected = SCHEMA.dump(db.session.get(Product, product.id))
        assert response.data == encode(expected) + b"\n"
    for query in ("per_page=5&page=2", "sort=price&per_page=100", "q=product", "sort=-rating"):
        response = client.get(f"/api/products?{query}")
        body = response.get_json()
        assert body["items"], query
        page = {**body, "items": [db.session.get(Product, item["id"]) for item in body["items"]]}
        assert response.data == encode(PAGE_SCHEMA.dump(page)) + b"\n", query
