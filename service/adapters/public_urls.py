"""Webhook URLs that may only reach the public internet (no server-side
request forgery, OWASP SSRF Prevention Cheat Sheet).

A URL must be ``https://`` and its host must resolve only to global unicast
addresses: loopback (``localhost`` included), private (RFC 1918, RFC 4193),
link-local (cloud metadata at 169.254.169.254 included), shared (RFC 6598),
multicast, reserved and unspecified addresses are refused. The host is
resolved when the endpoint is created (:func:`check_url`); deliveries check
the URL's form and literal address before every attempt (:func:`check_target`)
and the addresses a name resolves to whenever they connect
(``service.adapters.webhook_http``), since a name may be re-pointed after it
was checked. ``allow_insecure`` (``LEDGER_WEBHOOK_ALLOW_INSECURE``) lifts
these rules, for development and tests.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from urllib.parse import urlsplit

NUMERIC_HOST = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}\.?")
"""A host that libraries may read as a legacy IPv4 form (``inet_aton``), not a name."""


class UnsafeUrl(ValueError):
    """The URL is not an ``https://`` URL of a public address (the message says why)."""


def check_url(url: str, allow_insecure: bool) -> list[str]:
    """The addresses ``url``'s host resolves to, once checked.

    Raises:
        UnsafeUrl: not ``https://``, no host, unresolvable, or an address
            that is not public (unless ``allow_insecure``).
    """
    host, port = check_target(url, allow_insecure)
    if host is None:  # allowed as it is, or a public address literal
        return [] if allow_insecure else [str(ipaddress.ip_address(urlsplit(url).hostname or ""))]
    addresses = _resolve(host, port)
    for address in addresses:
        if not is_public(address):
            raise UnsafeUrl(f"resolves to {address}, which is not a public address")
    return addresses


def check_target(url: str, allow_insecure: bool) -> tuple[str | None, int]:
    """Checks ``url`` without resolving it: its form (``https://``, a host,
    no credentials), a loopback name, and the host if it is an address
    literal. Returns the host and port still to resolve (``None`` when
    ``allow_insecure`` or when the host is a literal, checked here).

    Raises:
        UnsafeUrl: as :func:`check_url`, for what can be told without DNS.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise UnsafeUrl(f"is not a valid URL: {error}") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UnsafeUrl("must be an absolute https:// URL")
    if parts.username or parts.password:
        raise UnsafeUrl("must not carry credentials")
    if allow_insecure:
        return None, 0
    if parts.scheme != "https":
        raise UnsafeUrl("must be https:// (LEDGER_WEBHOOK_ALLOW_INSECURE is off)")
    host = parts.hostname
    if host.rstrip(".").lower() == "localhost" or host.lower().endswith(".localhost"):
        raise UnsafeUrl("must not name a loopback host")
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        if NUMERIC_HOST.fullmatch(host.lower()):  # 127.1, 2130706433, 0x7f.1: legacy IPv4 forms
            raise UnsafeUrl("must name its host or give a dotted-quad address") from None
        return host, port or 443
    if not is_public(str(literal)):
        raise UnsafeUrl(f"resolves to {literal}, which is not a public address")
    return None, 0


def _resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise UnsafeUrl(f"host {host!r} does not resolve") from None
    return sorted({str(info[4][0]) for info in infos})


GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")
"""IPv6 global unicast (RFC 4291); anything else is refused."""
EMBEDDING_V6 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
"""NAT64 prefixes (RFC 6052, RFC 8215): the IPv4 address in the last 32 bits is what is reached."""


def is_public(text: str) -> bool:
    """Whether the address ``text`` is global unicast. An IPv6 address that
    carries an IPv4 one (mapped, NAT64, 6to4) is judged by that IPv4 address;
    other IPv6 addresses must be in 2000::/3. A zone suffix is ignored."""
    address = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and any(address in net for net in EMBEDDING_V6):
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            address = embedded
        elif address not in GLOBAL_UNICAST_V6:
            return False
    return address.is_global and not address.is_multicast
