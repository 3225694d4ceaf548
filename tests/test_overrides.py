"""The private internals `app/web/overrides.py` relies on, checked against the
installed libraries: an upgrade that moves one fails here, by name, instead of
silently dropping part of the OpenAPI document."""

from __future__ import annotations

import inspect
from importlib.metadata import version

import flask_smorest
import marshmallow as ma
import pytest

from app.schemas.product import ProductSchema
from app.web import overrides
from app.web.blueprint import Blueprint
from app.web.openapi import ERROR_DESCRIPTIONS, standard_error_responses


@pytest.mark.parametrize("package", sorted(overrides.CHECKED_AGAINST))
def test_the_libraries_are_the_versions_the_overrides_were_checked_against(package):
    assert version(package) == overrides.CHECKED_AGAINST[package], (
        f"{package} was upgraded: re-read app/web/overrides.py against it, then update "
        "CHECKED_AGAINST"
    )


def test_init_app_still_registers_error_components_through_register_responses(app):
    from flask_smorest.spec import APISpecMixin

    assert "self._register_responses()" in inspect.getsource(APISpecMixin)
    assert list(inspect.signature(APISpecMixin._register_responses).parameters) == ["self"]
    spec = app.test_client().get("/api/openapi.json").get_json()
    unauthorized = spec["components"]["responses"]["UNAUTHORIZED"]
    assert unauthorized["description"] == ERROR_DESCRIPTIONS[401]
    assert unauthorized["content"]["application/json"]["schema"]["$ref"].endswith("/Error")


def test_blueprints_still_run_their_prepare_doc_callbacks():
    blp = Blueprint("probe", __name__)
    assert isinstance(blp._prepare_doc_cbks, list)
    assert standard_error_responses in blp._prepare_doc_cbks
    assert "for func in self._prepare_doc_cbks" in inspect.getsource(flask_smorest.Blueprint)


def test_decorators_still_record_into_apidoc_which_reaches_doc_callbacks(app):
    blp = Blueprint("probe", __name__)

    @blp.private(admin=True)
    def view():
        """Probe."""

    assert view._apidoc["access"] == "admin"
    spec = app.test_client().get("/api/openapi.json").get_json()
    admin_only = spec["paths"]["/api/products/{product_id}"]["delete"]["responses"]
    assert "403" in admin_only  # added from doc_info["access"]


def test_schema_classes_still_keep_their_fields_in_declared_fields():
    fields = overrides.declared_fields(ProductSchema)
    assert set(fields) == set(ProductSchema().fields)
    assert all(isinstance(field, ma.fields.Field) for field in fields.values())


def test_use_verified_jwt_leaves_g_as_the_librarys_own_verification_does(app, user_token):
    from flask import g
    from flask_jwt_extended import current_user, get_jwt, get_jwt_header, verify_jwt_in_request

    def jwt_state() -> dict:
        return {name: value for name, value in vars(g).items() if name.startswith("_jwt_extended")}

    headers = {"Authorization": f"Bearer {user_token}"}
    with app.test_request_context(headers=headers):
        verify_jwt_in_request()
        by_library = jwt_state()
        header, claims = get_jwt_header(), get_jwt()
    with app.test_request_context(headers=headers):
        overrides.use_verified_jwt(dict(header), dict(claims))
        ours = jwt_state()
        assert current_user.id == int(claims["sub"]) and get_jwt() == claims
    assert set(ours) == set(by_library) and len(ours) == 4
    assert {k: v for k, v in ours.items() if k != "_jwt_extended_jwt_user"} == {
        k: v for k, v in by_library.items() if k != "_jwt_extended_jwt_user"
    }
    assert ours["_jwt_extended_jwt_user"]["loaded_user"].id == int(claims["sub"])
