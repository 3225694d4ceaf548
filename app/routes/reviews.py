"""Reviews: /api/products/<id>/reviews and /api/reviews/<id>."""

from flask_jwt_extended import current_user

from app.schemas.review import (
    ReviewPageSchema,
    ReviewQuerySchema,
    ReviewSchema,
    ReviewUpdateSchema,
)
from app.services import reviews
from app.web.blueprint import Blueprint

blp = Blueprint("reviews", __name__, description="Product reviews by verified buyers")


@blp.route("/products/<int:product_id>/reviews", methods=["GET"])
@blp.arguments(ReviewQuerySchema, location="query", as_kwargs=False)
@blp.response(200, ReviewPageSchema)
@blp.alt_response(404, description="No such product")
def list_reviews(args, product_id):
    """A page of a product's reviews (newest first by default)."""
    return reviews.list_reviews(product_id, args)


@blp.route("/products/<int:product_id>/reviews", methods=["POST"])
@blp.private
@blp.arguments(ReviewSchema)
@blp.response(201, ReviewSchema)
@blp.alt_response(403, description="not_a_buyer: no delivered order contains this product")
@blp.alt_response(404, description="No such product")
@blp.alt_response(409, description="already_reviewed: the caller has reviewed this product")
def create_review(data, product_id):
    """Review a product the caller has received (one review per product)."""
    return reviews.create_review(current_user, product_id, data)


@blp.route("/reviews/<int:review_id>", methods=["PUT"])
@blp.private
@blp.arguments(ReviewUpdateSchema(partial=True))
@blp.response(200, ReviewSchema)
@blp.alt_response(404, description="No such review of the caller's")
def update_review(data, review_id):
    """Change the caller's own review (any of rating, title, body)."""
    return reviews.update_review(current_user, review_id, data)


@blp.route("/reviews/<int:review_id>", methods=["DELETE"])
@blp.private
@blp.response(204)
@blp.alt_response(404, description="No such review of the caller's (admins: any review)")
def delete_review(review_id):
    """Delete the caller's own review (admins: any review)."""
    reviews.delete_review(current_user, review_id)
