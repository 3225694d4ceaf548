"""The contract's general rules, Auth, Products and Cart sections (API.md,
docs/API.md, README) against the running code, found by review (session 14):
each test failed on the code before its fix (its docstring says how)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import update

from app.extensions import db as _db
from app.models import Product
from app.services import versions

# 16,384 decimals: one more than PostgreSQL's numeric holds.
PAST_NUMERIC = "4." + "0" * 16_384


def rate(product, average: str, count: int = 1) -> None:
    """Give `product` a rating average (as reviews would), straight in the database."""
    _db.session.execute(
        update(Product)
        .where(Product.id == product.id)
        .values(
            rating_count=count,
            rating_sum=int(Decimal(average) * count),
            rating_average=Decimal(average),
        )
    )
    _db.session.commit()
    versions.bump_all()  # written behind the app's back


@pytest.mark.parametrize("path", ["/api/products", "/api/products/facets"])
def test_min_rating_with_more_decimals_than_an_average_has_is_exact(client, make_product, path):
    """API.md: `min_rating` (1-5) keeps the products whose `rating_average` is
    at least that. It was bound as given: SQLite reads it as a float, so
    `min_rating=4.0000000000000000001` became 4.0 and listed (and counted) a
    product rated 4.00, which is below it; PostgreSQL took the exact number,
    and one with more decimals than its numeric holds (16,383) was a 500
    "value overflows numeric format" on the list and the facets. An average
    has two decimals, so `min_rating` is now read up to the next cent
    (4.001 is 4.01): the same answer on both databases, exact."""
    four, better = make_product(name="Four"), make_product(name="Better")
    rate(four, "4.00")
    rate(better, "4.01")
    for value, names in [
        ("4", {"Four", "Better"}),
        ("4.0000000000000000001", {"Better"}),
        ("4.001", {"Better"}),
        ("4.01", {"Better"}),
        ("4.0100000000000000001", set()),
        (PAST_NUMERIC, {"Four", "Better"}),
        (PAST_NUMERIC + "1", {"Better"}),
    ]:
        response = client.get(f"{path}?min_rating={value}")
        assert response.status_code == 200, (value[:30], response.get_json())
        body = response.get_json()
        if path == "/api/products":
            assert {item["name"] for item in body["items"]} == names, value[:30]
        else:
            assert body["total"] == len(names), value[:30]
    for value in ["0.999", "5.001", "0." + "9" * 20]:  # still out of 1-5
        response = client.get(f"{path}?min_rating={value}")
        assert response.status_code == 422, response.get_json()
        assert response.get_json()["code"] == "validation_failed"
