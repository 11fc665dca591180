"""Results grouped by meeting, the document view, search help and accessibility, in Debian's headless Chromium.

Runs against the real gateway of the session fixture over its synthetic corpus, with the browser fixtures of
test_web_browser. Accessibility is checked with axe-core, installed from npm into tests/clients (``make
setup``) and injected into the page by the test itself: nothing is fetched from a CDN, and the pages' own CSP
stays as strict as in production. ``CIVIC_UPDATE_SCREENSHOTS=1`` refreshes the README's screenshots.
"""

from __future__ import annotations

import os
import re
import shutil
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import test_web_browser
from tests.conftest import WRITER_TOKEN, ServedGateway, gql
from tests.helpers import eventually
from tests.test_web_browser import (
    ARTIFACTS,
    DESKTOP,
    DOCS_SCREENSHOTS,
    PHONE,
    By,
    Keys,
    WebDriver,
    assert_no_console_errors,
    hit_count,
    open_page,
    query_of,
    result_ids,
    set_viewport,
    settled,
    texts,
    wait_for,
    wait_settled,
)

# The browser fixtures of the search page's tests (one Chromium per module, a screenshot when a test fails).
chromium = test_web_browser.chromium
browser = test_web_browser.browser

AXE = Path(__file__).resolve().parent / "clients" / "node_modules" / "axe-core" / "axe.min.js"


def axe_violations(driver: WebDriver) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it is now (every rule axe runs by default, best practices too)."""
    if not AXE.is_file():
        pytest.skip(f"axe-core is not installed ({AXE}): run `make setup` (npm ci in tests/clients)")
    driver.execute_script(AXE.read_text())
    found: list[dict[str, Any]] = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document).then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact,"
        " nodes: v.nodes.slice(0, 5).map(n => n.target.join(' '))}))), e => done([{id: 'axe-error',"
        " nodes: [String(e)]}]));"
    )
    return found


def assert_accessible(driver: WebDriver) -> None:
    violations = axe_violations(driver)
    assert violations == [], violations


def doc_loaded(driver: WebDriver) -> bool:
    return bool(driver.execute_script("return !!document.getElementById('page-text');"))


def page_of_view(driver: WebDriver) -> int:
    return int(driver.find_element(By.ID, "document").get_attribute("data-page") or 0)


def card_with_pages(driver: WebDriver, at_least: int) -> Any:
    for card in driver.find_elements(By.CSS_SELECTOR, "#results .doc-card"):
        if len(card.find_elements(By.CSS_SELECTOR, ".page-link")) >= at_least:
            return card
    return None


# --- the "done when" -----------------------------------------------------------------------------


def test_grouped_results_document_view_next_page_and_back(browser: WebDriver, gateway: ServedGateway) -> None:
    open_page(browser, gateway.url + "/?q=budget&type=minutes")
    results_url = browser.current_url
    cards = result_ids(browser)
    documents = [c.split(":")[0] for c in cards]
    assert len(documents) == len(set(documents)), cards  # pages of one meeting are in one group
    card = card_with_pages(browser, 2)
    assert card is not None, "no meeting with two matching pages on the first page of results"
    numbers = [int(a.get_attribute("data-page-number")) for a in card.find_elements(By.CSS_SELECTOR, ".page-link")]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers), numbers  # in page order
    assert_accessible(browser)

    # Open the second matching page from the keyboard.
    link = card.find_elements(By.CSS_SELECTOR, ".page-link")[1]
    target = numbers[1]
    link.send_keys(Keys.ENTER)
    wait_for(browser, doc_loaded, "the document view")
    url = urllib.parse.urlsplit(browser.current_url)
    assert url.path.startswith("/documents/")
    params = query_of(browser.current_url)
    assert params["q"] == ["budget"] and params["page"] == [str(target)]
    assert page_of_view(browser) == target
    marks = texts(browser, "#page-text mark")
    assert marks and all(m.lower().startswith("budget") for m in marks), marks
    # Only <mark> inside the text: the page's own text never becomes markup.
    tags = browser.execute_script(
        "return [...new Set([...document.querySelectorAll('#page-text *')].map(e => e.tagName))];"
    )
    assert tags == ["MARK"]
    assert f"Page {target}" in browser.find_element(By.CSS_SELECTOR, ".match-list [aria-current=page]").text
    assert_accessible(browser)
    assert_no_console_errors(browser, gateway.url)

    # The next page: previous/next move through the document in page order.
    next_link = browser.find_element(By.ID, "next-page")
    following = int(re.search(r"Page (\d+)", next_link.text).group(1))  # type: ignore[union-attr]
    assert following > target
    next_link.click()
    wait_for(browser, lambda d: doc_loaded(d) and page_of_view(d) == following, "the next page")
    assert browser.find_element(By.ID, "prev-page").text.endswith(f"Page {target}")

    # Back to the results: the same URL, so the same search, filters and cards.
    browser.find_element(By.ID, "back-link").click()
    wait_settled(browser)
    assert browser.current_url == results_url
    assert result_ids(browser) == cards
    assert browser.find_element(By.ID, "q").get_attribute("value") == "budget"


def test_document_view_opens_at_the_first_matching_page(browser: WebDriver, gateway: ServedGateway) -> None:
    open_page(browser, gateway.url + "/?q=budget")
    card = browser.find_element(By.CSS_SELECTOR, "#results .doc-card")
    first_match = int(card.find_element(By.CSS_SELECTOR, ".page-link").get_attribute("data-page-number"))
    card.find_element(By.CSS_SELECTOR, ".result-title a").click()
    wait_for(browser, doc_loaded, "the document view")
    assert "page" not in query_of(browser.current_url)
    assert page_of_view(browser) == first_match
    assert texts(browser, "#page-text mark")
    # Without a search the same document opens at its first page, nothing marked.
    doc_url = urllib.parse.urlsplit(browser.current_url).path
    browser.get(gateway.url + doc_url)
    wait_for(browser, doc_loaded, "the document view without a search")
    assert page_of_view(browser) == 1
    assert texts(browser, "#page-text mark") == []
    assert browser.find_element(By.ID, "back-link").get_attribute("href") == gateway.url + "/"


def test_more_matching_pages_expand_in_place(browser: WebDriver, gateway: ServedGateway) -> None:
    open_page(browser, gateway.url + "/?q=council")
    more = wait_for(
        browser, lambda d: next(iter(d.find_elements(By.CSS_SELECTOR, "#results .doc-card .more")), None),
        "a card with more matching pages",
    )
    card = more.find_element(By.XPATH, "./ancestor::li[contains(@class, 'doc-card')]")
    count = int(re.search(r"([\d,]+) matching", card.find_element(By.CSS_SELECTOR, ".meta-count").text)
                .group(1).replace(",", ""))  # type: ignore[union-attr]
    shown = len(card.find_elements(By.CSS_SELECTOR, ".page-link"))
    rest = int(re.match(r"(\d+) more matching pages? in this meeting", more.text).group(1))  # type: ignore[union-attr]
    assert shown + rest == count
    url = browser.current_url
    more.send_keys(Keys.ENTER)
    wait_for(browser, lambda d: len(card.find_elements(By.CSS_SELECTOR, ".page-link")) == min(count, 100),
             "every matching page of the meeting")
    numbers = [int(a.get_attribute("data-page-number")) for a in card.find_elements(By.CSS_SELECTOR, ".page-link")]
    assert numbers == sorted(numbers)
    assert browser.current_url == url  # in place: the search did not change
    # The keyboard continues at the first page added.
    active = browser.switch_to.active_element
    assert active.get_attribute("data-page-number") == str(numbers[shown])
    assert_accessible(browser)


def test_no_results_suggests_what_to_remove(browser: WebDriver, gateway: ServedGateway) -> None:
    open_page(browser, gateway.url + '/?q=%22budget+zzqqxx%22&type=minutes')
    box = browser.find_element(By.ID, "no-results")
    assert box.is_displayed()
    suggestions = texts(browser, "#suggestions a")
    assert any(s.startswith("Remove the quotes") for s in suggestions), suggestions
    assert "Remove the filter: Minutes only" in suggestions
    assert any(s.startswith("Match any of the words: budget or zzqqxx") for s in suggestions), suggestions
    assert "budgets" in box.text  # what stemming and quotes do
    assert_accessible(browser)
    # Following a suggestion runs that search.
    mark = settled(browser)
    browser.find_element(By.PARTIAL_LINK_TEXT, "Match any of the words").click()
    wait_settled(browser, mark)
    assert query_of(browser.current_url)["q"] == ["budget or zzqqxx"]
    assert query_of(browser.current_url)["type"] == ["minutes"]
    assert result_ids(browser)
    assert not browser.find_element(By.ID, "no-results").is_displayed()


def test_help_next_to_the_box(browser: WebDriver, gateway: ServedGateway) -> None:
    open_page(browser, gateway.url + "/")
    hint = browser.find_element(By.ID, "q-hint").text
    for needle in ('"quoted phrases"', "or", "-word", "budgets", "exactly that form"):
        assert needle in hint, needle
    assert browser.find_element(By.ID, "q").get_attribute("aria-describedby") == "q-hint"
    assert_accessible(browser)


def test_unknown_document_is_a_not_found_page(browser: WebDriver, gateway: ServedGateway) -> None:
    for path in ("/documents/not-an-id", "/documents/TWVldGluZ0RvY3VtZW50Ojk5OTk5OTk"):
        browser.get(gateway.url + path)
        assert browser.find_element(By.TAG_NAME, "h1").text == "Document not found"
        assert browser.find_element(By.LINK_TEXT, "Search meeting agendas and minutes")
        assert_accessible(browser)


def test_keyboard_reaches_results_and_pages(browser: WebDriver, gateway: ServedGateway) -> None:
    open_page(browser, gateway.url + "/?q=budget")

    def tab_to(css: str, limit: int = 60) -> bool:
        targets = browser.find_elements(By.CSS_SELECTOR, css)
        for _ in range(limit):
            browser.switch_to.active_element.send_keys(Keys.TAB)
            if browser.switch_to.active_element in targets:
                return True
        return False

    browser.find_element(By.ID, "q").click()
    assert tab_to("#results .page-link"), "Tab never reached a result"
    browser.switch_to.active_element.send_keys(Keys.ENTER)
    wait_for(browser, doc_loaded, "the document view")
    browser.find_element(By.TAG_NAME, "body").click()
    assert tab_to("#next-page, #prev-page"), "Tab never reached the page navigation"


def test_phone_width_and_screenshots(browser: WebDriver, gateway: ServedGateway) -> None:
    shots = {}
    open_page(browser, gateway.url + "/?q=budget&type=minutes")
    card = card_with_pages(browser, 2) or browser.find_element(By.CSS_SELECTOR, "#results .doc-card")
    doc_url = card.find_element(By.CSS_SELECTOR, ".result-title a").get_attribute("href")
    for name, size in (("document-desktop", DESKTOP), ("document-phone", PHONE)):
        set_viewport(browser, size)
        browser.get(doc_url)
        wait_for(browser, doc_loaded, "the document view")
        width = browser.execute_script("return document.documentElement.scrollWidth;")
        assert width <= size[0], f"{name}: page is {width}px wide in a {size[0]}px viewport"
        if size is PHONE:
            assert_accessible(browser)  # at phone width too (target sizes, reflow)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shots[name] = ARTIFACTS / f"{name}.png"
        browser.save_screenshot(str(shots[name]))
    set_viewport(browser, PHONE)
    open_page(browser, gateway.url + "/?q=budget&type=minutes")
    assert_accessible(browser)
    if os.environ.get("CIVIC_UPDATE_SCREENSHOTS") == "1":
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for name, path in shots.items():
            shutil.copyfile(path, DOCS_SCREENSHOTS / f"{name}.png")


# --- one meeting over two pages of results ---------------------------------------------------------------


@pytest.fixture(scope="module")
def long_meeting(gateway: ServedGateway) -> Iterator[dict[str, Any]]:
    """One document of 12 pages that all hold a word found nowhere else: 10 results, then 2."""
    word = f"wombat{uuid.uuid4().hex[:8]}"
    writer = {"Authorization": f"Bearer {WRITER_TOKEN}"}
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        gql(http, """mutation { upsertMunicipality(input: {subdomain: "longmeeting.zz", name: "Longmeeting",
            state: "ZZ"}) { consistencyToken } }""", headers=writer)
        body = gql(http, """mutation($pages: [PageInput!]!) { upsertDocument(input: {
            municipality: "longmeeting.zz", meetingName: "CityCouncil", meetingDate: "2022-06-07",
            documentType: MINUTES, pages: $pages}) { document { id } } }""",
            {"pages": [{"sourceId": f"{word}-p{n}", "pageNumber": n, "text": f"Item {n}: the {word} report."}
                       for n in range(1, 13)]}, writer)
        doc_id = body["data"]["upsertDocument"]["document"]["id"]
        find = 'query($w: String!) { search(query: $w, first: 1) { edges { node { id pageNumber } } } }'

        def visible() -> Any:  # on whichever node the page's own reads go to, without a consistency token
            edges = gql(http, find, {"w": word}, {"X-Max-Staleness-Ms": "0"})["data"]["search"]["edges"]
            return edges and edges[0]["node"]

        first = eventually(visible, timeout_s=10, what="the new meeting to be searchable")
        yield {"word": word, "id": doc_id, "page": first}
        gql(http, 'mutation($id: ID!) { deleteDocument(id: $id) { deletedId } }', {"id": doc_id}, writer)


def test_a_meeting_over_two_result_pages(
    browser: WebDriver, gateway: ServedGateway, long_meeting: dict[str, Any]
) -> None:
    word = long_meeting["word"]
    open_page(browser, f"{gateway.url}/?q={word}")
    ids = result_ids(browser)
    assert len(ids) == 1 and hit_count(ids) == 10, ids  # ten results, one card
    card = browser.find_element(By.CSS_SELECTOR, "#results .doc-card")
    assert card.find_element(By.CSS_SELECTOR, ".meta-count").text == "12 matching pages"
    assert texts(browser, "#results .page-link") == ["Page 1", "Page 2", "Page 3"]
    assert card.find_element(By.CSS_SELECTOR, ".more").text == "9 more matching pages in this meeting"
    assert browser.find_element(By.ID, "status").text == "12 matching pages · 1 meeting on this page"
    assert not browser.find_element(By.ID, "end-of-results").is_displayed()
    assert not card.find_elements(By.CSS_SELECTOR, ".continued")

    mark = settled(browser)
    browser.find_element(By.ID, "next").click()
    wait_settled(browser, mark)
    ids = result_ids(browser)
    assert len(ids) == 1 and hit_count(ids) == 2, ids
    card = browser.find_element(By.CSS_SELECTOR, "#results .doc-card")
    assert "Continued from the previous page" in card.find_element(By.CSS_SELECTOR, ".continued").text
    assert browser.find_element(By.ID, "end-of-results").is_displayed()
    assert not browser.find_element(By.ID, "next").is_enabled()
    assert_accessible(browser)


def test_links_of_the_old_page_view_open_the_document_view(
    browser: WebDriver, gateway: ServedGateway, long_meeting: dict[str, Any]
) -> None:
    page = long_meeting["page"]
    word = long_meeting["word"]
    browser.get(f"{gateway.url}/?q={word}#page={urllib.parse.quote(page['id'])}")
    wait_for(browser, doc_loaded, "the document view")
    assert urllib.parse.urlsplit(browser.current_url).path == f"/documents/{long_meeting['id']}"
    assert page_of_view(browser) == page["pageNumber"]
    assert texts(browser, "#page-text mark") == [word]
