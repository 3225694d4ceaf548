"""Inventory: every change of a product's stock goes through `move_stock`, one
guarded UPDATE that also writes the change to the ledger (stock_movements) and
raises the low-stock alert when the change crosses the product's threshold; a
checkout takes all its lines at once with `take_stock`, under the same rules."""

from __future__ import annotations

import functools
import logging
from typing import Any

from sqlalchemy import Integer, Update, bindparam, case, insert, literal, select, update
from sqlalchemy.engine import Row

from app.db import paginate
from app.errors import InsufficientStock, NotFound, OutOfStock, StockLimit, ValidationFailed
from app.extensions import db
from app.models import Order, Product, StockMovement, User
from app.models.inventory import pending_movements
from app.models.product import MAX_STOCK, STOCK_COLUMN_MAX
from app.services import matches, notifications

log = logging.getLogger(__name__)


def move_stock(
    product_id: int,
    delta: int,
    reason: str,
    *,
    order: Order | None = None,
    actor_id: int | None = None,
    note: str | None = None,
    live_only: bool = True,
    expect: int | None = None,
    ceiling: int = STOCK_COLUMN_MAX,
    was_low: bool | None = None,
) -> Product | None:
    """Add `delta` to the product's stock and record the movement, in the
    caller's transaction. One UPDATE ... RETURNING, guarded so the stock stays
    within 0..INTEGER max (and, with `expect`, only if the stock is still that):
    concurrent moves of one product serialize on its row, and each sees the
    stock the previous one left. An increase may not take the stock past
    `ceiling`. `was_low`: whether the product was low before the caller's
    transaction changed its threshold (a product PUT), so the alert is decided
    by the edit as a whole. Returns the refreshed product, or None when the
    guard refused (nothing changed) - the caller says why."""
    # The bound is computed here, not as `stock + delta` in SQL: that sum could
    # overflow INTEGER on PostgreSQL before the comparison.
    conditions = [
        Product.id == product_id,
        Product.stock >= -delta if delta < 0 else Product.stock <= ceiling - delta,
    ]
    if live_only:
        conditions.append(Product.deleted_at.is_(None))
    if expect is not None:
        conditions.append(Product.stock == expect)
    # No autoflush: a checkout's order is not ready to be written yet.
    with db.session.no_autoflush:
        product = db.session.execute(
            update(Product)
            .where(*conditions)
            .values(stock=Product.stock + delta)
            .returning(Product),
            execution_options={
                "synchronize_session": False,
                "populate_existing": True,
                **matches.STOCK_LEFT_TO_CALLER,
            },
        ).scalar_one_or_none()
    if product is None:
        return None
    matches.stock_crossed_zero(db.session, product.stock - delta, product.stock)
    if was_low is None:
        was_low = product.stock - delta <= product.low_stock_threshold
    movement = {
        "product_id": product_id,
        "delta": delta,
        "stock_after": product.stock,
        "reason": reason,
        "actor_id": actor_id,
        "note": note,
        # Both numbers come from the one row version this UPDATE wrote: of
        # several concurrent moves, exactly one takes the stock across.
        "low_stock_alert": not was_low and is_low(product),
    }
    _record(movement, order)
    if movement["low_stock_alert"]:
        low_stock_alert(product)
    return product


def take_stock(quantities: dict[int, int]) -> list[Row]:
    """Take a checkout's lines ({product id: units}) from stock, all or
    nothing, in one guarded UPDATE ... RETURNING for every line (it was one
    UPDATE per line): a line is taken only from a live product with enough
    stock. On PostgreSQL the rows are locked in product-id order first (the
    subquery's FOR UPDATE sorts before it locks), so checkouts sharing
    products never deadlock; SQLite runs one writer at a time.

    Returns the products' rows (id, name, price, stock after,
    low_stock_threshold) in product-id order; the caller writes their ledger
    rows with `record_taken` once the order has an id. A short line raises
    OutOfStock for the first such product, after the other lines were taken:
    the raise rolls the caller's unit of work back."""
    taken, short = _update_lines(_take_statement, quantities)
    if short is not None:
        name, stock = db.session.execute(
            select(Product.name, Product.stock).where(Product.id == short)
        ).one()
        raise OutOfStock(name, stock, short)
    for row in taken:
        matches.stock_crossed_zero(db.session, row.stock + quantities[row.id], row.stock)
    taken.sort(key=lambda row: row.id)
    return taken


def _update_lines(build, quantities: dict[int, int]) -> tuple[list[Row], int | None]:
    """Run a per-line UPDATE ... RETURNING (`build(lines, locking)`, cached)
    for `quantities`: its rows, and the first product id it left alone
    (None: it updated every line)."""
    locking = db.session.get_bind().dialect.name == "postgresql"
    rows = db.session.execute(
        build(len(quantities), locking),
        _lines(quantities),
        execution_options=matches.STOCK_LEFT_TO_CALLER,
    ).all()
    missed = set(quantities) - {row.id for row in rows}
    return rows, min(missed) if missed else None


def _lines(quantities: dict[int, int]) -> dict[str, int]:
    """The parameters of a per-line statement (id0, quantity0, ...), in product-id order."""
    params = {}
    for n, product_id in enumerate(sorted(quantities)):
        params[f"id{n}"], params[f"quantity{n}"] = product_id, quantities[product_id]
    return params


def _per_line(lines: int, locking: bool) -> tuple[Any, list[Any]]:
    """A per-line statement's quantity (a CASE on the product id) and its
    conditions: one of the lines' products and, on PostgreSQL, their rows
    locked in product-id order first (the subquery's FOR NO KEY UPDATE sorts
    before it locks), as every writer of several products locks them."""
    ids = [bindparam(f"id{n}", type_=Integer) for n in range(lines)]
    quantity = case(
        *((Product.id == ids[n], bindparam(f"quantity{n}", type_=Integer)) for n in range(lines))
    )
    conditions = [Product.id.in_(ids)]
    if locking:
        locked = select(Product.id).where(Product.id.in_(ids)).order_by(Product.id)
        conditions.append(Product.id.in_(locked.with_for_update(key_share=True)))
    return quantity, conditions


@functools.cache
def _take_statement(lines: int, locking: bool) -> Update:
    """`take_stock`'s UPDATE for that many lines (parameters id0, quantity0,
    ...), built once: building it took longer than running it on SQLite."""
    quantity, conditions = _per_line(lines, locking)
    conditions += [Product.stock >= quantity, Product.deleted_at.is_(None)]
    return (
        update(Product)
        .where(*conditions)
        .values(stock=Product.stock - quantity)
        .returning(
            Product.id, Product.name, Product.price, Product.stock, Product.low_stock_threshold
        )
        .execution_options(synchronize_session=False)
    )


def record_taken(taken: list[Row], quantities: dict[int, int], order_id: int) -> None:
    """The ledger rows of a checkout's `take_stock`, in one INSERT, and the
    low-stock alert of each product the checkout took across its threshold."""
    deltas = {product_id: -units for product_id, units in quantities.items()}
    _record_lines(taken, deltas, "order", order_id)


def _record_lines(rows: list[Row], deltas: dict[int, int], reason: str, order_id: int) -> None:
    """The ledger rows of a per-line UPDATE's `rows` (id, stock after,
    low_stock_threshold) that moved each product by `deltas`, in one INSERT,
    and the low-stock alert of each product taken across its threshold (a
    stock that rose crosses none)."""
    movements, alerted = [], []
    for row in sorted(rows, key=lambda row: row.id):
        delta = deltas[row.id]
        crossed = row.stock - delta > row.low_stock_threshold >= row.stock
        movements.append(
            {
                "product_id": row.id,
                "delta": delta,
                "stock_after": row.stock,
                "reason": reason,
                "order_id": order_id,
                "actor_id": None,
                "note": None,
                "low_stock_alert": crossed,
            }
        )
        if crossed:
            alerted.append(row)
    db.session.execute(insert(StockMovement.__table__), movements)
    if alerted:
        low_stock_alert(*alerted)


def restock(order: Order) -> None:
    """Put a cancelled order's lines back in stock, deleted products or not,
    as `take_stock` and `record_taken` took them: one guarded UPDATE ...
    RETURNING for every line (rows locked in product-id order on PostgreSQL)
    and one INSERT of their ledger rows (it was an UPDATE and an INSERT per
    line). Refused (409) only if a line would pass what the column holds;
    the raise rolls the caller's unit of work back, the other lines too."""
    quantities: dict[int, int] = {}
    for item in order.items:
        if item.product_id is not None:  # a product removed from the table
            quantities[item.product_id] = quantities.get(item.product_id, 0) + item.quantity
    if not quantities:
        return
    restocked, short = _update_lines(_restock_statement, quantities)
    if short is not None:
        name = next(item.product_name for item in order.items if item.product_id == short)
        raise StockLimit(
            f"Cannot put {quantities[short]} of '{name}' back in stock: "
            f"it would pass the maximum of {STOCK_COLUMN_MAX}"
        )
    for row in restocked:
        matches.stock_crossed_zero(db.session, row.stock - quantities[row.id], row.stock)
    _record_lines(restocked, quantities, "cancel", order.id)


@functools.cache
def _restock_statement(lines: int, locking: bool) -> Update:
    """`restock`'s UPDATE for that many lines, built once. The bound is the
    column's maximum less the line's units (computed on the parameter side:
    `stock + q` could overflow INTEGER on PostgreSQL before the comparison)."""
    quantity, conditions = _per_line(lines, locking)
    conditions.append(Product.stock <= STOCK_COLUMN_MAX - quantity)
    return (
        update(Product)
        .where(*conditions)
        .values(stock=Product.stock + quantity)
        .returning(Product.id, Product.stock, Product.low_stock_threshold)
        .execution_options(synchronize_session=False)
    )


def stock_left(product_id: int) -> int:
    """The product's stock now (0 if it is gone), without flushing the
    caller's pending rows (an order still being built)."""
    with db.session.no_autoflush:
        left = db.session.scalar(select(Product.stock).where(Product.id == product_id))
    return left or 0


def record_created(product: Product, actor: User | None = None) -> None:
    """The first movement of a new product: its initial stock."""
    movement = {"product_id": product.id, "delta": product.stock, "stock_after": product.stock}
    _record({**movement, "actor_id": actor.id if actor is not None else None})


def record_opening_balances() -> None:
    """A `created` movement for every product that has none (after a bulk load)."""
    ledgered = select(StockMovement.id).where(StockMovement.product_id == Product.id)
    db.session.execute(
        insert(StockMovement).from_select(
            ["product_id", "delta", "stock_after", "reason", "created_at"],
            select(
                Product.id, Product.stock, Product.stock, literal("created"), Product.created_at
            ).where(~ledgered.exists()),
        )
    )


def _record(movement: dict[str, Any], order: Order | None = None) -> None:
    """Write one movement now; a checkout's wait for its order's id and are
    written with the order, in one INSERT (`app.models.inventory`)."""
    movement.setdefault("reason", "created")
    if order is not None and order.id is None:
        pending_movements(order).append(movement)
        return
    movement["order_id"] = order.id if order is not None else None
    db.session.execute(insert(StockMovement), [movement])


def is_low(product: Any) -> bool:
    """At or below its threshold: in the low-stock report, alerted when it becomes so."""
    return product.stock <= product.low_stock_threshold


def alert_if_newly_low(product: Product, was_low: bool) -> None:
    """The alert of an edit that moved no stock but made the product low (a
    raised threshold). The caller holds the row's lock since it read
    `was_low`, so a racing sale sees the new threshold and alerts nothing
    more; a lowered threshold that leaves the product above it re-arms the
    alert, as a rise of stock does."""
    if not was_low and is_low(product):
        low_stock_alert(product)


def low_stock_alert(*products: Any) -> None:
    """Tell every admin that each of `products` just fell to or below its
    threshold: emails recorded in the outbox, in the transaction of the stock
    change (the admins read once, however many products a checkout took
    across)."""
    for product in products:
        log.info(
            "low stock: product %s at %s, threshold %s",
            product.id,
            product.stock,
            product.low_stock_threshold,
        )
    notifications.low_stock(*products)


def adjust_stock(product_id: int, delta: int, note: str | None, actor: User) -> Product:
    """An admin's relative change: added atomically, never below zero."""
    moved = move_stock(
        product_id, delta, "adjustment", actor_id=actor.id, note=note, ceiling=MAX_STOCK
    )
    if moved is not None:
        return moved
    # The guard refused: find out why under the row's lock, from the stock as
    # it is now (a concurrent order or restock may have moved it since).
    product = db.session.get(
        Product, product_id, with_for_update={"key_share": True}, populate_existing=True
    )
    if product is None or product.deleted_at is not None:
        raise NotFound("Product not found")
    if product.stock + delta < 0:
        raise InsufficientStock(product, delta)
    if product.stock + delta > MAX_STOCK:
        raise ValidationFailed(errors={"delta": [f"The stock would pass {MAX_STOCK}."]})
    # Neither: the stock moved between the guard and the lock; under the lock
    # the same guarded move now applies.
    moved = move_stock(
        product_id, delta, "adjustment", actor_id=actor.id, note=note, ceiling=MAX_STOCK
    )
    if moved is None:  # pragma: no cover - the row is locked
        raise RuntimeError("stock changed under a row lock")
    return moved


def set_stock(product: Product, stock: int, actor: User, *, was_low: bool | None = None) -> bool:
    """An absolute stock from a product PUT, recorded as an adjustment of the
    difference (False: it was that already, nothing moved). The row is locked
    while the difference is taken, and the guarded UPDATE applies it only to
    the stock it was computed from. `was_low`: as for `move_stock`."""
    current = db.session.scalar(
        select(Product.stock).where(Product.id == product.id).with_for_update(key_share=True)
    )
    if current is None or current == stock:
        return False
    delta = stock - current
    if move_stock(
        product.id, delta, "adjustment", actor_id=actor.id, expect=current, was_low=was_low
    ):
        return True
    raise RuntimeError("stock changed under a row lock")  # pragma: no cover - cannot happen


def stock_movements(product_id: int, args: dict[str, Any]) -> dict[str, Any]:
    """A page of the product's ledger, newest first. A deleted product's ledger
    stays readable: it explains the orders that still name it."""
    if db.session.scalar(select(Product.id).where(Product.id == product_id)) is None:
        raise NotFound("Product not found")
    stmt = (
        select(StockMovement)
        .where(StockMovement.product_id == product_id)
        .order_by(StockMovement.id.desc())
    )
    return paginate(stmt, args["page"], args["per_page"])


def low_stock(args: dict[str, Any]) -> dict[str, Any]:
    """A page of the live products at or below their threshold, lowest stock first."""
    stmt = (
        select(Product)
        .where(Product.deleted_at.is_(None), Product.stock <= Product.low_stock_threshold)
        .order_by(Product.stock.asc(), Product.id.asc())
    )
    return paginate(stmt, args["page"], args["per_page"])
