"""A real browser (Debian's chromium, headless, through chromedriver and
Selenium) against the real app on PostgreSQL and Redis.

Nothing here is skipped when chromium is missing: ``bash .ci/run`` installs
``chromium`` and ``chromium-driver`` with apt, and a missing browser fails the
tests with a message saying so. Tests wait on conditions (``WebDriverWait``),
never on fixed sleeps.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver import Chrome
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from service.config import Settings
from tests.helpers.servers import (
    ADMIN_KEY,
    fresh_postgres_database,
    fresh_redis_database,
    running_app,
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
SCREENSHOTS_ENV = "TOKENLEDGER_SCREENSHOTS"
"""Directory the screenshot test writes to (``docs/screenshots`` to refresh the
README's pictures); unset, a temporary directory."""


@pytest.fixture(scope="session")
def app_url() -> Iterator[str]:
    """The app on fresh PostgreSQL and Redis databases (pings every second)."""
    with fresh_postgres_database() as db_url, fresh_redis_database() as redis_url:
        settings = Settings(
            database_url=db_url,
            redis_url=redis_url,
            admin_api_key=ADMIN_KEY,
            sse_ping_seconds=1,
            webhook_allow_insecure=True,  # the test's receiver listens on 127.0.0.1
            webhook_retry_seconds="0.2",
        )
        with running_app(settings) as url:
            yield url


@pytest.fixture(scope="session")
def api(app_url: str) -> Iterator[httpx.Client]:
    """An HTTP client of the app with the admin key."""
    with httpx.Client(base_url=app_url, headers=AUTH, timeout=30) as client:
        yield client


def _chrome() -> Chrome:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        raise RuntimeError(
            "the browser tests need Debian's chromium and chromium-driver: "
            "apt-get install chromium chromium-driver (bash .ci/run does it)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,900",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--lang=en-US",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


@pytest.fixture(scope="session")
def chrome() -> Iterator[Chrome]:
    driver = _chrome()
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def browser(chrome: Chrome) -> Iterator[Chrome]:
    """The session's browser on a blank page with no network conditions and
    an empty performance log; left on a blank page (its streams closed)."""
    chrome.get("about:blank")
    chrome.execute_cdp_cmd("Network.enable", {})
    chrome.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})
    chrome.set_window_size(1280, 900)
    # Selenium leaves ChromiumDriver.get_log() unannotated.
    chrome.get_log("performance")  # type: ignore[no-untyped-call]
    try:
        yield chrome
    finally:
        chrome.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})
        chrome.get("about:blank")


def new_account(prefix: str = "acct") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def write(api: httpx.Client, account: str, kind: str, amount: int, **fields: Any) -> dict[str, Any]:
    """A write (``kind``: purchases, grants, consumptions, …); its 201 body."""
    body: dict[str, Any] = {"amount": amount, **fields}
    if kind in ("grants", "deductions"):
        body.setdefault("reason", "test")
    response = api.post(f"/v1/accounts/{account}/{kind}", json=body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def stream_token(api: httpx.Client, account: str) -> str:
    response = api.post(f"/v1/accounts/{account}/stream-tokens", json={"ttl_seconds": 600})
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


def field(driver: WebDriver, name: str) -> str:
    """The text of the element with ``data-field=name``."""
    return str(driver.find_element(By.CSS_SELECTOR, f'[data-field="{name}"]').text)


def digits(text: str) -> int | None:
    """``"12,480"`` → 12480 (``-`` kept); ``None`` when there is no number."""
    cleaned = text.replace(",", "").strip()
    try:
        return int(cleaned)
    except ValueError:
        return None


def wait_for(
    driver: WebDriver, condition: Callable[[WebDriver], Any], timeout: float = 10, message: str = ""
) -> Any:
    """``condition``'s first truthy value, polled every 50 ms. An element the
    live page replaced while ``condition`` read it counts as not yet: the
    next poll finds the new one."""
    wait = WebDriverWait(
        driver,
        timeout,
        poll_frequency=0.05,
        ignored_exceptions=[NoSuchElementException, StaleElementReferenceException],
    )
    return wait.until(condition, message)


def requests_seen(driver: Chrome) -> list[dict[str, Any]]:
    """The requests the page sent since the log was last read
    (``Network.requestWillBeSent`` of the performance log)."""
    requests = []
    # Selenium leaves ChromiumDriver.get_log() unannotated.
    for item in driver.get_log("performance"):  # type: ignore[no-untyped-call]
        message = json.loads(item["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            requests.append(message["params"]["request"])
    return requests


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@contextlib.contextmanager
def static_site(pages: dict[str, str]) -> Iterator[str]:
    """Serves ``pages`` (path → HTML) from another origin (a port of its own);
    yields its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            page = pages.get(self.path.split("?")[0])
            if page is None:
                self.send_error(404)
                return
            body = page.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: ``$TOKENLEDGER_SCREENSHOTS`` or a temporary directory."""
    configured = os.environ.get(SCREENSHOTS_ENV)
    if configured:
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.mktemp("screenshots")
