"""Orders: all-or-nothing checkout, the status workflow, cancellation."""

from __future__ import annotations

from decimal import Decimal
from functools import cache
from typing import Any

from sqlalchemy import (
    CompoundSelect,
    Delete,
    Select,
    bindparam,
    delete,
    insert,
    literal_column,
    null,
    select,
    type_coerce,
    union_all,
    update,
)
from sqlalchemy.orm import joinedload, selectinload
from sqlalchemy.orm.attributes import set_committed_value

from app.db import paginate, read_connection
from app.errors import (
    EmptyCart,
    Forbidden,
    InvalidTransition,
    NotFound,
    OrderNotPending,
)
from app.extensions import db
from app.models import (
    Cart,
    CartItem,
    Order,
    OrderItem,
    OrderStatus,
    OrderStatusEvent,
    Product,
    User,
)
from app.models.order import shop_currency
from app.models.types import utcnow
from app.services import notifications
from app.services.account_tokens import refresh_user
from app.services.inventory import record_taken, restock, take_stock
from app.services.workflow import can_move


def place_order(user: User, shipping_address: str) -> Order:
    """Turn the user's cart into a pending order: all or nothing, never
    overselling, in seven statements whatever the number of lines.

    The cart's lines are deleted first (DELETE ... RETURNING is how they are
    read): of concurrent checkouts of one cart, the first takes the lines and
    the others find the cart empty, and a line added meanwhile is either
    deleted here, and so ordered, or stays in the cart. Then every line's
    stock is taken in one guarded UPDATE (`take_stock`; a short line is a 409
    and the unit of work rolls everything back), and the order, its lines,
    the ledger rows, its history and its confirmation email are inserted with
    one statement each. The order returned is built from what was written
    (not loaded back)."""
    locking = db.session.get_bind().dialect.name == "postgresql"
    lines = db.session.execute(_take_cart(locking), {"user_id": user.id}).all()
    if not lines:
        # An account deleted (in SQL) since the token check took its cart's
        # lines with it: the 401 of a token whose user is gone, as a keyed
        # checkout's claim answers, not a 409 "empty" (found by review).
        refresh_user(user)
        raise EmptyCart("Your cart is empty")
    quantities = dict(lines)
    taken = take_stock(quantities)
    now = utcnow()
    items = [
        {
            "product_id": row.id,
            "product_name": row.name,
            "unit_price": row.price,
            "quantity": quantities[row.id],
            "subtotal": row.price * quantities[row.id],
        }
        for row in taken
    ]
    order = {
        "user_id": user.id,
        "status": OrderStatus.PENDING.value,
        "total_amount": sum((item["subtotal"] for item in items), Decimal("0.00")),
        "shipping_address": shipping_address,
        "currency": shop_currency(),
        "payment_status": "unpaid",
        "created_at": now,
        "updated_at": now,
    }
    order_id = db.session.execute(_INSERT_ORDER, order).scalar_one()
    for item in items:
        item["order_id"] = order_id
    item_ids = dict(db.session.execute(_INSERT_ITEMS, items).all())
    record_taken(taken, quantities, order_id)
    history = {"order_id": order_id, "status": order["status"], "at": now}
    db.session.execute(_INSERT_EVENT, history)
    placed = _transient(Order, {**order, "id": order_id})
    # The answer's collections, set as loaded: the order is not in the
    # session, and nothing of it is written (or loaded) again.
    set_committed_value(
        placed,
        "items",
        [_transient(OrderItem, {**item, "id": item_ids[item["product_id"]]}) for item in items],
    )
    set_committed_value(placed, "status_history", [_transient(OrderStatusEvent, history)])
    notifications.order_placed(placed, user, items)
    return placed


# Checkout's statements, built once (building one costs more than running it
# on SQLite): a statement object and a dict of parameters per execution.
@cache
def _take_cart(locking: bool) -> Delete:
    """The DELETE ... RETURNING that takes the user's cart lines. On
    PostgreSQL it first locks the lines' products, in id order (a subquery
    FOR UPDATE, run once before any line is deleted), as a product's delete
    and `take_stock` lock them: taking the lines first and their products
    after deadlocked with a delete of one of them, which locks its product
    and then sweeps its lines out of every cart (one of the two was a 503)."""
    cart = select(Cart.id).where(Cart.user_id == bindparam("user_id")).scalar_subquery()
    stmt = delete(CartItem).where(CartItem.cart_id.in_(cart))
    if locking:
        lines = CartItem.__table__.alias("lines")
        products = (
            select(Product.id)
            .where(Product.id.in_(select(lines.c.product_id).where(lines.c.cart_id.in_(cart))))
            .order_by(Product.id)
            .with_for_update(key_share=True)
        )
        stmt = stmt.where(CartItem.product_id.in_(products))
    return stmt.returning(CartItem.product_id, CartItem.quantity).execution_options(
        synchronize_session=False
    )


_INSERT_ORDER = insert(Order.__table__).returning(Order.__table__.c.id)
# The lines' ids come back with their product (a cart holds a product once,
# so an order does too), not in the parameters' order: SQLAlchemy keeps that
# order only with a sentinel SQLite lacks, and ran one INSERT per line there;
# unordered, every line goes in one INSERT on both databases.
_ITEMS = OrderItem.__table__
_INSERT_ITEMS = insert(_ITEMS).returning(_ITEMS.c.product_id, _ITEMS.c.id)
_INSERT_EVENT = insert(OrderStatusEvent.__table__)


def _transient(model, values: dict[str, Any]):
    """A model object holding `values` as loaded, outside any session."""
    obj = model()
    for key, value in values.items():
        set_committed_value(obj, key, value)
    return obj


def _order_query(eager=joinedload):
    return select(Order).options(eager(Order.items), eager(Order.status_history))


def get_order(user: User, order_id: int) -> Order:
    """The order if the caller owns it or is an admin; otherwise a 404."""
    stmt = _order_query().where(Order.id == order_id)
    if not user.is_admin:
        stmt = stmt.where(Order.user_id == user.id)
    order = db.session.scalars(stmt).unique().one_or_none()
    if order is None:
        raise NotFound("Order not found")
    return order


# `_order_rows`' first column, inline (no parameter to bind).
KIND_LINE, KIND_EVENT = literal_column("0"), literal_column("1")


@cache
def _order_rows(owned: bool) -> CompoundSelect:
    """An order's lines and its status history in one statement of
    `lines + events` rows (a join of both would return their product): first
    one row per line (kind 0, in id order; the order's columns on each, NULL
    lines for an order without any), then one per event (kind 1, oldest
    first); with `owned`, only if the order is the given user's. Built once,
    of the tables' columns (plain rows, no ORM result machinery)."""
    orders, lines, events = Order.__table__, OrderItem.__table__, OrderStatusEvent.__table__
    order_columns = [
        orders.c[name]
        for name in (
            *("id", "user_id", "status", "total_amount", "currency", "payment_status"),
            *("shipping_address", "created_at", "updated_at"),
        )
    ]
    line_columns = [
        lines.c[name]
        for name in ("id", "product_id", "product_name", "unit_price", "quantity", "subtotal")
    ]
    event_columns = [events.c.id, events.c.status, events.c.at]

    def nulls(columns):  # typed, so each result column keeps its conversion
        return [type_coerce(null(), column.type) for column in columns]

    def of_the_order(stmt: Select) -> Select:
        stmt = stmt.where(orders.c.id == bindparam("order_id"))
        return stmt.where(orders.c.user_id == bindparam("user_id")) if owned else stmt

    line_rows = of_the_order(
        select(KIND_LINE.label("kind"), *order_columns, *line_columns, *nulls(event_columns))
        .select_from(orders)
        .outerjoin(lines, lines.c.order_id == orders.c.id)
    )
    event_rows = of_the_order(
        select(KIND_EVENT, *nulls(order_columns), *nulls(line_columns), *event_columns)
        .select_from(events)
        .join(orders, orders.c.id == events.c.order_id)
    )
    # By position (1-based): kind, then the line's id, then the event's id
    # (the order of the changes, as `Order.status_history`).
    return union_all(line_rows, event_rows).order_by(
        *(literal_column(str(position)) for position in (1, 11, 17))
    )


def read_order(user: User, order_id: int) -> dict[str, Any]:
    """`get_order` as `OrderSchema` reads an `Order`, from plain rows of one
    query (the ORM's loading of the order, its lines and its history cost more
    than the rest of the request); a 404 likewise."""
    params = {"order_id": order_id, "user_id": user.id}
    # Core on `read_connection()`: the ORM's execute path cost 3-6 % of the
    # request for a statement that loads no ORM object.
    rows = read_connection().execute(_order_rows(not user.is_admin), params).all()
    if not rows:
        raise NotFound("Order not found")
    items, history = [], []
    for row in rows:
        if row[0] == 1:
            history.append({"status": row[17], "at": row[18]})
        elif row[10] is not None:
            item_id, product_id, name, unit_price, quantity, subtotal = row[10:16]
            items.append(
                {
                    "id": item_id,
                    "product_id": product_id,
                    "product_name": name,
                    "unit_price": unit_price,
                    "quantity": quantity,
                    "subtotal": subtotal,
                }
            )
    order = rows[0][1:10]
    (id_, user_id, status, total, currency, payment_status, address, created, updated) = order
    return {
        "id": id_,
        "user_id": user_id,
        "status": status,
        "total_amount": total,
        "currency": currency,
        "payment_status": payment_status,
        "shipping_address": address,
        "items": items,
        "status_history": history,
        "created_at": created,
        "updated_at": updated,
    }


def list_orders(user: User, args: dict[str, Any]) -> dict[str, Any]:
    """A page of the user's orders, newest first; with `all`, an admin's sees everyone's."""
    if args.get("all") and not user.is_admin:
        raise Forbidden("all=true needs admin privileges")
    return _page_of_orders(args, None if args.get("all") else user.id)


def _page_of_orders(args: dict[str, Any], user_id: int | None) -> dict[str, Any]:
    """A page of orders, newest first; `user_id=None` means every user's."""
    stmt = _order_query(selectinload).order_by(Order.created_at.desc(), Order.id.desc())
    if user_id is not None:
        stmt = stmt.where(Order.user_id == user_id)
    if args.get("status"):
        stmt = stmt.where(Order.status == args["status"])
    page = paginate(stmt, args["page"], args["per_page"])
    for order in page["items"]:
        _history_as_read(order)
    return page


def _history_as_read(order: Order) -> None:
    """The order's history up to its status as its row was read. A page reads
    its orders' rows, then their histories (another statement: each runs on
    its own in a read request), so a change committed in between was in the
    history and not in the row: "pending" with a history ending "cancelled"
    (found by review). The workflow never returns to a status, so the row's
    status is one event of the history, and the events after it are that
    later change's."""
    history = order.status_history
    for n, event in enumerate(history):
        if event.status == order.status:
            if n + 1 < len(history):
                set_committed_value(order, "status_history", history[: n + 1])
            return


def user_orders(args: dict[str, Any], user_id: int) -> dict[str, Any]:
    """A page of one user's orders (for an admin); 404 for no such user."""
    if db.session.get(User, user_id) is None:
        raise NotFound("User not found")
    return _page_of_orders(args, user_id)


def _set_if_status(order: Order, expected: str, **values: Any) -> bool:
    """Compare-and-set: write `values` (and `updated_at`) only while the order
    still has status `expected`, so of two racing changes only one applies.
    True if it applied; the loaded order then shows the new values."""
    values["updated_at"] = utcnow()
    changed = db.session.execute(
        update(Order)
        .where(Order.id == order.id, Order.status == expected)
        .values(**values)
        .execution_options(synchronize_session=False)
    ).rowcount
    if changed != 1:
        return False
    for name, value in values.items():
        set_committed_value(order, name, value)
    return True


def change_status(order: Order, new: str) -> None:
    """Move the order along the workflow; a cancellation puts its items back in
    stock and refunds a paid order."""
    if not can_move(order.status, new):
        raise InvalidTransition(order.status, new)
    if not _set_if_status(order, order.status, status=new):
        current = db.session.scalar(select(Order.status).where(Order.id == order.id))
        raise InvalidTransition(current, new)
    refunded = None
    if new == OrderStatus.CANCELLED:
        restock(order)  # in product-id order, as checkout takes them
        # A paid order is refunded last, after every step that can refuse: a
        # failed refund raises and the whole cancel rolls back, so stock never
        # returns while the money has not.
        from app.services.payments import refund_if_paid  # payments builds on this module

        refunded = refund_if_paid(order)
    order.status_history.append(
        OrderStatusEvent(order_id=order.id, status=new, at=order.updated_at)
    )
    db.session.flush()
    notifications.order_status_changed(order, refunded=refunded)


def _change_address(order: Order, address: str) -> None:
    if order.status != OrderStatus.PENDING or not _set_if_status(
        order, OrderStatus.PENDING, shipping_address=address
    ):
        raise OrderNotPending("The shipping address can only change while the order is pending")


def lock_order(
    order_id: int, user: User | None = None, *, skip_locked: bool = False
) -> Order | None:
    """The order (`user`'s only, if given) with its items and history, its
    row locked until the transaction ends (FOR NO KEY UPDATE on PostgreSQL;
    SQLite's write transaction already holds the database): a status change
    decides from the status as it is, not from one a concurrent pay or
    cancel is replacing (which made a cancel racing a pay a 409 "from
    processing", a move the workflow allows). With `skip_locked`, an order
    another transaction holds is None at once instead of waited for."""
    lock = (
        select(Order.id)
        .where(Order.id == order_id)
        .with_for_update(key_share=True, skip_locked=skip_locked)
    )
    if user is not None:
        lock = lock.where(Order.user_id == user.id)
    if db.session.scalar(lock) is None:
        return None
    stmt = (
        select(Order)
        .options(joinedload(Order.items), joinedload(Order.status_history))
        .where(Order.id == order_id)
        .execution_options(populate_existing=True)
    )
    return db.session.scalars(stmt).unique().one()


def _locked_order(user: User, order_id: int) -> Order:
    """`lock_order` for the owner or an admin; a 404 otherwise."""
    order = lock_order(order_id, None if user.is_admin else user)
    if order is None:
        raise NotFound("Order not found")
    return order


def update_order(user: User, order_id: int, data: dict[str, Any]) -> Order:
    """Owner: address while pending, or cancel. Admin: any workflow move."""
    order = _locked_order(user, order_id)
    status = data.get("status")
    if status is not None and not user.is_admin and status != OrderStatus.CANCELLED:
        raise Forbidden("Only an admin can set that status")
    if "shipping_address" in data:
        _change_address(order, data["shipping_address"])
    if status is not None:
        change_status(order, status)
    return order


def cancel_order(user: User, order_id: int) -> Order:
    """Cancel and put every item back in stock, exactly once."""
    order = _locked_order(user, order_id)
    change_status(order, OrderStatus.CANCELLED)
    return order
