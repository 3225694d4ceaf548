"""Reviews by verified buyers, and the product's rating aggregate that follows them."""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import BigInteger, and_, case, cast, exists, literal, select, update
from sqlalchemy.orm import contains_eager

from app.db import upsert
from app.errors import AlreadyReviewed, NotABuyer, NotFound
from app.extensions import db
from app.models import Order, OrderItem, OrderStatus, Product, Review, User
from app.models.types import utcnow
from app.services.catalog import get_product, lock_live_product

SORTS = {
    "-created_at": (Review.created_at.desc(), Review.id.desc()),
    "created_at": (Review.created_at.asc(), Review.id.asc()),
    "-rating": (Review.rating.desc(), Review.id.desc()),
    "rating": (Review.rating.asc(), Review.id.asc()),
}


def _move_rating(product_id: int, count: int, total: int) -> None:
    """Add `count` reviews worth `total` stars to the product's aggregate in one
    guarded UPDATE: the database adds to the row it holds locked, so concurrent
    writers each land their change (no read-modify-write). The average is
    derived from the new sum and count in the same statement, rounded half up
    to hundredths in integer arithmetic (exact on both databases). A 404 if
    the product is no longer live: an edit or a delete of a review read it
    live, unlocked, and a product delete may have committed while this
    UPDATE waited for its row (found by review: a 200 / 204 that wrote the
    rating onto the deleted product)."""
    new_count = Product.rating_count + count
    new_sum = Product.rating_sum + total
    # In BIGINT: 200 * rating_sum passes INTEGER from 10,737,418 stars on
    # (some 2.1 million five-star reviews), a 500 on PostgreSQL for every
    # later review of the product (found by review).
    hundredths = (200 * cast(new_sum, BigInteger) + new_count) // (2 * new_count)
    moved = db.session.execute(
        update(Product)
        .where(Product.id == product_id, Product.deleted_at.is_(None))
        .values(
            rating_count=new_count,
            rating_sum=new_sum,
            rating_average=case((new_count > 0, hundredths / literal(100.0)), else_=None),
            # The product as the catalog shows it changed (and with it any
            # cached copy keyed on updated_at).
            updated_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:
        raise NotFound("Review not found")


def _is_buyer(user_id: int, product_id: int) -> bool:
    return bool(
        db.session.scalar(
            select(
                exists().where(
                    OrderItem.product_id == product_id,
                    Order.id == OrderItem.order_id,
                    Order.user_id == user_id,
                    Order.status == OrderStatus.DELIVERED,
                )
            )
        )
    )


def _reviews():
    """Reviews of live products, with their authors, in one query."""
    return (
        select(Review)
        .join(Product, and_(Product.id == Review.product_id, Product.deleted_at.is_(None)))
        .join(Review.user)
        .options(contains_eager(Review.user))
    )


def list_reviews(product_id: int, args: dict[str, Any]) -> dict[str, Any]:
    """A page of a live product's reviews, in two queries: the product (a 404
    for no live one) and the page. The product row carries the count
    (rating_count), read again in the page's own statement: a read runs
    each statement in its own snapshot, and a review written between two
    statements was listed beside a total that did not count it (found by
    review). An empty first page has none; a page past the end reads the
    count again (the first read's was answered beside an empty first page
    after a delete committed between the two: found by review)."""
    get_product(product_id)  # a 404 for no live product
    page, per_page = args["page"], args["per_page"]
    rows = db.session.execute(
        _reviews()
        .add_columns(Product.rating_count)
        .where(Review.product_id == product_id)
        .order_by(*SORTS[args["sort"]])
        .limit(per_page)
        .offset((page - 1) * per_page)
    ).all()
    if rows:
        total = rows[0][1]
    elif page == 1:
        total = 0
    else:
        total = db.session.scalar(select(Product.rating_count).where(Product.id == product_id)) or 0
    return {
        "items": [row[0] for row in rows],
        "page": page,
        "per_page": per_page,
        "total": total,
        "pages": math.ceil(total / per_page),
    }


def create_review(user: User, product_id: int, data: dict[str, Any]) -> Review:
    """A verified buyer's review of a live product; a second one is a 409.
    The product is locked first (its rating is written last), so a delete
    or a PUT of it comes wholly before or after."""
    lock_live_product(product_id)
    if not _is_buyer(user.id, product_id):
        raise NotABuyer()
    # ON CONFLICT DO NOTHING: a concurrent duplicate waits for the first and
    # then inserts nothing, instead of an IntegrityError that ends the transaction.
    now = utcnow()  # one instant: a review nobody edited shows updated_at == created_at
    review_id = db.session.scalar(
        upsert(Review)
        .values(
            product_id=product_id,
            user_id=user.id,
            created_at=now,
            updated_at=now,
            **_defaults(data),
        )
        .on_conflict_do_nothing(index_elements=["user_id", "product_id"])
        .returning(Review.id)
    )
    if review_id is None:
        raise AlreadyReviewed()
    _move_rating(product_id, 1, data["rating"])
    return _load(review_id)


def update_review(user: User, review_id: int, data: dict[str, Any]) -> Review:
    """The author changes any of rating, title, body; anyone else gets a 404."""
    review = _locked(review_id, author_id=user.id)
    if "rating" in data and data["rating"] != review.rating:
        _move_rating(review.product_id, 0, data["rating"] - review.rating)
    for field, value in data.items():
        setattr(review, field, value)
    db.session.flush()
    return review


def delete_review(user: User, review_id: int) -> None:
    """The author, or an admin, removes a review; anyone else gets a 404."""
    review = _locked(review_id, author_id=None if user.is_admin else user.id)
    _move_rating(review.product_id, -1, -review.rating)
    db.session.delete(review)
    db.session.flush()


def _defaults(data: dict[str, Any]) -> dict[str, Any]:
    return {"title": "", "body": "", **data}


def _load(review_id: int) -> Review:
    return db.session.scalars(_reviews().where(Review.id == review_id)).one()


def _locked(review_id: int, author_id: int | None) -> Review:
    """The review of a live product, locked until the transaction ends (so a
    concurrent edit or delete sees this one's rating, not a stale one)."""
    stmt = _reviews().where(Review.id == review_id)
    if author_id is not None:
        stmt = stmt.where(Review.user_id == author_id)
    review = db.session.scalars(
        stmt.with_for_update(of=Review).execution_options(populate_existing=True)
    ).one_or_none()
    if review is None:
        raise NotFound("Review not found")
    return review
