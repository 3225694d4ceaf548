"""Products, found by review (each failed before its fix): ids in other
scripts' digits, huge integers, pages far past the end, empty categories,
unsafe image URLs, names of control or invisible characters."""

from __future__ import annotations

import pytest

from app.models import Product
from tests.helpers import auth

NEW = {"name": "Phone", "price": "10.00", "stock": 3}


# --- ids in the path ----------------------------------------------------------


@pytest.mark.parametrize("digit", ["\u0661", "\uff11"])  # ARABIC-INDIC ONE, FULLWIDTH ONE
def test_a_non_ascii_digit_in_the_path_names_no_product(client, make_product, admin_token, digit):
    """API.md, General: "Ids are integers." Errors: 404 for an "unknown id,
    unknown route". `/api/products/` with an Arabic-Indic or a fullwidth one
    is not an id the API ever writes: werkzeug's `\\d+` and int() accept any Unicode digit,
    so the IdConverter (app/web/converters.py), which checks only the range,
    makes them aliases of product 1 for GET, PUT and DELETE. The project
    refuses such digits everywhere else (README: fullwidth or Arabic-Indic
    digits are 422;
    schemas/common.Integer: "ASCII digits only"); `/api/products/abc` and
    `/api/products/+1` are 404s already."""
    product = make_product()
    assert product.id == 1
    path = f"/api/products/{digit}"
    assert client.get(path).status_code == 404
    response = client.put(path, json={"price": "1.00"}, headers=auth(admin_token))
    assert response.status_code == 404
    response = client.delete(path, headers=auth(admin_token))
    assert response.status_code == 404
    # Nothing was written through the alias.
    detail = client.get(f"/api/products/{product.id}")
    assert detail.status_code == 200 and detail.get_json()["price"] == 10


# --- huge numbers -------------------------------------------------------------


@pytest.mark.parametrize("field", ["price", "stock", "low_stock_threshold"])
def test_a_valid_json_body_with_a_long_integer_is_a_422_not_invalid_json(
    client, db, admin_token, field
):
    """API.md, Errors: 400 `invalid_json` is for a "body [that] is not valid
    JSON"; 422 for "the JSON parsed but failed validation". An integer literal
    of 5,000 digits is valid JSON (RFC 8259 sets no limit), and is simply out
    of range for price/stock/low_stock_threshold. Python refuses int() of more
    than 4,300 digits with a ValueError, which JSONBodyParser.load_json
    (app/web/blueprint.py) turns into 400 invalid_json: the client is told
    its JSON is broken when it is not, and no `errors` names the field."""
    body = '{"name": "X", "price": 1, "stock": 1, "' + field + '": ' + "9" * 5000 + "}"
    response = client.post(
        "/api/products", data=body, content_type="application/json", headers=auth(admin_token)
    )
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["code"] == "validation_failed"
    assert field in response.get_json()["errors"]
    assert db.session.scalar(db.select(db.func.count()).select_from(Product)) == 0


def test_a_per_page_of_many_digits_is_clamped_like_any_other_above_100(client, make_product):
    """API.md, Products: "`per_page` (default 20, above 100 is clamped to
    100)". per_page=99999999999999999999999 is clamped to 100, but one of
    5,000 digits is a 422 "Not a valid integer": it is still an integer above
    100 (ASCII digits only), refused because int() stops at 4,300 digits
    (schemas/common.Integer -> marshmallow's Integer)."""
    make_product()
    response = client.get("/api/products?per_page=" + "9" * 5000)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["per_page"] == 100


# --- the category filter -------------------------------------------------------


def test_every_category_an_admin_can_store_can_be_filtered_on(client, admin_token):
    """API.md, Products: `category` is writable "(≤ 80)", so "" is accepted
    (201) and stored as a category of its own, which the facets then offer
    (`{"value": "", "count": 1}`); but the list's filter `category` is
    `Length(1, 80)` (schemas/product.ProductFilterSchema), so choosing that
    category is a 422 "Length must be between 1 and 80". A category the API
    stores and shows must be one its filter can select (the project holds
    facets and filter to the same count: test_facets_count_a_category_as_the_
    filter_does); either "" is refused or made null on write, or the filter
    takes it."""
    response = client.post("/api/products", json={**NEW, "category": ""}, headers=auth(admin_token))
    stored = response.get_json()["category"] if response.status_code == 201 else None
    if stored is None:
        return  # refused or stored as no category: nothing to select
    offered = client.get("/api/products/facets").get_json()["categories"]
    for entry in offered:
        listed = client.get("/api/products", query_string={"category": entry["value"]})
        assert listed.status_code == 200, (entry, listed.get_json())
        assert listed.get_json()["total"] == entry["count"]


def test_a_page_past_the_end_is_an_empty_page_whatever_its_number(client, make_product):
    """API.md, Products: "`page` (default 1)" with no upper bound, and "A
    malformed value is a 422". page=1000000 past the end is an empty page
    (200, items []), but page=1000001 is a 422: PageQuerySchema.page
    (schemas/common.py) has an undocumented Range(1, 1_000_000) (neither
    API.md nor README names it). 1000001 is a well-formed page number, as
    past the end as 1000000."""
    make_product()
    assert client.get("/api/products?page=1000000").status_code == 200
    response = client.get("/api/products?page=1000001")
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["items"] == []


# --- what an admin may store ---------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        'https://example.com/a.jpg"onerror="alert(1)',
        "https://example.com/<script>alert(1)</script>.jpg",
    ],
)
def test_image_url_with_characters_no_url_may_contain_is_422(client, db, admin_token, url):
    """API.md, Products: "`image_url` (an http(s) URL ≤ 500)". `"`, `<` and
    `>` can never appear in a URL (RFC 3986: not in any production; a
    browser percent-encodes them), yet marshmallow's URL validator
    (schemas/product.ProductSchema.image_url) checks only scheme and host, so
    markup is stored and served back verbatim as the image address of every
    storefront, email or admin page that renders it."""
    body = {**NEW, "image_url": url}
    response = client.post("/api/products", json=body, headers=auth(admin_token))
    assert response.status_code == 422, response.get_json()
    assert "image_url" in response.get_json()["errors"]
    assert db.session.scalar(db.select(db.func.count()).select_from(Product)) == 0


@pytest.mark.parametrize("name", ["\x1b[2J\x1b[31mSALE", "\x07\x08\x7f", "\u200b\u200b"])
def test_product_name_of_control_or_invisible_characters_is_422(client, db, admin_token, name):
    """API.md, Products: "`name` (1-200, required on create)"; a name that
    shows nothing, or whose characters are terminal control sequences (ESC,
    BEL, BS, DEL), is no name. NonBlank (schemas/common.py) only strips
    Python whitespace, so a name of zero-width spaces passes as "not blank"
    and C0/DEL control characters are stored and echoed to every client,
    email subject and log line (signup already refuses control characters
    in an email address for the same reason)."""
    response = client.post("/api/products", json={**NEW, "name": name}, headers=auth(admin_token))
    assert response.status_code == 422, response.get_json()
    assert "name" in response.get_json()["errors"]
    assert db.session.scalar(db.select(db.func.count()).select_from(Product)) == 0
