"""Review (docs8): README.md, docs/API.md and docs/ARCHITECTURE.md against
the code as it is, checked mechanically so that the next endpoint, setting or
module cannot go undocumented (or documented wrong) unnoticed:

- every operation of the served OpenAPI document has a curl example in the
  README and a line in docs/API.md, and neither documents an operation the
  app does not serve;
- the README's Configuration table and config.py name the same settings,
  with the same defaults;
- every module, file and dotted name docs/ARCHITECTURE.md puts in backticks
  exists, and it says where this round's new code lives;
- the README and docs/API.md claims this round touched (the payments
  listing's fields, query booleans, ids in a path, UTF-8 and repeated keys)
  hold when run.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import config

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
API_MD = (ROOT / "docs" / "API.md").read_text()
ARCHITECTURE = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


# -- (1) every served operation: a README curl example and a docs/API.md line


def _served_operations(client) -> set[tuple[str, str]]:
    """(METHOD, path template with `{}` for each parameter) of every operation."""
    document = client.get("/api/openapi.json").get_json()
    return {
        (method.upper(), re.sub(r"\{[^}]*\}", "{}", path))
        for path, item in document["paths"].items()
        for method in item
        if method.upper() in METHODS
    }


def _curl_commands(text: str) -> list[str]:
    """Every curl command of the README's code blocks, continuation lines joined."""
    commands, blocks = [], re.findall(r"```(?:bash|sh)?\n(.*?)```", text, re.S)
    for block in blocks:
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            for found in re.finditer(r"\bcurl\b(.*)", line):
                if "command curl" not in line:  # the walk-through's wrapper
                    commands.append(found.group(1))
    return commands


def _curl_operation(command: str) -> tuple[str, str] | None:
    """(METHOD, concrete /api path) a curl command calls, or None."""
    url = re.search(r"""(?:\$API|https?://[^/\s'"]+/api)(/[^\s'"?|)]*)?""", command)
    if url is None:
        return None
    method = re.search(r"-X\s+([A-Z]+)", command)
    return (method.group(1) if method else "GET", "/api" + (url.group(1) or ""))


def _template_of(path: str, templates: set[str]) -> str | None:
    """The served template a concrete path is routed to: a literal segment
    wins over a parameter (`/api/cart/clear` is not `/api/cart/{}`)."""
    if path in templates:
        return path
    for template in sorted(templates):
        pattern = "".join(
            "[^/]+" if part == "{}" else re.escape(part) for part in re.split(r"(\{\})", template)
        )
        if re.fullmatch(pattern, path):
            return template
    return None


def test_every_served_operation_has_a_readme_curl_example(client):
    served = _served_operations(client)
    shown = set()
    for command in _curl_commands(README):
        operation = _curl_operation(command)
        if operation is None:
            continue
        method, path = operation
        template = _template_of(path, {p for m, p in served if m == method})
        assert template is not None, f"README curls {method} {path}, which the app does not serve"
        shown.add((method, template))
    assert sorted(served - shown) == [], "operations with no curl example in the README"


def _api_md_operations(text: str) -> set[tuple[str, str]]:
    """(METHOD, template) of every endpoint docs/API.md documents: a table row
    (`| GET | `/<id>` | ...`, under a heading naming its prefix) or an
    inline `GET /api/...` / GET `/api/...`."""
    found, prefix = set(), ""
    for line in text.splitlines():
        heading = re.match(r"#+ .*?\(`(/api/[^`]*)`", line)
        if line.startswith("#"):
            prefix = heading.group(1) if heading else ""
            continue
        row = re.match(r"\|\s*([A-Z]+)\s*\|\s*`([^`]*)`\s*\|", line)
        if row and row.group(1) in METHODS:
            path = row.group(2) if row.group(2).startswith("/api") else prefix + row.group(2)
            found.add((row.group(1), path))
        for method, path in re.findall(
            r"`?\b(GET|POST|PUT|PATCH|DELETE)`? `?(/api/[^`\s?]*)", line
        ):
            found.add((method, path))
    return {(method, re.sub(r"<[^>]*>", "{}", path)) for method, path in found}


def test_every_served_operation_has_a_line_in_docs_api_md(client):
    served = _served_operations(client)
    # The document and its browser are served beside the operations it lists.
    documented = _api_md_operations(API_MD) - {("GET", "/api/openapi.json"), ("GET", "/api/docs")}
    assert client.get("/api/openapi.json").status_code == client.get("/api/docs").status_code == 200
    assert sorted(served - documented) == [], "operations docs/API.md does not list"
    assert sorted(documented - served) == [], "docs/API.md lists operations the app lacks"


# -- (2) the README's Configuration table and config.py agree


def _readme_settings() -> dict[str, str]:
    """variable -> its README default cell (one entry per variable of a row
    naming several: `A`, `B` / `A` / `B`, split alike in the default cell)."""
    section = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    settings = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        names = re.findall(r"`([A-Z][A-Z0-9_]*)`", cells[0])
        defaults = [cells[1]] * len(names)
        if len(names) > 1 and cells[1] != "unset":
            defaults = [f"`{d.strip('`')}`" for d in re.split(r"`\s*(?:,|/)\s*`", cells[1])]
        assert len(defaults) == len(names), f"README row {names}: one default per variable"
        settings.update(zip(names, defaults, strict=True))
    return settings


def _config_settings() -> dict[str, ast.expr | None]:
    """Every environment variable config.py reads -> the default expression
    it gives (None: no default, i.e. unset)."""
    tree = ast.parse((ROOT / "config.py").read_text())
    settings: dict[str, ast.expr | None] = {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and node.args):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        first = node.args[0]
        reads_env = name.startswith("env_") or (
            name == "get" and ast.unparse(func).startswith("os.environ")
        )
        if reads_env and isinstance(first, ast.Constant) and isinstance(first.value, str):
            default = node.args[1] if len(node.args) > 1 else None
            # The first default config.py gives wins (DevelopmentConfig's
            # CORS_ORIGINS, TestingConfig's BACKGROUND_MODE override it).
            settings.setdefault(first.value, default)
    return settings


# Settings the table describes in words (or that live outside config.py),
# each with the fact in config.py (its defaults, unparsed) that makes the
# words true.
CONFIG_SOURCE = (ROOT / "config.py").read_text()
DESCRIBED = {
    "FLASK_CONFIG": lambda code: (
        'os.environ.get("FLASK_CONFIG") or "development"'
        in (ROOT / "app" / "__init__.py").read_text()
    ),
    "PORT": lambda code: re.search(r"^PORT \?= 5000$", (ROOT / "Makefile").read_text(), re.M),
    # "a dev placeholder": a published one, refused in production
    "SECRET_KEY": lambda code: _default_value(code["SECRET_KEY"]) in config.PLACEHOLDER_SECRETS,
    "JWT_SECRET_KEY": lambda code: (
        _default_value(code["JWT_SECRET_KEY"]) in config.PLACEHOLDER_SECRETS
    ),
    "DATABASE_URL": lambda code: (
        _default_value(code["DATABASE_URL"])
        == _readme_value(_readme_settings()["DATABASE_URL"]).replace("<repo>", str(ROOT))
    ),
    # unset, then DATABASE_URL, then instance/test.db
    "TEST_DATABASE_URL": lambda code: (
        code["TEST_DATABASE_URL"] is None
        and 'os.environ.get("TEST_DATABASE_URL") or env_str(\n        "DATABASE_URL", "sqlite:///" '
        '+ str(BASE_DIR / "instance" / "test.db")'
        in CONFIG_SOURCE
    ),
    # none in production (Config), the dev servers in development and testing
    "CORS_ORIGINS": lambda code: (
        code["CORS_ORIGINS"] is None
        and CONFIG_SOURCE.count('env_origins("CORS_ORIGINS", DEV_ORIGINS)') == 2
        and config.DEV_ORIGINS.split(",")
        == [f"http://{h}:{p}" for p in (3000, 5173) for h in ("localhost", "127.0.0.1")]
    ),
    "RATELIMIT_STORAGE_URI": lambda code: 'or REDIS_URL or "memory://"' in CONFIG_SOURCE,
    # `true` (`false` in testing)
    "RATELIMIT_ENABLED": lambda code: (
        _default_value(code["RATELIMIT_ENABLED"]) is True
        and 'env_bool("RATELIMIT_ENABLED", False)' in CONFIG_SOURCE
    ),
}


def _default_value(expression: ast.expr | None):
    if expression is None:
        return None
    return eval(compile(ast.Expression(expression), "config.py", "eval"), vars(config))  # noqa: S307


def _readme_value(cell: str):
    """The literal a README default cell names, as config.py would hold it."""
    if cell == "unset":
        return None
    literal = re.match(r"`([^`]*)`", cell)
    assert literal, f"default {cell!r} is neither a literal nor described"
    return literal.group(1)


def _same(readme, value) -> bool:
    if readme is None:
        return value in (None, "")
    if isinstance(value, bool):
        return readme == str(value).lower()
    if isinstance(value, int | float):
        return float(readme) == float(value)
    return readme == value


def test_the_readme_configuration_table_names_every_setting_config_py_reads():
    readme, code = _readme_settings(), _config_settings()
    assert sorted(set(code) - set(readme)) == [], "settings config.py reads, missing in the README"
    outside = set(readme) - set(code)
    assert sorted(outside - {"FLASK_CONFIG", "PORT"}) == [], "README settings config.py never reads"


@pytest.mark.parametrize("name", sorted(_readme_settings()))
def test_each_readme_default_is_config_py_s(name):
    cell = _readme_settings()[name]
    if name in DESCRIBED:
        assert DESCRIBED[name](_config_settings()), f"{name}: the README's words are wrong"
        return
    code = _config_settings()
    if re.fullmatch(r"`([A-Z_]+)`'s", cell):  # another setting's default
        assert ast.unparse(code[name]) == cell[1:-3]
        return
    value = _default_value(code[name])
    assert _same(_readme_value(cell), value), f"{name}: README {cell!r}, config.py {value!r}"


# -- (3) docs/ARCHITECTURE.md names only what exists


def _python_files() -> list[Path]:
    return [*ROOT.glob("app/**/*.py"), ROOT / "config.py", ROOT / "gunicorn.conf.py"]


def _defines(name: str, files: list[Path]) -> bool:
    pattern = re.compile(
        rf"^\s*(?:async\s+)?(?:def|class)\s+{re.escape(name)}\b|^\s*{re.escape(name)}\s*(?::[^=\n]*)?=",
        re.M,
    )
    return any(pattern.search(path.read_text()) for path in files)


def _module_files(name: str) -> list[Path]:
    return [
        path
        for path in _python_files()
        if path.stem == name or (path.stem == "__init__" and path.parent.name == name)
    ]


def _architecture_names() -> list[str]:
    return sorted(set(re.findall(r"`([^`\n]+)`", ARCHITECTURE)))


def test_every_path_architecture_md_names_exists():
    missing = []
    for token in _architecture_names():
        path = token.split(" ")[0].split("(")[0]
        if "/" not in path or path.startswith("/") or "<" in path or ":" in path:
            continue
        if not path.endswith((".py", "/")) and "." in path:  # `app/web/converters.IdConverter`
            path = path.rsplit(".", 1)[0] + ".py"
        candidates = [ROOT / path, ROOT / "app" / path, ROOT / "app" / "services" / path]
        if not any(candidate.exists() for candidate in candidates):
            missing.append(token)
    assert missing == []


def test_every_dotted_name_architecture_md_names_is_defined():
    """`module.name` (a module of app/, e.g. `orders.lock_order`) and
    `app.package.module.name` must name something the module defines."""
    missing = []
    for token in _architecture_names():
        dotted = token.split("(")[0].strip()
        if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+", dotted) or dotted.startswith(
            "db.session"  # Flask-SQLAlchemy's, not the shop's
        ):
            continue
        parts = dotted.split(".")
        if parts[0] == "app":
            for cut in range(len(parts) - 1, 0, -1):
                module = ROOT.joinpath(*parts[:cut])
                files = [
                    f for f in (module.with_suffix(".py"), module / "__init__.py") if f.exists()
                ]
                if files:
                    rest = parts[cut:]
                    if not (_defines(rest[0], files) or module.joinpath(rest[0] + ".py").exists()):
                        missing.append(token)
                    break
        elif parts[0] == "services" and len(parts) == 3:
            if not _defines(parts[2], [ROOT / "app" / "services" / f"{parts[1]}.py"]):
                missing.append(token)
        elif (
            parts[-1] != "py"
            and (files := _module_files(parts[0]))
            and not _defines(parts[1], files)
        ):
            missing.append(token)
    assert missing == []


# -- (4) claims of the README sections this round touched, run for real


def _payments_line_fields() -> tuple[set[str], set[str]]:
    """The answer's and each attempt's fields as docs/API.md lists them."""
    table = re.search(
        r"\| GET \| `/api/orders/<id>/payments` \| admin \| 200 `\{([^}]*)\}`", API_MD
    )
    bullet = re.search(r"oldest first, `\{([^}]*)\}`", API_MD)
    assert table and bullet
    return (
        {field.strip() for field in table.group(1).split(",")},
        {field.strip() for field in re.sub(r"\([^)]*\)", "", bullet.group(1)).split(",")},
    )


def test_the_payments_listing_answers_the_fields_api_md_lists(
    client, buyer, admin_token, make_product
):
    """docs/API.md and README (Payments): the admin's GET
    /api/orders/<id>/payments answers `{order_id, currency, payment_status,
    amount_refunded, payments}`, each attempt with the fields listed; a
    cancel of a paid order refunds it and the listing says so."""
    from tests.helpers import auth, order_for, pay

    _user, token = buyer
    order = order_for(client, token, (make_product(price="12.50"), 2))
    assert pay(client, token, order["id"]).status_code == 200
    assert client.post(f"/api/orders/{order['id']}/cancel", headers=auth(token)).status_code == 200
    response = client.get(f"/api/orders/{order['id']}/payments", headers=auth(admin_token))
    assert response.status_code == 200
    body = response.get_json()
    answer_fields, attempt_fields = _payments_line_fields()
    assert set(body) == answer_fields
    assert [set(attempt) for attempt in body["payments"]] == [attempt_fields]
    assert body["payment_status"] == "refunded"
    assert body["amount_refunded"] == body["payments"][0]["amount_refunded"] == 25.0
    assert body["payments"][0]["status"] == "refunded"
    assert client.get(f"/api/orders/{order['id']}/payments", headers=auth(token)).status_code == 403


@pytest.mark.parametrize("value", ["yes", "1", "True", "on", ""])
def test_a_query_boolean_is_true_or_false_only(client, admin_token, value):
    """README (Products): `in_stock` other than `true`/`false` is a 422, "as
    for the orders list's `all`"."""
    from tests.helpers import auth

    assert client.get(f"/api/products?in_stock={value}").status_code == 422
    assert client.get(f"/api/products/facets?in_stock={value}").status_code == 422
    orders = client.get(f"/api/orders?all={value}", headers=auth(admin_token))
    assert orders.status_code == 422
    assert orders.get_json()["errors"]
    assert client.get("/api/products?in_stock=false").status_code == 200


@pytest.mark.parametrize("digits", ["0", "2147483648", "1" * 4301, "9" * 10_000, "\u0661"])
def test_an_id_no_row_can_have_is_a_404(client, digits):
    """docs/API.md (General): ids in a path are 1 to 2147483647; any other
    number is a 404 (past 4,300 digits, int() refuses it: it was a 500)."""
    response = client.get(f"/api/products/{digits}")
    assert response.status_code == 404
    assert response.get_json()["code"] == "not_found"


def test_a_body_in_another_charset_is_415_and_a_repeated_key_422(client, buyer, make_product):
    """README (The API at a glance): "bodies are JSON in UTF-8 (another
    `charset` is a 415, a key given twice in one object a 422)"; docs/API.md:
    the key's field says "Given more than once."."""
    from tests.helpers import auth

    _user, token = buyer
    product = make_product()
    body = f'{{"product_id": {product.id}, "quantity": 1}}'.encode()
    latin = client.post(
        "/api/cart",
        data=body,
        headers={**auth(token), "Content-Type": "application/json; charset=latin-1"},
    )
    assert latin.status_code == 415
    assert latin.get_json()["code"] == "unsupported_media_type"
    twice = client.post(
        "/api/cart",
        data=f'{{"product_id": {product.id}, "quantity": 1, "quantity": 5}}',
        headers={**auth(token), "Content-Type": "application/json; charset=UTF-8"},
    )
    assert twice.status_code == 422
    assert twice.get_json()["errors"] == {"quantity": ["Given more than once."]}
    cart = client.get("/api/cart", headers=auth(token)).get_json()
    assert cart["items"] == []
