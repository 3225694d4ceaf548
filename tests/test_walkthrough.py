"""The README stands alone: its curl walk-through (docs/walkthrough.sh, shown
verbatim in the README) runs top to bottom on a freshly seeded server, and
`make run` honours PORT, says what to do when the port is taken and logs one
line per request."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

from tests.helpers import DATABASE_URL
from tests.live import ROOT, free_port, gunicorn

pytestmark = pytest.mark.server
SCRIPT = ROOT / "docs" / "walkthrough.sh"
FLASK = ROOT / ".venv" / "bin" / "flask"


def test_readme_shows_the_walkthrough_script_as_it_is():
    readme = (ROOT / "README.md").read_text()
    start = readme.index("<!-- walkthrough:start -->")
    end = readme.index("<!-- walkthrough:end -->")
    block = readme[start:end].split("```bash\n", 1)[1].rsplit("```", 1)[0]
    assert block == SCRIPT.read_text()
    assert "../shared" not in readme


def cli_env(**extra) -> dict:
    return {
        **os.environ,
        "FLASK_APP": "app:create_app",
        "FLASK_CONFIG": "testing",
        "TEST_DATABASE_URL": DATABASE_URL,
        "DATABASE_URL": DATABASE_URL,
        **extra,
    }


def test_walkthrough_runs_top_to_bottom(app):
    if shutil.which("jq") is None:
        if os.environ.get("SHOP_REQUIRE_NODE"):
            pytest.fail("jq is missing (.ci/run installs it)")
        pytest.skip("the walk-through needs jq")
    subprocess.run([str(FLASK), "seed"], cwd=ROOT, env=cli_env(), check=True, capture_output=True)
    with gunicorn(DATABASE_URL, workers=2, threads=2) as live:
        result = subprocess.run(
            ["bash", str(SCRIPT)],
            cwd=ROOT,
            env=cli_env(API=f"{live.url}/api"),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert out.rstrip().endswith("walk-through complete")
    for code in ('"out_of_stock"', '"invalid_transition"', '"token_revoked"', '"not_found"'):
        assert code in out, code
    assert "Idempotent-Replayed: true" in out


def _start_make_run(port: int, tmp_path) -> subprocess.Popen:
    env = {
        **os.environ,
        "FLASK_CONFIG": "development",
        "DATABASE_URL": f"sqlite:///{tmp_path}/run.db",
        "LOG_LEVEL": "INFO",
    }
    for name in ("TEST_DATABASE_URL", "FLASK_RUN_PORT", "MAKEFLAGS"):
        env.pop(name, None)
    return subprocess.Popen(
        ["make", "-s", "run", f"PORT={port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _stop(process: subprocess.Popen) -> str:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        output, _ = process.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
    return output


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_make_run_honours_port_and_logs_one_line_per_request(tmp_path):
    port = free_port()
    process = _start_make_run(port, tmp_path)
    try:
        deadline = time.monotonic() + 90
        while not _listening(port):
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, "make run did not listen in 90 s"
            time.sleep(0.3)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/products?per_page=1") as resp:
            assert resp.status == 200
        time.sleep(0.5)
    finally:
        output = _stop(process)
    lines = [line for line in output.splitlines() if "/api/products" in line]
    assert len(lines) == 1, output
    assert '"status": 200' in lines[0]


def test_make_run_says_what_to_do_when_the_port_is_taken(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = _start_make_run(port, tmp_path)
        output, _ = process.communicate(timeout=120)
    assert process.returncode != 0
    assert f"Port {port} is in use" in output and "PORT=" in output


@pytest.mark.parametrize("origin", ["http://localhost:5173", "http://127.0.0.1:3000"])
def test_development_allows_the_usual_dev_servers(make_app, origin):
    app = make_app(
        "development", {"SQLALCHEMY_DATABASE_URI": DATABASE_URL, "BACKGROUND_MODE": "off"}
    )
    response = app.test_client().options(
        "/api/products",
        headers={"Origin": origin, "Access-Control-Request-Method": "GET"},
    )
    assert response.headers.get("Access-Control-Allow-Origin") == origin


def test_production_allows_no_origin_unless_configured():
    import config

    if not os.environ.get("CORS_ORIGINS"):
        assert config.ProductionConfig.CORS_ORIGINS == []
    assert "http://localhost:5173" in config.DevelopmentConfig.CORS_ORIGINS
