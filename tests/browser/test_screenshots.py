"""Both views on a realistic ledger, at desktop and phone widths: nothing
overflows a phone's width, and the pictures of the README are taken here.

``TOKENLEDGER_SCREENSHOTS=docs/screenshots .venv/bin/python -m pytest
tests/browser/test_screenshots.py`` refreshes them; otherwise they go to a
temporary directory.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver

from service.config import Settings
from tests.browser.conftest import AUTH, digits, field, wait_for, write
from tests.helpers.servers import (
    ADMIN_KEY,
    fresh_postgres_database,
    fresh_redis_database,
    running_app,
)

pytestmark = pytest.mark.e2e

CUSTOMER = "ada-research"
TENANTS = {"acme-corp": 1_250_000, "globex": 480_000, "initech": 96_500, "hooli": 2_000_000}
PHONE = (390, 844)
SETTLED = """
const amount = document.querySelector('[data-field="available"]');
return getComputedStyle(amount).color === getComputedStyle(document.body).color;
"""
DESKTOP = (1280, 900)


@pytest.fixture(scope="module")
def ledger() -> Iterator[tuple[str, httpx.Client]]:
    """An app of its own (only this test's accounts), with a realistic history."""
    with fresh_postgres_database() as db_url, fresh_redis_database() as redis_url:
        settings = Settings(database_url=db_url, redis_url=redis_url, admin_api_key=ADMIN_KEY)
        with running_app(settings) as url, httpx.Client(base_url=url, headers=AUTH) as api:
            soon = (datetime.now(UTC) + timedelta(days=12)).isoformat().replace("+00:00", "Z")
            write(api, CUSTOMER, "purchases", 250_000, payment_reference="pi_3QX8a2")
            write(api, CUSTOMER, "grants", 20_000, reason="welcome credit", expires_at=soon)
            for model, operation, amount in (
                ("gpt-4o", "chat.completion", 1_840),
                ("claude-sonnet-4", "chat.completion", 5_230),
                ("text-embedding-3-small", "embeddings", 312),
                ("gpt-4o-mini", "chat.completion", 742),
            ):
                write(api, CUSTOMER, "consumptions", amount, model=model, operation=operation)
            write(api, CUSTOMER, "holds", 4_000, operation="agent.run")
            api.patch(f"/v1/accounts/{CUSTOMER}", json={"credit_limit": 10_000}).raise_for_status()
            for tenant, amount in TENANTS.items():
                write(api, tenant, "purchases", amount)
                write(api, tenant, "consumptions", amount // 40, model="gpt-4o")
            yield url, api


def fit(browser: WebDriver, width: int, height: int) -> None:
    """Window of ``width``, tall enough for the whole page (at most 1,800 px)."""
    browser.set_window_size(width, height)
    needed = browser.execute_script("return document.documentElement.scrollHeight")
    chrome = browser.execute_script("return window.outerHeight - window.innerHeight")
    browser.set_window_size(width, min(max(height, needed + chrome), 1800))


def overflows(browser: WebDriver) -> bool:
    return bool(
        browser.execute_script(
            "return document.documentElement.scrollWidth > document.documentElement.clientWidth"
        )
    )


def test_both_views_fit_a_phone_and_are_photographed_for_the_readme(
    browser: WebDriver, ledger: tuple[str, httpx.Client], screenshots: Path
) -> None:
    url, api = ledger
    reader = api.post("/v1/api-keys", json={"name": "support-desk", "scopes": ["read"]})
    viewer = reader.json()["key"]  # a read key: the page also shows credits and holds
    for name, (width, height) in (("desktop", DESKTOP), ("phone", PHONE)):
        browser.set_window_size(width, height)
        browser.get(f"{url}/ui/accounts/{CUSTOMER}#token={viewer}")
        wait_for(browser, lambda d: field(d, "status") == "live", 10)
        wait_for(
            browser,
            lambda d: d.find_element(By.CSS_SELECTOR, '[data-panel="holds"]').is_displayed(),
        )
        write(api, CUSTOMER, "consumptions", 999, model="gpt-4o", operation="chat.completion")
        wait_for(browser, lambda d: "Consumption" in field(d, "notice"), 5)
        wait_for(browser, lambda d: d.execute_script(SETTLED), 5)  # the change's flash is over
        assert not overflows(browser), f"the account page overflows at {width} px"
        fit(browser, width, height)
        browser.save_screenshot(str(screenshots / f"account-{name}.png"))

        browser.set_window_size(width, height)
        browser.get(f"{url}/ui/")
        browser.execute_script("sessionStorage.clear()")
        browser.refresh()
        wait_for(browser, lambda d: d.find_element(By.ID, "api-key").is_displayed())
        browser.find_element(By.ID, "api-key").send_keys(ADMIN_KEY, Keys.ENTER)
        wait_for(browser, lambda d: field(d, "status") == "live", 10)
        wait_for(browser, lambda d: digits(field(d, "accounts_count")) == 1 + len(TENANTS), 5)
        write(api, "acme-corp", "consumptions", 2_048, model="claude-sonnet-4")
        wait_for(browser, lambda d: field(d, "write_rate") not in ("", "—"), 8)
        wait_for(
            browser,
            lambda d: len(d.find_elements(By.CSS_SELECTOR, '[data-field="feed"] li')) >= 12,
            8,
        )
        assert not overflows(browser), f"the operator view overflows at {width} px"
        fit(browser, width, height)
        browser.save_screenshot(str(screenshots / f"operator-{name}.png"))
    assert sorted(p.name for p in screenshots.glob("*.png")) == [
        "account-desktop.png",
        "account-phone.png",
        "operator-desktop.png",
        "operator-phone.png",
    ]
