"""Security headers, CORS, request ids and request logs."""

from __future__ import annotations

import json
import logging

import pytest

from tests.helpers import PASSWORD, auth

ALLOWED = "http://localhost:3000"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/health"),
        ("get", "/api/products"),
        ("get", "/api/nowhere"),
        ("delete", "/api/health"),
        ("get", "/api/auth/profile"),
    ],
)
def test_security_headers_on_every_response(client, method, path):
    response = getattr(client, method)(path)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "Server" not in response.headers


def test_docs_page_gets_a_csp_that_allows_its_own_assets(client):
    response = client.get("/api/docs")
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert "unsafe-eval" not in csp and "http" not in csp


def test_private_answers_are_not_cacheable(client, user_token):
    response = client.get("/api/cart", headers=auth(user_token))
    assert response.headers["Cache-Control"] == "no-store"


def preflight(client, path: str, method: str, headers: str):
    """A browser's CORS preflight from the allowed origin."""
    return client.options(
        path,
        headers={
            "Origin": ALLOWED,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": headers,
        },
    )


def test_cors_allows_configured_origin_with_authorization_preflight(client):
    response = preflight(client, "/api/cart", "POST", "Authorization, Content-Type")
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
    allowed_headers = response.headers["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allowed_headers and "content-type" in allowed_headers
    assert int(response.headers["Access-Control-Max-Age"]) >= 600
    assert response.headers.get("Access-Control-Allow-Credentials") is None


def test_no_cors_headers_without_an_origin(client):
    assert "Access-Control-Allow-Origin" not in client.get("/api/products").headers


def test_cors_refuses_other_origins_and_never_sends_a_wildcard(client):
    response = client.get("/api/products", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in response.headers
    response = client.get("/api/products", headers={"Origin": ALLOWED})
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert response.headers["Access-Control-Allow-Origin"] != "*"
    exposed = response.headers.get("Access-Control-Expose-Headers", "")
    assert "X-Request-ID" in exposed and "ETag" in exposed


def test_a_page_on_an_allowed_origin_can_revalidate_a_catalog_answer(client):
    """A storefront on another origin reads the ETag and sends If-None-Match."""
    asked = preflight(client, "/api/products", "GET", "if-none-match")
    assert "if-none-match" in asked.headers["Access-Control-Allow-Headers"].lower()
    first = client.get("/api/products", headers={"Origin": ALLOWED})
    assert "ETag" in first.headers["Access-Control-Expose-Headers"]
    again = client.get(
        "/api/products", headers={"Origin": ALLOWED, "If-None-Match": first.headers["ETag"]}
    )
    assert again.status_code == 304
    assert again.headers["Access-Control-Allow-Origin"] == ALLOWED


def test_request_id_is_echoed_or_generated(client):
    response = client.get("/api/health", headers={"X-Request-ID": "abc-123.DEF_4"})
    assert response.headers["X-Request-ID"] == "abc-123.DEF_4"
    generated = client.get("/api/health").headers["X-Request-ID"]
    assert len(generated) == 32
    for bad in ("x" * 200, "has space", "new\\nline", "<script>"):
        echoed = client.get("/api/health", headers={"X-Request-ID": bad}).headers["X-Request-ID"]
        assert echoed != bad and len(echoed) == 32


def test_one_structured_log_line_per_request_without_secrets(client, make_user, caplog):
    user = make_user()
    caplog.set_level(logging.INFO, logger="shop.request")
    response = client.post(
        "/api/auth/login?password=leak",
        json={"email": user.email, "password": PASSWORD},
        headers={"X-Request-ID": "req-42"},
    )
    token = response.get_json()["access_token"]
    client.get("/api/auth/profile", headers=auth(token))
    records = [r for r in caplog.records if r.name == "shop.request"]
    assert len(records) == 2
    fields = records[0].fields
    assert fields["method"] == "POST" and fields["path"] == "/api/auth/login"
    assert fields["status"] == 200 and fields["request_id"] == "req-42"
    assert isinstance(fields["duration_ms"], float)
    assert PASSWORD not in caplog.text and "leak" not in caplog.text
    assert token not in caplog.text


def test_json_formatter_writes_one_json_object_per_line():
    from app.web.hooks import JSONFormatter

    record = logging.LogRecord("shop.request", logging.INFO, __file__, 1, "GET / 200", None, None)
    record.fields = {"status": 200, "request_id": "r1"}
    line = JSONFormatter().format(record)
    assert "\n" not in line
    assert json.loads(line)["request_id"] == "r1"


def test_proxy_fix_uses_forwarded_address_only_when_trusted(make_app):
    from flask import request

    def remote(application):
        @application.get("/api/_whoami_test")
        def whoami():
            return {"ip": request.remote_addr, "scheme": request.scheme}

        return (
            application.test_client()
            .get(
                "/api/_whoami_test",
                headers={"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"},
            )
            .get_json()
        )

    assert remote(make_app()) == {"ip": "127.0.0.1", "scheme": "http"}
    trusted = remote(make_app("testing", {"TRUST_PROXY": 1}))
    assert trusted == {"ip": "203.0.113.9", "scheme": "https"}
