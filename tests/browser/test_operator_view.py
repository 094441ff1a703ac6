"""The operator view, /ui/, in a real browser; and the dashboard's origin."""

from __future__ import annotations

import httpx
import pytest
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

from tests.browser.conftest import (
    digits,
    field,
    new_account,
    origin_of,
    requests_seen,
    stream_token,
    wait_for,
    write,
)
from tests.helpers.receiver import webhook_receiver

pytestmark = pytest.mark.e2e
KEY_STORAGE = "tokenledger.operator-key"


def api_key(api: httpx.Client, *scopes: str) -> str:
    response = api.post("/v1/api-keys", json={"name": new_account("key"), "scopes": list(scopes)})
    assert response.status_code == 201, response.text
    key: str = response.json()["key"]
    return key


def sign_in(browser: WebDriver, app_url: str, key: str) -> None:
    browser.get(f"{app_url}/ui/")
    browser.execute_script("sessionStorage.clear()")
    browser.refresh()
    box = wait_for(browser, lambda d: d.find_element(By.ID, "api-key"))
    wait_for(browser, lambda d: box.is_displayed())
    box.send_keys(key, Keys.ENTER)


def row(browser: WebDriver, account: str) -> list[WebElement]:
    return browser.find_elements(
        By.CSS_SELECTOR, f'[data-field="balances"] tr[data-account-id="{account}"]'
    )


def cell(browser: WebDriver, account: str, name: str) -> int | None:
    rows = row(browser, account)
    if not rows:
        return None
    return digits(rows[0].find_element(By.CSS_SELECTOR, f'[data-field="{name}"]').text)


def test_the_operator_view_keeps_the_key_in_session_storage_and_shows_a_new_account_live(
    browser: WebDriver, app_url: str, api: httpx.Client
) -> None:
    key = api_key(api, "audit")
    sign_in(browser, app_url, key)
    wait_for(browser, lambda d: field(d, "status") == "live", 10)
    assert key not in browser.current_url
    assert browser.execute_script(f"return sessionStorage.getItem('{KEY_STORAGE}')") == key
    assert browser.find_element(By.ID, "api-key").get_attribute("value") == ""

    account = new_account("new")
    write(api, account, "purchases", 777)
    wait_for(browser, lambda d: cell(d, account, "available") == 777, 3, "no row within 3 s")
    write(api, account, "consumptions", 77, model="gpt-4o")
    wait_for(browser, lambda d: cell(d, account, "available") == 700, 3)

    feed = f'[data-field="feed"] li[data-account-id="{account}"]'
    wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, feed)) == 2, 8)
    assert "gpt-4o" in browser.find_elements(By.CSS_SELECTOR, feed)[0].text
    wait_for(browser, lambda d: digits(field(d, "projection_lag")) is not None, 5)
    wait_for(browser, lambda d: field(d, "write_rate").replace(".", "").isdigit(), 8)

    browser.refresh()  # the key survives a reload of the tab
    wait_for(browser, lambda d: field(d, "status") == "live", 10)
    wait_for(browser, lambda d: cell(d, account, "available") == 700, 5)
    browser.find_element(By.CSS_SELECTOR, '[data-action="sign-out"]').click()
    assert browser.execute_script(f"return sessionStorage.getItem('{KEY_STORAGE}')") is None
    wait_for(browser, lambda d: d.find_element(By.ID, "api-key").is_displayed())


def test_an_admin_operator_sees_a_failing_webhook_endpoint(
    browser: WebDriver, app_url: str, api: httpx.Client
) -> None:
    with webhook_receiver() as receiver:
        receiver.answers = [500, 500]  # both attempts of the first message fail
        body = {"url": receiver.url, "events": ["entry.created"]}
        endpoint = api.post("/v1/webhook-endpoints", json=body)
        assert endpoint.status_code == 201, endpoint.text
        write(api, new_account("hook"), "purchases", 5)
        receiver.wait_for(2)
        sign_in(browser, app_url, api_key(api, "audit", "admin"))
        item = f'[data-field="webhooks"] li[data-endpoint-id="{endpoint.json()["id"]}"]'
        wait_for(
            browser,
            lambda d: any(
                e.get_attribute("data-failed") == "1"
                for e in d.find_elements(By.CSS_SELECTOR, item)
            ),
            15,
            "the failing endpoint is not shown",
        )
        shown = browser.find_element(By.CSS_SELECTOR, item).text
        assert receiver.url in shown and "1 failed" in shown
        assert api.delete(f"/v1/webhook-endpoints/{endpoint.json()['id']}").status_code == 204


def test_a_key_without_the_audit_scope_is_refused_with_the_reason(
    browser: WebDriver, app_url: str, api: httpx.Client
) -> None:
    sign_in(browser, app_url, api_key(api, "read"))
    wait_for(browser, lambda d: "audit" in field(d, "signin_error"), 5)
    assert browser.execute_script(f"return sessionStorage.getItem('{KEY_STORAGE}')") is None
    sign_in(browser, app_url, "tl_not-a-key")
    wait_for(browser, lambda d: "not valid" in field(d, "signin_error"), 5)


def test_the_balances_filter_and_sort_from_the_keyboard(
    browser: WebDriver, app_url: str, api: httpx.Client
) -> None:
    prefix = new_account("sorted")
    for suffix, amount in (("a", 300), ("b", 100), ("c", 200)):
        write(api, f"{prefix}-{suffix}", "purchases", amount)
    sign_in(browser, app_url, api_key(api, "audit"))
    wait_for(browser, lambda d: field(d, "status") == "live", 10)

    browser.find_element(By.CSS_SELECTOR, '[data-field="filter"]').send_keys(prefix)

    def shown(d: WebDriver) -> list[str]:
        rows = d.find_elements(By.CSS_SELECTOR, '[data-field="balances"] tr')
        return [str(r.get_attribute("data-account-id")).rsplit("-", 1)[1] for r in rows]

    wait_for(browser, lambda d: sorted(shown(d)) == ["a", "b", "c"], 5)
    header = browser.find_element(By.CSS_SELECTOR, 'th[data-sort="available"]')
    header.find_element(By.TAG_NAME, "button").send_keys(Keys.ENTER)
    wait_for(browser, lambda d: shown(d) == ["a", "c", "b"])
    assert header.get_attribute("aria-sort") == "descending"
    header.find_element(By.TAG_NAME, "button").send_keys(Keys.SPACE)
    wait_for(browser, lambda d: shown(d) == ["b", "c", "a"])
    assert header.get_attribute("aria-sort") == "ascending"


def test_no_request_of_either_view_leaves_the_services_origin(
    browser: Chrome, app_url: str, api: httpx.Client
) -> None:
    account = new_account()
    write(api, account, "purchases", 1_000)
    browser.get(f"{app_url}/ui/accounts/{account}#token={stream_token(api, account)}")
    wait_for(browser, lambda d: field(d, "status") == "live", 10)
    write(api, account, "consumptions", 1)
    wait_for(browser, lambda d: digits(field(d, "available")) == 999, 3)
    sign_in(browser, app_url, api_key(api, "audit"))
    wait_for(browser, lambda d: field(d, "status") == "live" and row(d, account), 10)

    urls = [request["url"] for request in requests_seen(browser)]
    assert any(url.endswith("/ui/tokenledger.js") for url in urls)
    assert any(url.endswith("/v1/balances/stream") for url in urls)
    foreign = [url for url in urls if origin_of(url) != app_url and not url.startswith("data:")]
    assert foreign == []
    # And the pages forbid it: their Content-Security-Policy allows 'self' only.
    for path in ("/ui/", f"/ui/accounts/{account}"):
        policy = api.get(path).headers["content-security-policy"]
        assert "default-src 'self'" in policy and "connect-src 'self'" in policy
