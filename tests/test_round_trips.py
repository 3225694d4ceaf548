"""Round trips to the database per request, counted on the real database
(SQLite, or PostgreSQL with TEST_DATABASE_URL) by the `round_trips` fixture:
a private read is its queries and nothing else (no BEGIN, COMMIT, ROLLBACK or
ping); a write keeps its transaction (and, on PostgreSQL, its ping); a read
whose connection the database dropped answers all the same."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from tests.helpers import DATABASE_URL, IS_POSTGRES, add_to_cart, auth, fill_cart, order_for

# A token already seen by this process (the accounts cache keeps its user):
# the read's own query and nothing else.
READ_ONLY = {"queries": 1, "begins": 0, "commits": 0, "rollbacks": 0, "pings": 0}


@pytest.fixture
def cart_of_ten(client, make_product, user_token):
    fill_cart(client, user_token, *((make_product(), n % 3 + 1) for n in range(10)))
    return user_token


def test_reading_a_cart_of_ten_lines_is_one_query(client, db, cart_of_ten, round_trips):
    with round_trips() as trips:  # the first read with this token also reads its user
        client.get("/api/cart", headers=auth(cart_of_ten))
    assert trips.summary() == {**READ_ONLY, "queries": 2}, trips.statements
    with round_trips() as trips:
        response = client.get("/api/cart", headers=auth(cart_of_ten))
    assert response.status_code == 200 and len(response.get_json()["items"]) == 10
    assert trips.summary() == READ_ONLY, trips.statements  # the cart


def test_reading_an_order_is_one_query(client, make_product, user_token, round_trips):
    order = order_for(client, user_token, (make_product(), 1), (make_product(), 2))
    client.get(f"/api/orders/{order['id']}", headers=auth(user_token))
    with round_trips() as trips:
        response = client.get(f"/api/orders/{order['id']}", headers=auth(user_token))
    assert response.status_code == 200 and response.get_json() == order
    assert trips.summary() == READ_ONLY, trips.statements  # the order


def test_a_write_keeps_its_transaction_and_its_ping(client, make_product, user_token, round_trips):
    product = make_product()
    client.get("/api/cart", headers=auth(user_token))
    with round_trips() as trips:
        assert add_to_cart(client, user_token, product.id).status_code == 201
    assert (trips.begins, trips.commits, trips.rollbacks) == (1, 1, 0)
    assert trips.statements[0].startswith("BEGIN")
    assert trips.pings == (1 if IS_POSTGRES else 0)  # a write cannot simply run again


def test_a_failed_read_rolls_nothing_back_and_a_failed_write_rolls_back(
    client, user_token, round_trips
):
    with round_trips() as trips:
        assert client.get("/api/orders/999", headers=auth(user_token)).status_code == 404
    assert (trips.begins, trips.commits, trips.rollbacks) == (0, 0, 0)
    with round_trips() as trips:
        assert add_to_cart(client, user_token, 999).status_code == 404
    assert (trips.begins, trips.commits, trips.rollbacks) == (1, 0, 1)


def test_a_read_pings_a_connection_that_sat_unused(make_app, make_user, round_trips):
    if not IS_POSTGRES:
        pytest.skip("a SQLite file has no server that drops connections")
    app = make_app("testing", {"DB_PING_IDLE_SECONDS": 0})
    from tests.helpers import PASSWORD

    user = make_user()
    with app.app_context():
        from app.extensions import db

        client = app.test_client()
        token = client.post(
            "/api/auth/login", json={"email": user.email, "password": PASSWORD}
        ).get_json()["access_token"]
        with round_trips(db.engine) as trips:
            assert client.get("/api/cart", headers=auth(token)).status_code == 200
    assert trips.pings == 1


def _drop_every_connection() -> int:
    """What a database restart does to the app's pool: every backend of the
    test database but the caller's is terminated."""
    engine = create_engine(DATABASE_URL, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return conn.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalar()
    finally:
        engine.dispose()


def test_a_database_restart_is_invisible_to_reads_and_writes(
    client, make_product, cart_of_ten, round_trips
):
    if not IS_POSTGRES:
        pytest.skip("terminating server backends is PostgreSQL's")
    assert client.get("/api/cart", headers=auth(cart_of_ten)).status_code == 200
    assert _drop_every_connection() >= 1
    with round_trips() as trips:
        response = client.get("/api/cart", headers=auth(cart_of_ten))
    assert response.status_code == 200 and len(response.get_json()["items"]) == 10
    assert trips.begins == trips.pings == 0
    # the first attempt's dead query, then the read again (the token's user
    # both times from the accounts cache)
    assert len(trips.queries) == 2

    assert _drop_every_connection() >= 1  # a write finds out from its ping, before any work
    product = make_product()
    assert _drop_every_connection() >= 1
    with round_trips() as trips:
        response = add_to_cart(client, cart_of_ten, product.id)
    assert response.status_code == 201
    assert client.get("/api/cart", headers=auth(cart_of_ten)).get_json()["total_items"] == 20


def test_health_says_ok_right_after_a_database_restart(client):
    if not IS_POSTGRES:
        pytest.skip("terminating server backends is PostgreSQL's")
    assert client.get("/api/health").status_code == 200
    assert _drop_every_connection() >= 1
    response = client.get("/api/health")
    assert response.status_code == 200 and response.get_json()["database"] == "ok"


def test_a_read_request_leaves_the_session_alone(client, make_product, cart_of_ten):
    """Cart, order and catalog reads run on a connection of their own
    (`app.db.read_connection`): no session transaction is begun, so none
    is committed or removed (~100-300 us of a read)."""
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    order = order_for(client, cart_of_ten, (make_product(), 1))
    product = make_product(name="Lamp")
    urls = [
        "/api/cart",
        f"/api/orders/{order['id']}",
        f"/api/products/{product.id}",
        "/api/products?q=lamp",
        "/api/products?page=1&per_page=5",
        "/api/products/facets",
        "/api/products/suggest?q=la",
    ]
    client.get("/api/cart", headers=auth(cart_of_ten))  # the token's user, kept
    begun = []

    def on_begin(session, transaction, connection):
        begun.append(connection)

    event.listen(Session, "after_begin", on_begin)
    try:
        for url in urls:
            response = client.get(url, headers=auth(cart_of_ten))
            assert response.status_code == 200, (url, response.get_json())
    finally:
        event.remove(Session, "after_begin", on_begin)
    assert begun == []
