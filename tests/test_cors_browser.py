"""A browser app on another origin calls the API: Debian's headless Chromium, a page served from a second local
port, ``fetch`` to the gateway's /graphql. The browser itself sends the CORS preflight and enforces the answer.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ServedGateway
from tests.helpers import free_port

CHROMIUM = os.environ.get("CIVIC_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CIVIC_CHROMEDRIVER", "/usr/bin/chromedriver")

if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
    pytest.skip(
        f"Chromium or chromedriver missing ({CHROMIUM}, {CHROMEDRIVER}): "
        "run `apt-get install chromium chromium-driver` (make setup does)",
        allow_module_level=True,
    )
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")

from selenium.webdriver import Chrome as WebDriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402

# The app of another origin: it runs one fetch when asked and reports what the browser let it see.
APP_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>other origin</title></head><body>
<script>
window.callApi = async function (url, init) {
  try {
    const resp = await fetch(url, init);
    const body = await resp.json();
    return {ok: true, status: resp.status, requestId: resp.headers.get("x-request-id"),
            contentType: resp.headers.get("content-type"), body: body};
  } catch (err) {
    return {ok: false, error: String(err)};
  }
};
</script></body></html>
"""
QUERY = '{ search(query: "council", first: 2) { edges { node { sourceId } } } }'


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture(scope="module")
def other_origin() -> Iterator[str]:
    """http://127.0.0.1:<another port>/app.html: same host, another port, so another origin."""
    root = Path(tempfile.mkdtemp(prefix="civic-origin-"))
    (root / "app.html").write_text(APP_PAGE)
    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def browser(other_origin: str) -> Iterator[WebDriver]:
    profile = tempfile.mkdtemp(prefix="civic-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_script_timeout(15)
    try:
        driver.get(f"{other_origin}/app.html")
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _call(browser: WebDriver, url: str, init: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = browser.execute_async_script(
        "const done = arguments[arguments.length - 1]; window.callApi(arguments[0], arguments[1]).then(done);",
        url,
        init,
    )
    return result


def test_page_is_on_another_origin(browser: WebDriver, gateway: ServedGateway) -> None:
    origin = browser.execute_script("return window.location.origin")
    assert origin != gateway.url and origin.startswith("http://127.0.0.1:")


def test_post_with_json_is_preflighted_and_succeeds(browser: WebDriver, gateway: ServedGateway) -> None:
    # application/json and a custom header make this a non-simple request: the browser preflights it.
    result = _call(browser, f"{gateway.url}/graphql", {
        "method": "POST",
        "headers": {"content-type": "application/json", "x-max-staleness-ms": "2000", "x-request-id": "cors-1"},
        "body": json.dumps({"query": QUERY}),
    })
    assert result["ok"], result
    assert result["status"] == 200
    assert result["body"]["data"]["search"]["edges"], result["body"]
    # An exposed response header is readable by the other origin's script.
    assert result["requestId"] == "cors-1"


def test_get_succeeds(browser: WebDriver, gateway: ServedGateway) -> None:
    from urllib.parse import quote

    result = _call(browser, f"{gateway.url}/graphql?query={quote(QUERY)}", {"method": "GET"})
    assert result["ok"], result
    assert result["status"] == 200 and result["body"]["data"]["search"]["edges"]


def test_a_header_outside_the_allow_list_is_blocked_by_the_browser(
    browser: WebDriver, gateway: ServedGateway
) -> None:
    """The preflight is real: asking for a header the gateway does not allow makes the browser refuse."""
    result = _call(browser, f"{gateway.url}/graphql", {
        "method": "POST",
        "headers": {"content-type": "application/json", "x-not-allowed": "1"},
        "body": json.dumps({"query": QUERY}),
    })
    assert not result["ok"] and "TypeError" in result["error"], result
