"""Webhook URLs reach public addresses only (no server-side request forgery)."""

from __future__ import annotations

import pytest

from service.adapters.public_urls import UnsafeUrl, check_target, check_url, is_public


@pytest.mark.parametrize(
    "url",
    [
        "http://93.184.215.14/hook",
        "https://localhost/hook",
        "https://app.localhost/hook",
        "https://127.0.0.1/hook",
        "https://[::1]/hook",
        "https://10.1.2.3/hook",
        "https://172.16.0.9/hook",
        "https://192.168.1.1/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://100.64.0.1/hook",
        "https://0.0.0.0/hook",
        "https://[fd00::1]/hook",
        "https://[fe80::1]/hook",
        "https://[::ffff:10.0.0.1]/hook",
        "https://[64:ff9b::a9fe:a9fe]/latest/meta-data",
        "https://[64:ff9b::a00:5]/hook",
        "https://[2002:a00:5::]/hook",
        "https://[::7f00:1]/hook",
        "https://[fec0::1]/hook",
        "https://127.1/hook",
        "https://2130706433/hook",
        "https://0x7f.1/hook",
        "https://224.0.0.1/hook",
        "https://user:pass@93.184.215.14/hook",
        "ftp://93.184.215.14/hook",
        "/relative",
        "https://[::1/hook",
    ],
)
def test_urls_that_could_reach_inside_the_network_are_refused(url: str) -> None:
    with pytest.raises(UnsafeUrl):
        check_url(url, allow_insecure=False)


def test_an_https_url_of_a_public_address_is_accepted() -> None:
    assert check_url("https://93.184.215.14:8443/hook", allow_insecure=False) == ["93.184.215.14"]


def test_an_unresolvable_host_is_refused() -> None:
    with pytest.raises(UnsafeUrl, match="does not resolve"):
        check_url("https://no-such-host.invalid/hook", allow_insecure=False)


def test_allow_insecure_accepts_loopback_http_for_development() -> None:
    assert check_url("http://127.0.0.1:8080/hook", allow_insecure=True) == []
    with pytest.raises(UnsafeUrl):
        check_url("ftp://127.0.0.1/hook", allow_insecure=True)


def test_ipv6_addresses_carrying_a_public_ipv4_address_are_judged_by_it() -> None:
    assert is_public("::ffff:93.184.215.14")
    assert is_public("2002:5db8:d70e::1")  # 6to4 of 93.184.215.14
    assert is_public("2606:4700:4700::1111")
    assert not is_public("64:ff9b::7f00:1")


def test_a_delivery_check_leaves_names_to_the_resolver_and_judges_literals() -> None:
    assert check_target("https://example.com/hook", allow_insecure=False) == ("example.com", 443)
    assert check_target("https://93.184.215.14:8443/hook", allow_insecure=False) == (None, 0)
    with pytest.raises(UnsafeUrl):
        check_target("https://10.0.0.1/hook", allow_insecure=False)
