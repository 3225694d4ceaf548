"""The document as a React developer and a Postman user consume it: TypeScript
types generated from the live /api/openapi.json with openapi-typescript, a
typed client compiled with `tsc --strict`, run against a live server through
the core flow; and the Postman collection converted from the same document.

Needs node and `npm ci` in clients/typescript (.ci/run does both and sets
SHOP_REQUIRE_NODE=1, so there the test runs, never skips)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.helpers import DATABASE_URL
from tests.live import ROOT, gunicorn

CLIENT = ROOT / "clients" / "typescript"
BIN = CLIENT / "node_modules" / ".bin"

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def node():
    missing = shutil.which("node") is None or not (BIN / "tsc").exists()
    if missing:
        if os.environ.get("SHOP_REQUIRE_NODE"):
            pytest.fail("node or clients/typescript/node_modules missing (`npm ci` there)")
        pytest.skip("node and `npm ci` in clients/typescript are needed")


def run(*cmd: str, timeout: int = 180) -> str:
    result = subprocess.run(
        cmd, cwd=CLIENT, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture
def live(app, make_product):
    for n, stock in enumerate((3, 10, 0), start=1):
        make_product(name=f"TS product {n}", price=f"{n * 5}.25", stock=stock)
    with gunicorn(DATABASE_URL, workers=1, threads=2) as server:
        yield server


def test_generated_types_compile_and_the_client_walks_the_core_flow(node, live):
    document = f"{live.url}/api/openapi.json"
    # As package.json's `generate`: a request field with a default stays optional.
    run(
        str(BIN / "openapi-typescript"),
        document,
        "--default-non-nullable",
        "false",
        "-o",
        "src/schema.d.ts",
    )
    run(str(BIN / "tsc"), "--strict", "--noEmit", "-p", ".")
    run(str(BIN / "tsc"), "-p", ".")
    output = run("node", "dist/walk.js", live.url)
    assert "walk complete" in output, output
    assert "ok - out_of_stock names what is left" in output

    # A proxy's HTML error page (no shop behind it) is a ShopApiError too:
    # it was a bare SyntaxError from JSON.parse.
    with html_bad_gateway() as url:
        script = (
            "import { ShopClient, ShopApiError } from './dist/client.js';"
            f"try {{ await new ShopClient({json.dumps(url)}).listProducts();"
            " console.log('no error'); }"
            "catch (e) { console.log(e instanceof ShopApiError, e.status, e.code); }"
        )
        assert run("node", "--input-type=module", "-e", script).split() == [
            "true",
            "502",
            "not_json",
        ]


@contextmanager
def html_bad_gateway():
    """A server answering every request as a proxy with no backend does."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
            self.send_response(502)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_postman_collection_converts(node, live, tmp_path):
    target = tmp_path / "shop.postman_collection.json"
    run("node", "scripts/postman.mjs", f"{live.url}/api/openapi.json", str(target))
    collection = json.loads(target.read_text())
    variables = {v["key"]: v["value"] for v in collection["variable"]}
    assert variables["baseUrl"] == live.url and "bearerToken" in variables

    def requests(items):
        for item in items:
            yield from requests(item["item"]) if "item" in item else [item["request"]]

    found = list(requests(collection["item"]))
    spec = live.request("GET", "/api/openapi.json")[1]
    operations = [m for item in spec["paths"].values() for m in item if m != "parameters"]
    assert len(found) == len(operations)
    private = [r for r in found if r.get("auth")]
    assert private and all("{{bearerToken}}" in json.dumps(r["auth"]) for r in private)
    login = next(r for r in found if r["url"]["path"][-1] == "login")
    assert set(json.loads(login["body"]["raw"])) == {"email", "password"}
