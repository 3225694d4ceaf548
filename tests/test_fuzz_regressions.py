"""Bugs schemathesis found (.ci/fuzz.py), kept as plain tests. Both were 500s
on PostgreSQL only, which is why the suite's second CI leg matters here."""

from __future__ import annotations

import pytest

from tests.helpers import auth


@pytest.mark.parametrize("item_id", ["0", "2147483648", "99999999999999999999999"])
def test_path_ids_outside_the_documented_range_are_404(client, user_token, item_id):
    for method in ("put", "delete"):
        response = getattr(client, method)(
            f"/api/cart/{item_id}", json={"quantity": 1}, headers=auth(user_token)
        )
        assert response.status_code == 404, (method, response.get_json())
        assert response.get_json() == {"code": "not_found", "message": "Not found"}
    assert client.get(f"/api/products/{item_id}").status_code == 404
    assert client.post(f"/api/orders/{item_id}/cancel", headers=auth(user_token)).status_code == 404
    # A method the path does not have is still a 405, whatever the id.
    assert client.post(f"/api/products/{item_id}").status_code == 405


def test_path_id_bounds_are_documented(client):
    import json

    spec = json.loads(client.get("/api/openapi.json").data)
    schema = spec["paths"]["/api/cart/{item_id}"]["parameters"][0]["schema"]
    assert schema == {"type": "integer", "minimum": 1, "maximum": 2147483647}


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "field"),
    [
        ("post", "/api/auth/login", {"json": {"email": "a\x00@b.c", "password": "x"}}, "email"),
        (
            "post",
            "/api/auth/signup",
            {"json": {"username": "nul\x00", "email": "n@example.com", "password": "x" * 8}},
            "username",
        ),
        ("get", "/api/products", {"query_string": {"category": "a\x00b"}}, "category"),
        ("get", "/api/products", {"query_string": {"q": "\x00"}}, "q"),
        ("post", "/api/auth/login", {"json": {"\x00": 1}}, "\x00"),
    ],
)
def test_nul_characters_are_422_not_500(client, db, method, path, kwargs, field):
    from app.models import User

    response = getattr(client, method)(path, **kwargs)
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["errors"] == {field: ["Must not contain the NUL character."]}
    assert db.session.scalar(db.select(db.func.count()).select_from(User)) == 0


def test_nul_in_a_private_body_is_422(client, user_token, make_product):
    product = make_product()
    response = client.post(
        "/api/orders", json={"shipping_address": "1 Main\x00 St"}, headers=auth(user_token)
    )
    assert response.status_code == 422
    assert response.get_json()["errors"] == {
        "shipping_address": ["Must not contain the NUL character."]
    }
    response = client.post(
        "/api/cart", json={"product_id": product.id, "quantity": 1}, headers=auth(user_token)
    )
    assert response.status_code == 201
