"""The interactive API documentation: GET /api/docs.

Swagger UI from the files the `flask-swagger-ui` package installs, served here
under /api/docs/assets/, so the page fetches nothing from a CDN. The page has
no inline script (a Content-Security-Policy with `script-src 'self'` fits it):
its settings sit in data attributes that `swagger-init.js` reads. These routes
are not operations of the API, so they are not in the OpenAPI document."""

from __future__ import annotations

from importlib.resources import files

from flask import Blueprint, Response, render_template, send_from_directory, url_for

blp = Blueprint("docs", __name__, url_prefix="/api/docs")


def swagger_ui_dist() -> str:
    """The folder of Swagger UI's built files inside the installed package."""
    return str(files("flask_swagger_ui") / "dist")


@blp.get("")
def swagger_ui() -> str:
    """The Swagger UI page for /api/openapi.json."""
    return render_template("docs/swagger_ui.html", spec_url=url_for("api-docs.openapi_json"))


@blp.get("/swagger-init.js")
def swagger_init() -> Response:
    """The page's start-up script (kept out of the page so no inline script is needed)."""
    return Response(render_template("docs/swagger-init.js"), mimetype="text/javascript")


@blp.get("/assets/<path:filename>")
def asset(filename: str) -> Response:
    """Swagger UI's own files (JS, CSS, icons)."""
    return send_from_directory(swagger_ui_dist(), filename)
