"""The search page and the GraphiQL playground in a real browser (Debian's headless Chromium via Selenium).

Everything runs against the real gateway of the session fixture, over its synthetic corpus. A failing test
leaves a screenshot in ``artifacts/screenshots/``. Set ``CIVIC_UPDATE_SCREENSHOTS=1`` to also refresh the
README's screenshots in ``docs/screenshots/``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ServedGateway

CHROMIUM = os.environ.get("CIVIC_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CIVIC_CHROMEDRIVER", "/usr/bin/chromedriver")
PROJECT_DIR = Path(__file__).resolve().parent.parent
ARTIFACTS = PROJECT_DIR / "artifacts" / "screenshots"
DOCS_SCREENSHOTS = PROJECT_DIR / "docs" / "screenshots"
WAIT_S = 15.0
DESKTOP = (1280, 900)
PHONE = (390, 844)

if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
    pytest.skip(
        f"Chromium or chromedriver missing ({CHROMIUM}, {CHROMEDRIVER}): "
        "run `apt-get install chromium chromium-driver` (make setup does)",
        allow_module_level=True,
    )
webdriver = pytest.importorskip(
    "selenium.webdriver", reason="selenium is not installed (pip install selenium)"
)

from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver import Chrome as WebDriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]


@pytest.fixture(scope="module")
def chromium() -> Iterator[WebDriver]:
    """One headless Chromium for the module, on a fresh profile that is removed afterwards."""
    profile = tempfile.mkdtemp(prefix="civic-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={DESKTOP[0]},{DESKTOP[1]}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def set_viewport(driver: WebDriver, size: tuple[int, int]) -> None:
    """The exact CSS viewport (a window size would include the browser's own frame)."""
    width, height = size
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
    )


@pytest.fixture()
def browser(
    chromium: WebDriver, gateway: ServedGateway, request: pytest.FixtureRequest
) -> Iterator[WebDriver]:
    """The browser at desktop size with a clean slate; a screenshot is saved when the test fails."""
    set_viewport(chromium, DESKTOP)
    chromium.get(gateway.url + "/static/favicon.svg")  # same origin, so storage can be cleared
    chromium.execute_script("window.localStorage.clear(); window.sessionStorage.clear();")
    chromium.get_log("browser")  # drop what earlier tests logged
    failed_before = request.session.testsfailed
    yield chromium
    # The call phase's report is logged before teardown runs, so a failure of this test shows up here.
    if request.session.testsfailed > failed_before:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
        chromium.save_screenshot(str(ARTIFACTS / f"{name}.png"))
        (ARTIFACTS / f"{name}.log.json").write_text(json.dumps(chromium.get_log("browser"), indent=1))


# --- helpers ---------------------------------------------------------------------------------------------


def wait_for(driver: WebDriver, condition: Callable[[WebDriver], Any], what: str) -> Any:
    try:
        return WebDriverWait(driver, WAIT_S, poll_frequency=0.05).until(condition)
    except TimeoutException:
        raise AssertionError(f"timed out waiting for {what} (at {driver.current_url})") from None


def settled(driver: WebDriver) -> int:
    value = driver.execute_script(
        "const s = document.getElementById('results-section');"
        "return s.getAttribute('aria-busy') === 'true' ? -1 : Number(s.dataset.settled || 0);"
    )
    return int(value)


def wait_settled(driver: WebDriver, after: int = 0) -> None:
    """Wait until the page has finished a search (its settle count passed ``after``)."""
    wait_for(driver, lambda d: settled(d) > after, "the search to finish")


def open_page(driver: WebDriver, url: str) -> None:
    driver.get(url)
    wait_settled(driver)


def result_ids(driver: WebDriver) -> list[str]:
    """The result page as "<documentId>:<page numbers of this page's hits>", one per meeting card."""
    ids: list[str] = driver.execute_script(
        "return [...document.querySelectorAll('#results .doc-card')]"
        ".map(c => `${c.dataset.documentId}:${c.dataset.hits}`);"
    )
    return ids


def hit_count(ids: list[str]) -> int:
    """How many matching pages (search edges) a result page holds, over all its cards."""
    return sum(len(key.split(":", 1)[1].split()) for key in ids)


def texts(driver: WebDriver, css: str) -> list[str]:
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, css)]


def status_text(driver: WebDriver) -> str:
    return str(driver.find_element(By.ID, "status").text)


def count_from_status(text: str) -> int:
    match = re.search(r"([\d,]+) (?:results?|matching pages?)", text)
    assert match, f"no result count in {text!r}"
    return int(match.group(1).replace(",", ""))


def query_of(url: str) -> dict[str, list[str]]:
    return urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)


def assert_no_console_errors(driver: WebDriver, gateway_url: str) -> None:
    """No script error, no failed load, no CSP violation, and nothing fetched from another origin."""
    errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    assert not errors, errors
    resources: list[str] = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name);"
    )
    foreign = [r for r in resources if not r.startswith(gateway_url + "/")]
    assert not foreign, f"loaded from elsewhere: {foreign}"


# --- the search page -------------------------------------------------------------------------------------


def test_search_shows_highlighted_results(browser: WebDriver, gateway: ServedGateway) -> None:
    open_page(browser, gateway.url + "/?q=budget")
    ids = result_ids(browser)
    assert hit_count(ids) == 10 and len(ids) == len({i.split(":")[0] for i in ids})  # one card per meeting
    marks = texts(browser, "#results .headline mark")
    assert marks and all(m.lower().startswith("budget") for m in marks), marks
    status = status_text(browser)
    assert re.fullmatch(rf"(About )?[\d,]+ matching pages · {len(ids)} meetings? on this page", status), status
    first = browser.find_element(By.CSS_SELECTOR, "#results .result")
    meta = first.find_element(By.CSS_SELECTOR, ".meta").text
    assert re.search(r", [A-Z]{2}\b", meta), meta  # town and state
    assert re.search(r"\b\d+ matching pages?\b", meta), meta
    assert first.find_element(By.CSS_SELECTOR, ".meta time").get_attribute("datetime")
    assert first.find_element(By.CSS_SELECTOR, ".result-title a").text.strip()
    assert re.fullmatch(r"Page \d+", first.find_element(By.CSS_SELECTOR, ".page-link").text)
    # Only <mark> ever comes from a headline; nothing else is markup.
    tags = browser.execute_script(
        "return [...new Set([...document.querySelectorAll('#results .headline *')].map(e => e.tagName))];"
    )
    assert tags == ["MARK"]
    assert_no_console_errors(browser, gateway.url)


def test_next_then_previous_returns_the_first_results(browser: WebDriver, gateway: ServedGateway) -> None:
    open_page(browser, gateway.url + "/?q=budget")
    first_page = result_ids(browser)
    prev_button = browser.find_element(By.ID, "prev")
    assert not prev_button.is_enabled()

    mark = settled(browser)
    browser.find_element(By.ID, "next").click()
    wait_settled(browser, mark)
    assert "after" in query_of(browser.current_url)
    second_page = result_ids(browser)
    assert hit_count(second_page) == 10 and not set(second_page) & set(first_page)
    assert browser.find_element(By.ID, "prev").is_enabled()

    mark = settled(browser)
    browser.find_element(By.ID, "prev").click()
    wait_settled(browser, mark)
    assert "before" in query_of(browser.current_url)  # a real backward page, not a cached one
    assert result_ids(browser) == first_page
    assert not browser.find_element(By.ID, "prev").is_enabled()

    # Back and forward walk the same pages.
    browser.back()
    wait_for(browser, lambda d: result_ids(d) == second_page, "Back to show the second page")
    browser.back()
    wait_for(browser, lambda d: result_ids(d) == first_page, "Back to show the first page")
    browser.forward()
    wait_for(browser, lambda d: result_ids(d) == second_page, "Forward to show the second page")
    assert_no_console_errors(browser, gateway.url)


def test_document_type_filter_narrows_results(browser: WebDriver, gateway: ServedGateway) -> None:
    open_page(browser, gateway.url + "/?q=budget")
    everything = count_from_status(status_text(browser))
    mark = settled(browser)
    Select(browser.find_element(By.ID, "type")).select_by_value("MINUTES")
    wait_settled(browser, mark)
    assert query_of(browser.current_url)["type"] == ["minutes"]
    minutes = count_from_status(status_text(browser))
    assert 0 < minutes < everything
    assert set(texts(browser, "#results .meta-type")) == {"Minutes"}
    assert browser.find_element(By.ID, "filter-count").text == "1"


def test_municipality_type_ahead_narrows_results(browser: WebDriver, gateway: ServedGateway) -> None:
    open_page(browser, gateway.url + "/?q=budget")
    everything = count_from_status(status_text(browser))
    town = texts(browser, "#results .meta-town")[0]  # "Name, ST"
    name = town.rsplit(", ", 1)[0]

    box = browser.find_element(By.ID, "town-input")
    box.click()
    box.send_keys(name)
    wait_for(
        browser,
        lambda d: d.find_element(By.ID, "town-input").get_attribute("aria-expanded") == "true",
        "town suggestions",
    )
    options = texts(browser, "#town-list [role=option] .town-option-name")
    assert options[0] == town, options
    mark = settled(browser)
    box.send_keys(Keys.ENTER)  # picks the active (first) suggestion, does not submit
    wait_settled(browser, mark)
    towns = query_of(browser.current_url)["town"]
    assert len(towns) == 1
    assert texts(browser, "#town-chips .chip-label") == [town]
    narrowed = count_from_status(status_text(browser))
    assert 0 < narrowed < everything
    assert set(texts(browser, "#results .meta-town")) == {town}

    # The chip's remove button (a real button, reachable by keyboard) undoes it.
    mark = settled(browser)
    browser.find_element(By.CSS_SELECTOR, "#town-chips .chip-remove").send_keys(Keys.ENTER)
    wait_settled(browser, mark)
    assert "town" not in query_of(browser.current_url)
    assert count_from_status(status_text(browser)) == everything


def test_shared_url_reproduces_the_search(browser: WebDriver, gateway: ServedGateway) -> None:
    browser.get(gateway.url + "/")
    box = wait_for(browser, lambda d: d.find_element(By.ID, "q"), "the search box")
    box.send_keys('"public hearing" or budget', Keys.ENTER)
    wait_settled(browser)
    mark = settled(browser)
    browser.find_element(By.CSS_SELECTOR, "label[for=order-oldest]").click()
    wait_settled(browser, mark)
    mark = settled(browser)
    Select(browser.find_element(By.ID, "type")).select_by_value("AGENDA")
    wait_settled(browser, mark)
    mark = settled(browser)
    browser.find_element(By.ID, "next").click()
    wait_settled(browser, mark)
    shared = browser.current_url
    ids = result_ids(browser)
    dates = browser.execute_script(
        "return [...document.querySelectorAll('#results time')].map(t => t.dateTime);"
    )
    assert ids and dates == sorted(dates)  # oldest first
    params = query_of(shared)
    assert params["q"] == ['"public hearing" or budget']
    assert params["order"] == ["oldest"] and params["type"] == ["agenda"] and "after" in params

    browser.refresh()
    wait_settled(browser)
    assert result_ids(browser) == ids

    # A fresh load of the link (as someone it was sent to would) shows the same page and the same form.
    browser.get(gateway.url + "/")
    open_page(browser, shared)
    assert result_ids(browser) == ids
    assert browser.find_element(By.ID, "q").get_attribute("value") == '"public hearing" or budget'
    assert browser.find_element(By.ID, "order-oldest").is_selected()
    assert (
        Select(browser.find_element(By.ID, "type")).first_selected_option.get_attribute("value") == "AGENDA"
    )


def test_syntax_problem_is_a_human_hint(browser: WebDriver, gateway: ServedGateway) -> None:
    open_page(browser, gateway.url + "/?q=or")
    error = browser.find_element(By.ID, "error")
    assert error.is_displayed()
    text = error.text
    assert "Check your search" in text
    assert "no words to search for" in text
    assert "Search syntax" in text  # the syntax hint is shown for BAD_USER_INPUT
    assert "Traceback" not in text and "Error:" not in text
    assert result_ids(browser) == []


def test_phone_width_has_no_horizontal_scroll_and_screenshots(
    browser: WebDriver, gateway: ServedGateway
) -> None:
    url = gateway.url + "/?q=budget&type=minutes"
    shots = {}
    for name, size in (("search-desktop", DESKTOP), ("search-phone", PHONE)):
        set_viewport(browser, size)
        open_page(browser, url)
        width = browser.execute_script("return document.documentElement.scrollWidth;")
        assert width <= size[0], f"{name}: page is {width}px wide in a {size[0]}px viewport"
        filters_open = browser.find_element(By.ID, "filters").get_attribute("open") is not None
        assert filters_open == (size is DESKTOP)  # folded on phones, beside the results on desktop
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shots[name] = ARTIFACTS / f"{name}.png"
        browser.save_screenshot(str(shots[name]))
    if os.environ.get("CIVIC_UPDATE_SCREENSHOTS") == "1":
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for name, path in shots.items():
            shutil.copyfile(path, DOCS_SCREENSHOTS / f"{name}.png")


# --- GraphiQL --------------------------------------------------------------------------------------------

RESULT_TEXT = (
    "const cm = document.querySelector('.result-window .CodeMirror');"
    "return cm && cm.CodeMirror ? cm.CodeMirror.getValue() : '';"
)


def wait_graphiql(driver: WebDriver) -> None:
    wait_for(
        driver,
        lambda d: d.execute_script(
            "return !!document.querySelector('.graphiql-query-editor .CodeMirror')"
            " && !!document.querySelector('.graphiql-execute-button');"
        ),
        "GraphiQL to start",
    )


def run_graphiql(driver: WebDriver, expect: str) -> str:
    driver.find_element(By.CSS_SELECTOR, ".graphiql-execute-button").click()
    result: str = wait_for(
        driver,
        lambda d: (t := d.execute_script(RESULT_TEXT)) and expect in t and t,
        f"a result with {expect}",
    )
    return result


def test_graphiql_runs_the_default_search(browser: WebDriver, gateway: ServedGateway) -> None:
    browser.get(gateway.url + "/graphql")
    wait_graphiql(browser)
    result = json.loads(run_graphiql(browser, '"totalCount"'))
    edges = result["data"]["search"]["edges"]
    assert edges and "<mark>" in edges[0]["headline"]
    assert result["extensions"]["traceId"]
    assert_no_console_errors(browser, gateway.url)


def test_graphiql_typed_query_and_headers(browser: WebDriver, gateway: ServedGateway) -> None:
    browser.get(gateway.url + "/graphql")
    wait_graphiql(browser)
    # Type a query as a person would (CodeMirror closes brackets and types over the closing ones).
    typed = '{ municipality(subdomain: "no-such-town.zz") { name } }'
    browser.find_element(By.CSS_SELECTOR, ".graphiql-query-editor .CodeMirror").click()
    editor = browser.switch_to.active_element
    editor.send_keys(Keys.CONTROL, "a")
    editor.send_keys(Keys.DELETE)
    editor.send_keys(typed)
    value = browser.execute_script(
        "return document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.getValue();"
    )
    assert value == typed
    # GraphiQL re-reads the operation (and its name) a moment after an edit; run after that, as a person would.
    wait_for(
        browser,
        lambda d: "municipality" in urllib.parse.unquote_plus(d.current_url),
        "GraphiQL to see the edit",
    )
    time.sleep(0.5)
    result = json.loads(run_graphiql(browser, '"municipality"'))
    assert result["data"] == {"municipality": None}

    # The headers editor reaches the server: a malformed consistency token is refused as BAD_USER_INPUT.
    tab = next(
        b
        for b in browser.find_elements(By.CSS_SELECTOR, ".graphiql-editor-tools button")
        if b.text == "Headers"
    )
    tab.click()
    headers_editor = wait_for(
        browser,
        lambda d: next(
            (
                e
                for e in d.find_elements(By.CSS_SELECTOR, ".graphiql-editor-tool .CodeMirror")
                if e.is_displayed()
            ),
            None,
        ),
        "the headers editor",
    )
    headers_editor.click()
    typed_headers = '{"X-Consistency-Token": "not-a-token"}'
    browser.switch_to.active_element.send_keys(typed_headers)
    assert (
        browser.execute_script("return arguments[0].CodeMirror.getValue();", headers_editor) == typed_headers
    )
    result = json.loads(run_graphiql(browser, "BAD_USER_INPUT"))
    assert "X-Consistency-Token" in result["errors"][0]["message"]


def test_graphiql_query_from_the_link(browser: WebDriver, gateway: ServedGateway) -> None:
    query = "{ municipalities(first: 2) { edges { node { subdomain name state } } } }"
    browser.get(gateway.url + "/graphql#" + urllib.parse.urlencode({"query": query}))
    wait_graphiql(browser)
    result = json.loads(run_graphiql(browser, '"municipalities"'))
    assert len(result["data"]["municipalities"]["edges"]) == 2
