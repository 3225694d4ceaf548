"""The catalog: /api/products."""

from flask_jwt_extended import current_user

from app.schemas.product import (
    FacetsSchema,
    ProductFilterSchema,
    ProductPageSchema,
    ProductQuerySchema,
    ProductSchema,
    ProductUpdateSchema,
    SuggestionsSchema,
    SuggestQuerySchema,
    dump_product,
    dump_product_page,
)
from app.services import catalog, search
from app.services.facets import facets
from app.web.blueprint import Blueprint

blp = Blueprint("products", __name__, description="Product catalog")

# The query schemas are given as instances: given a class, webargs builds a new
# schema on every request (~0.29 ms of the list's ~0.39 ms parse; the spec is
# the same either way).


@blp.route("", methods=["GET"])
@blp.catalog_read
@blp.arguments(ProductQuerySchema(), location="query", as_kwargs=False)
@blp.response(200, ProductPageSchema, dump=dump_product_page)
def list_products(args):
    """A page of products, filtered, searched and sorted."""
    return catalog.list_products(args)


@blp.route("/facets", methods=["GET"])
@blp.catalog_read
@blp.arguments(ProductFilterSchema(), location="query", as_kwargs=False)
@blp.response(200, FacetsSchema)
def product_facets(args):
    """Counts for the filter sidebar over the products matching the filters."""
    return facets(args)


@blp.route("/suggest", methods=["GET"])
@blp.catalog_read
@blp.arguments(SuggestQuerySchema(), location="query", as_kwargs=False)
@blp.response(200, SuggestionsSchema)
def suggest(args):
    """Up to 10 live product names with a word starting with `q`, best first."""
    return {"suggestions": search.suggest(args["q"])}


@blp.route("/<int:product_id>", methods=["GET"])
@blp.catalog_read
@blp.response(200, ProductSchema, dump=dump_product)
@blp.alt_response(404, description="No such product")
def get_product(product_id):
    """One product."""
    return catalog.read_product(product_id)


@blp.route("", methods=["POST"])
@blp.private(admin=True)
@blp.arguments(ProductSchema)
@blp.response(201, ProductSchema)
def create_product(data):
    """Add a product (admin)."""
    return catalog.create_product(data, current_user)


@blp.route("/<int:product_id>", methods=["PUT"])
@blp.private(admin=True)
@blp.arguments(ProductUpdateSchema(partial=True))
@blp.response(200, ProductSchema)
@blp.alt_response(404, description="No such product")
def update_product(data, product_id):
    """Change any subset of a product's writable fields (admin)."""
    return catalog.update_product(product_id, data, current_user)


@blp.route("/<int:product_id>", methods=["DELETE"])
@blp.private(admin=True)
@blp.response(204)
@blp.alt_response(404, description="No such product")
def delete_product(product_id):
    """Remove a product from the catalog and from every cart (admin)."""
    catalog.delete_product(product_id)
