"""One cart per user, with lines checked against stock."""

from __future__ import annotations

from decimal import Decimal
from functools import cache
from typing import Any

from sqlalchemy import Select, bindparam, delete, exists, literal, select
from sqlalchemy.orm import joinedload

from app.db import read_connection, release_read_connection, upsert
from app.errors import CartLimit, NotFound, OutOfStock, UserGone
from app.extensions import db
from app.models import Cart, CartItem, Product, User
from app.models.cart import MAX_LINE_QUANTITY
from app.models.types import UTCDateTime, utcnow
from app.services.catalog import lock_live_product

MAX_CART_LINES = 100


def find_cart(user: User) -> Cart | None:
    """The user's cart with its lines and their products, in one query; None if
    it has none yet (reads only: `ensure_cart` is the one way a cart is made)."""
    return (
        db.session.scalars(
            select(Cart)
            .where(Cart.user_id == user.id)
            .options(joinedload(Cart.items).joinedload(CartItem.product))
            .execution_options(populate_existing=True)
        )
        .unique()
        .one_or_none()
    )


@cache
def _cart_rows() -> Select:
    """The cart and its lines with their products, in line order; one row of
    NULL lines for an empty cart, none for no cart. Built once, of the tables'
    columns: a select of mapped attributes would go through the ORM's result
    machinery for plain rows (~140 against ~80 µs for 10 lines)."""
    carts, lines, products = Cart.__table__, CartItem.__table__, Product.__table__
    return (
        select(
            carts.c.id,
            lines.c.id,
            lines.c.product_id,
            lines.c.quantity,
            products.c.name,
            products.c.price,
            products.c.image_url,
            products.c.stock,
        )
        .select_from(carts)
        .outerjoin(lines, lines.c.cart_id == carts.c.id)
        .outerjoin(products, products.c.id == lines.c.product_id)
        .where(carts.c.user_id == bindparam("user_id"))
        .order_by(lines.c.id)
    )


def read_cart(user: User) -> dict[str, Any]:
    """The user's cart as `CartSchema` reads a `Cart` (lines in id order, each
    with its product's current name, price, picture and stock; the totals),
    made on first use. Plain rows from one query: loading the same as ORM
    objects (cart, lines, products) cost more than the rest of the request.
    Read with Core on `read_connection()`, as `read_order`: no autoflush,
    so a writer flushes its changes first (`update_item` and
    `remove_item` do)."""
    rows = read_connection().execute(_cart_rows(), {"user_id": user.id}).all()
    if not rows:
        release_read_connection()  # the session writes the cart: one connection at a time
        ensure_cart(user)
        rows = read_connection().execute(_cart_rows(), {"user_id": user.id}).all()
        if not rows:
            raise UserGone()
    items, total_items, total = [], 0, Decimal("0.00")
    for _cart_id, item_id, product_id, quantity, name, price, image_url, stock in rows:
        if item_id is None:  # the one row of an empty cart
            continue
        product = {
            "id": product_id,
            "name": name,
            "price": price,
            "image_url": image_url,
            "stock": stock,
        }
        subtotal = price * quantity  # as `CartItem.subtotal`
        items.append(
            {
                "id": item_id,
                "product_id": product_id,
                "product": product,
                "quantity": quantity,
                "unit_price": price,
                "subtotal": subtotal,
            }
        )
        total_items += quantity
        total += subtotal
    return {"id": rows[0][0], "items": items, "total_items": total_items, "total": total}


def ensure_cart(user: User) -> None:
    """Make the user's cart unless it exists (a concurrent maker wins quietly)
    or the user does not: a read request's user may come from the accounts
    cache after the account was deleted in SQL, and a cart made for it was a
    foreign key error, a 500 (found by review). The caller finds no cart."""
    now = utcnow()
    db.session.execute(
        upsert(Cart)
        .from_select(
            ["user_id", "created_at", "updated_at"],
            select(
                literal(user.id), literal(now, UTCDateTime()), literal(now, UTCDateTime())
            ).where(exists().where(User.id == user.id)),
        )
        .on_conflict_do_nothing(index_elements=["user_id"])
    )


def lock_cart(user: User, *, create: bool = True) -> int | None:
    """Lock the user's cart row until the transaction ends and return its id.

    Every change of a cart's lines takes this lock first, so on PostgreSQL
    they run one after the other per cart. (Checkout needs no such lock: it
    reads the lines by deleting them, see `orders.place_order`.) It is a
    statement of its own, taken before the lines are read: a read in the same
    statement would keep the snapshot from before the wait. (SQLite's BEGIN
    IMMEDIATE serialises writers already.)
    """
    stmt = select(Cart.id).where(Cart.user_id == user.id).with_for_update()
    cart_id = db.session.scalar(stmt)
    if cart_id is None and create:
        ensure_cart(user)
        cart_id = db.session.scalar(stmt)
        if cart_id is None:
            raise UserGone()
    return cart_id


def _check_quantity(product, quantity: int) -> None:
    if quantity > product.stock:
        raise OutOfStock(product.name, product.stock, product.id)
    if quantity > MAX_LINE_QUANTITY:
        raise CartLimit(f"A cart line holds at most {MAX_LINE_QUANTITY} units")


def add_item(user: User, product_id: int, quantity: int) -> dict[str, Any]:
    """Add to the product's line (made if new); concurrent adds merge in the
    database. The product is read FOR SHARE (PostgreSQL) and held until the
    add commits: a delete of it waits, and its sweep of every cart then sees
    this line. Read without a lock, a product deleted while the add waited
    for its cart stayed in the cart for good (and every checkout was a 409)."""
    product = lock_live_product(product_id, share=True)
    cart_id = lock_cart(user)
    lines = db.session.scalars(select(CartItem.product_id).where(CartItem.cart_id == cart_id)).all()
    if len(lines) >= MAX_CART_LINES and product_id not in lines:
        raise CartLimit(f"A cart holds at most {MAX_CART_LINES} different products")
    stmt = upsert(CartItem).values(
        cart_id=cart_id, product_id=product.id, quantity=quantity, created_at=utcnow()
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["cart_id", "product_id"],
        set_={"quantity": CartItem.quantity + stmt.excluded.quantity},
    ).returning(CartItem.quantity)
    _check_quantity(product, db.session.scalar(stmt))
    return read_cart(user)


def _own_item(user: User, item_id: int) -> CartItem:
    """The caller's cart line, locked until the transaction ends: a
    checkout or a product's delete that takes it meanwhile waits, or comes
    first and leaves a 404 (not an UPDATE of a row that is gone)."""
    item = db.session.scalar(
        select(CartItem)
        .join(Cart)
        .where(CartItem.id == item_id, Cart.user_id == user.id)
        .with_for_update(of=CartItem)
    )
    if item is None:
        raise NotFound("Cart item not found")
    return item


def update_item(user: User, item_id: int, quantity: int) -> dict[str, Any]:
    lock_cart(user)
    item = _own_item(user, item_id)
    _check_quantity(item.product, quantity)
    item.quantity = quantity
    db.session.flush()
    return read_cart(user)


def remove_item(user: User, item_id: int) -> dict[str, Any]:
    lock_cart(user)
    db.session.delete(_own_item(user, item_id))
    db.session.flush()
    return read_cart(user)


def clear_cart(user: User) -> dict[str, Any]:
    cart_id = lock_cart(user)
    db.session.execute(delete(CartItem).where(CartItem.cart_id == cart_id))
    return read_cart(user)
