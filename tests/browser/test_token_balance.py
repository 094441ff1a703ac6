"""tokenledger.js and <token-balance> on plain pages of another origin, in a
real browser: against the app, and against a scripted ``fetch`` where the
server's answers must be exact (order, Last-Event-ID, If-None-Match, 401)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.browser.conftest import (
    new_account,
    requests_seen,
    static_site,
    stream_token,
    wait_for,
    write,
)

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "token-balance.html"


def example_page(app_url: str, account: str, token: str) -> str:
    """examples/token-balance.html with its placeholders filled in."""
    page = EXAMPLE.read_text()
    for placeholder, value in (
        ("http://127.0.0.1:8000", app_url),
        ('account-id="user-42"', f'account-id="{account}"'),
        ("STREAM_TOKEN", token),
    ):
        assert placeholder in page
        page = page.replace(placeholder, value)
    return page


def module_script(app_url: str) -> str:
    """A plain page's start, importing tokenledger.js from the app."""
    return f'<!doctype html><script type="module" src="{app_url}/ui/tokenledger.js"></script>'


def balance_element(app_url: str, account: str, token: str, extra: str = "") -> str:
    attributes = f'base-url="{app_url}" account-id="{account}" token="{token}" {extra}'
    return f"<token-balance {attributes.strip()}></token-balance>"


def element_text(driver: WebDriver, selector: str = "token-balance") -> str:
    return str(driver.find_element(By.CSS_SELECTOR, selector).text)


def element_status(driver: WebDriver, selector: str = "token-balance") -> str | None:
    return driver.find_element(By.CSS_SELECTOR, selector).get_attribute("status")


def test_the_example_page_on_another_origin_shows_available_live_with_its_status(
    browser: WebDriver, app_url: str, api: httpx.Client
) -> None:
    account = new_account()
    write(api, account, "purchases", 2_500)
    page = example_page(app_url, account, stream_token(api, account))
    with static_site({"/": page}) as site:
        browser.get(f"{site}/")
        wait_for(browser, lambda d: element_text(d) == "2500" and element_status(d) == "live")
        assert browser.find_element(By.ID, "status").text == "live"
        write(api, account, "consumptions", 500)
        wait_for(browser, lambda d: element_text(d) == "2000", 3, "not within 3 s")


def test_two_elements_of_one_account_share_one_stream_and_always_agree(
    browser: Chrome, app_url: str, api: httpx.Client
) -> None:
    account = new_account()
    write(api, account, "purchases", 40)
    token = stream_token(api, account)
    element = balance_element(app_url, account, token)
    page = f"{module_script(app_url)}{element}<p>{element}</p>"
    with static_site({"/": page}) as site:
        browser.get(f"{site}/")
        both = 'token-balance[status="live"]'
        wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, both)) == 2)
        write(api, account, "consumptions", 1)
        wait_for(
            browser,
            lambda d: (
                [e.text for e in d.find_elements(By.CSS_SELECTOR, "token-balance")] == ["39", "39"]
            ),
        )
        streams = [
            r
            for r in requests_seen(browser)
            if r["url"].endswith("/balance/stream") and r["method"] == "GET"
        ]
        assert len(streams) == 1


def test_a_token_balance_follows_attributes_set_or_changed_after_it_is_inserted(
    browser: WebDriver, app_url: str, api: httpx.Client
) -> None:
    first, second = new_account(), new_account()
    write(api, first, "purchases", 111)
    write(api, second, "purchases", 222)
    with static_site({"/": module_script(app_url)}) as site:
        browser.get(f"{site}/")
        wait_for(
            browser, lambda d: d.execute_script("return !!customElements.get('token-balance')")
        )
        browser.execute_script(
            """
            const [base, account, token] = arguments;
            const element = document.createElement("token-balance");
            document.body.append(element);
            element.setAttribute("base-url", base);
            element.setAttribute("account-id", account);
            element.setAttribute("token", token);
            """,
            app_url,
            first,
            stream_token(api, first),
        )
        wait_for(browser, lambda d: element_text(d) == "111" and element_status(d) == "live")
        browser.execute_script(
            """
            const element = document.querySelector("token-balance");
            element.setAttribute("account-id", arguments[0]);
            element.setAttribute("token", arguments[1]);
            """,
            second,
            stream_token(api, second),
        )
        wait_for(browser, lambda d: element_text(d) == "222" and element_status(d) == "live")


def test_the_polling_fallback_keeps_the_number_right_while_streams_fail(
    browser: Chrome, app_url: str, api: httpx.Client
) -> None:
    account = new_account()
    write(api, account, "purchases", 500)
    token = stream_token(api, account)
    page = module_script(app_url) + balance_element(app_url, account, token, 'poll-interval="1"')
    with static_site({"/": page}) as site:
        # Every stream request fails (as behind a proxy that buffers or cuts them).
        browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*/stream*"]})
        browser.get(f"{site}/")
        wait_for(browser, lambda d: element_text(d) == "500")
        assert element_status(browser) == "offline"

        write(api, account, "consumptions", 120)
        wait_for(browser, lambda d: element_text(d) == "380", 8, "polling did not follow")
        write(api, account, "consumptions", 80)
        wait_for(browser, lambda d: element_text(d) == "300", 8, "polling did not follow")
        assert element_status(browser) == "offline"
        polls = [r for r in requests_seen(browser) if r["url"].endswith(f"/{account}/balance")]
        assert len(polls) >= 2
        tags = {r["headers"].get("If-None-Match") for r in polls}
        assert any(tag and tag.strip('"').isdigit() for tag in tags)

        # The stream comes back (the browser says it is online): live, polling stops.
        browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})
        browser.execute_script("window.dispatchEvent(new Event('online'))")
        wait_for(browser, lambda d: element_status(d) == "live", 10)
        write(api, account, "consumptions", 50)
        wait_for(browser, lambda d: element_text(d) == "250", 3)


SCRIPTED = (Path(__file__).parent / "scripted_watch.js").read_text()
PARSER_CHECK = (Path(__file__).parent / "parser_check.js").read_text()
"""watchBalance against a scripted ``fetch`` (scenarios ``order``, ``polling``, ``refused``)."""


def scripted(browser: WebDriver, app_url: str, scenario: str) -> dict[str, Any]:
    with static_site({"/": "<!doctype html><title>scripted</title>"}) as site:
        browser.get(f"{site}/")
        browser.set_script_timeout(15)
        result: dict[str, Any] = browser.execute_async_script(
            SCRIPTED, f"{app_url}/ui/tokenledger.js", scenario
        )
        return result


def test_watch_balance_never_shows_an_older_balance_and_resumes_with_last_event_id(
    browser: WebDriver, app_url: str
) -> None:
    result = scripted(browser, app_url, "order")
    assert result["seen"] == [[5, 100], [7, 80], [9, 60]]  # position 3 came late: dropped
    streams = [c for c in result["calls"] if c["url"].endswith("/balance/stream")]
    assert streams[0]["lastEventId"] is None
    assert streams[1]["lastEventId"] == "7"
    assert result["statuses"][:3] == ["offline", "live", "offline"]


def test_watch_balance_polls_with_if_none_match_while_the_stream_fails_until_it_is_back(
    browser: WebDriver, app_url: str
) -> None:
    result = scripted(browser, app_url, "polling")
    polls = [c for c in result["calls"] if c["url"].endswith("/a/balance")]
    assert polls and polls[0]["ifNoneMatch"] is None
    assert all(p["ifNoneMatch"] == '"4"' for p in polls[1:])
    assert result["seen"] == [[4, 42], [6, 10]]
    assert result["statuses"][-1] == "live"
    streams = [c for c in result["calls"] if c["url"].endswith("/stream")]
    assert streams[-1]["lastEventId"] == "4"  # resumed from the polled balance
    # Polling (every 30 ms here) stopped once the stream was back.
    assert result["calls"][result["liveAt"] :] == []


def test_watch_balance_stops_for_good_on_a_refused_token(browser: WebDriver, app_url: str) -> None:
    result = scripted(browser, app_url, "refused")
    assert result["errors"] == [401]
    assert len(result["calls"]) == 1
    assert result["statuses"] == ["offline"]


def test_the_event_stream_parser_follows_the_whatwg_rules_in_any_chunking(
    browser: WebDriver, app_url: str
) -> None:
    with static_site({"/": "<!doctype html><title>parser</title>"}) as site:
        browser.get(f"{site}/")
        browser.set_script_timeout(10)
        results = browser.execute_async_script(PARSER_CHECK, f"{app_url}/ui/tokenledger.js")
    expected = [
        {"type": "balance", "data": '{"a":1}\nx', "lastEventId": "5"},
        {"type": "message", "data": "", "lastEventId": "5"},
        {"type": "e", "data": " two spaces", "lastEventId": "7"},
        {"type": "message", "data": "y", "lastEventId": "7"},  # an id holding NUL is ignored
    ]
    for result in results:
        assert result["retry"] == 3000, result["size"]
        assert result["events"] == expected, result["size"]
        assert result["lastEventId"] == "7"
