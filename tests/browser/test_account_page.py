"""The account page, /ui/accounts/{id}#token=…, in a real browser."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.browser.conftest import (
    digits,
    field,
    new_account,
    stream_token,
    wait_for,
    write,
)
from tests.helpers.proxy import tcp_proxy

pytestmark = pytest.mark.e2e


def open_account(browser: WebDriver, base: str, account: str, token: str) -> None:
    browser.get(f"{base}/ui/accounts/{account}#token={token}")
    wait_for(browser, lambda d: field(d, "status") == "live", 10, "the page never went live")


def test_the_account_page_shows_a_write_within_3_seconds(
    browser: WebDriver, app_url: str, api: httpx.Client
) -> None:
    account = new_account()
    write(api, account, "purchases", 12_480)
    open_account(browser, app_url, account, stream_token(api, account))
    wait_for(browser, lambda d: digits(field(d, "available")) == 12_480)
    assert field(browser, "available") == "12,480"
    assert digits(field(browser, "held")) == 0
    assert digits(field(browser, "credit_limit")) == 0

    started = time.monotonic()
    write(api, account, "consumptions", 480, model="gpt-4o", operation="chat.completion")
    wait_for(browser, lambda d: digits(field(d, "available")) == 12_000, 3, "not within 3 s")
    assert time.monotonic() - started < 3

    # The entry arrives from the entries stream, with a notice.
    row = wait_for(
        browser,
        lambda d: d.find_elements(By.CSS_SELECTOR, '[data-field="entries"] tr[data-version="2"]'),
    )[0]
    assert "Consumption" in row.text and "gpt-4o" in row.text and "bootstrap-admin" in row.text
    wait_for(browser, lambda d: "Consumption" in field(d, "notice"))
    balance_region = browser.find_element(
        By.CSS_SELECTOR, '[aria-live="polite"] [data-field="available"]'
    )
    assert balance_region.text == "12,000"


def test_the_badge_reads_offline_when_the_stream_is_cut_and_live_again_after(
    browser: WebDriver, app_url: str, api: httpx.Client
) -> None:
    account = new_account()
    write(api, account, "purchases", 1_000)
    app = urlsplit(app_url)
    with tcp_proxy(app.hostname or "127.0.0.1", app.port or 80) as proxy:
        via_proxy = f"http://127.0.0.1:{proxy.port}"
        open_account(browser, via_proxy, account, stream_token(api, account))
        wait_for(browser, lambda d: digits(field(d, "available")) == 1_000)

        proxy.set_mode("refuse")  # every open connection reset, new ones refused
        wait_for(browser, lambda d: field(d, "status") == "offline", 5, "still live after the cut")
        write(api, account, "consumptions", 250)  # while the page cannot hear it
        assert digits(field(browser, "available")) == 1_000

        proxy.set_mode("pass")
        wait_for(browser, lambda d: field(d, "status") == "live", 20, "never live again")
        wait_for(browser, lambda d: digits(field(d, "available")) == 750, 5)
        # Resumed with Last-Event-ID: the entry missed meanwhile is replayed, once.
        wait_for(
            browser,
            lambda d: len(d.find_elements(By.CSS_SELECTOR, '[data-field="entries"] tr')) == 2,
        )


def test_a_stream_token_hides_the_credits_panel_and_a_read_key_shows_the_buckets(
    browser: WebDriver, app_url: str, api: httpx.Client
) -> None:
    account = new_account()
    expires = (datetime.now(UTC) + timedelta(days=3)).isoformat().replace("+00:00", "Z")
    write(api, account, "grants", 5_000, expires_at=expires)
    write(api, account, "purchases", 7_000)
    api.patch(f"/v1/accounts/{account}", json={"credit_limit": 2_500}).raise_for_status()

    open_account(browser, app_url, account, stream_token(api, account))
    wait_for(browser, lambda d: digits(field(d, "credit_limit")) == 2_500)
    credits = browser.find_element(By.CSS_SELECTOR, '[data-panel="credits"]')
    wait_for(
        browser,
        lambda d: d.execute_script(
            "return performance.getEntriesByType('resource').some(e => e.name.endsWith('/credits'))"
        ),
    )
    assert not credits.is_displayed()

    key = api.post("/v1/api-keys", json={"name": f"reader-{account}", "scopes": ["read"]}).json()[
        "key"
    ]
    browser.get("about:blank")
    open_account(browser, app_url, account, key)
    wait_for(
        browser, lambda d: d.find_element(By.CSS_SELECTOR, '[data-panel="credits"]').is_displayed()
    )
    buckets = browser.find_elements(By.CSS_SELECTOR, '[data-field="credits"] li')
    assert len(buckets) == 2
    assert (
        "Grant" in buckets[0].text
        and "5,000" in buckets[0].text
        and "expires in" in buckets[0].text
    )


def test_a_token_for_another_account_is_refused_with_a_reason_and_stays_offline(
    browser: WebDriver, app_url: str, api: httpx.Client
) -> None:
    account, other = new_account(), new_account()
    write(api, other, "purchases", 10)
    browser.get(f"{app_url}/ui/accounts/{account}#token={stream_token(api, other)}")
    wait_for(browser, lambda d: "another" in field(d, "error") or "access" in field(d, "error"))
    assert field(browser, "status") == "offline"
    assert field(browser, "available") == "—"


def test_the_account_page_keeps_its_number_right_by_polling_while_streams_fail(
    browser: WebDriver, app_url: str, api: httpx.Client
) -> None:
    account = new_account()
    write(api, account, "purchases", 3_000)
    browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*/stream*"]})
    browser.get(f"{app_url}/ui/accounts/{account}#token={stream_token(api, account)}&poll=1")
    wait_for(browser, lambda d: digits(field(d, "available")) == 3_000, 5)
    write(api, account, "consumptions", 1_000)
    wait_for(browser, lambda d: digits(field(d, "available")) == 2_000, 8, "polling did not follow")
    assert field(browser, "status") == "offline"
    browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})
    browser.execute_script("window.dispatchEvent(new Event('online'))")
    wait_for(browser, lambda d: field(d, "status") == "live", 10)
