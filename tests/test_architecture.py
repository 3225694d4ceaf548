"""The layers of docs/ARCHITECTURE.md, checked on the import graph of app/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parent.parent / "app"

ENTRY = {"app", "app.commands", "app.tasks"}
# layer -> the layers its modules may import (its own is always allowed)
ALLOWED: dict[str, set[str]] = {
    "entry": {
        "routes",
        "web",
        "schemas",
        "services",
        "db",
        "models",
        "errors",
        "extensions",
        "utils",
    },
    "routes": {"web", "schemas", "services", "errors", "extensions", "utils"},
    "web": {"services", "schemas", "db", "models", "errors", "extensions", "utils"},
    "schemas": {"models", "errors", "utils"},
    "services": {"db", "models", "errors", "extensions", "utils"},
    "db": {"models", "errors", "extensions", "utils"},
    "models": {"extensions", "utils"},
    "errors": {"extensions", "utils"},
    "extensions": set(),
    "utils": set(),
}


def layer(module: str) -> str:
    if module in ENTRY or module.startswith("app.tasks."):
        return "entry"
    parts = module.split(".")
    name = parts[1] if len(parts) > 1 else ""
    if name in ALLOWED:
        return name
    raise AssertionError(f"{module} is in no layer: add it to docs/ARCHITECTURE.md and here")


def module_name(path: Path) -> str:
    parts = path.relative_to(APP.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[int, str, str | None]]:
    """(line, module, name) for every import of an app module in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name, None) for a in node.names if a.name.startswith("app")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("app"):
            found += [(node.lineno, node.module, a.name) for a in node.names]
    return found


def target(module: str, name: str | None) -> str:
    """`from app import models` imports app.models; `from app.x import y` app.x."""
    if module == "app" and name is not None:
        return f"app.{name}"
    return module


MODULES = sorted(APP.rglob("*.py"))


def test_every_module_is_in_a_layer():
    for path in MODULES:
        layer(module_name(path))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(APP.parent)))
def test_no_module_imports_a_layer_above_it(path):
    source = layer(module_name(path))
    wrong = [
        f"{path.relative_to(APP.parent)}:{line} imports {target(module, name)}"
        for line, module, name in imports(path)
        if (dest := layer(target(module, name))) != source and dest not in ALLOWED[source]
    ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("path", sorted((APP / "routes").glob("*.py")), ids=lambda p: p.name)
def test_routes_never_touch_the_session(path):
    names = {name for _, module, name in imports(path) if module == "app.extensions"}
    assert "db" not in names, f"{path.name}: a view calls a service, never db"
    assert "session.commit()" not in path.read_text()


def test_one_order_status_enum_drives_constraint_schemas_openapi_and_workflow(client):
    from app.models import Order, OrderStatus
    from app.services.workflow import TRANSITIONS

    values = [status.value for status in OrderStatus]
    check = next(c for c in Order.__table__.constraints if c.name == "ck_orders_status_known")
    assert str(check.sqltext) == "status IN (" + ", ".join(f"'{v}'" for v in values) + ")"
    assert set(TRANSITIONS) == set(OrderStatus)
    schemas = client.get("/api/openapi.json").get_json()["components"]["schemas"]
    for name in ("OrderUpdate", "OrderResponse"):
        assert schemas[name]["properties"]["status"]["enum"] == values
