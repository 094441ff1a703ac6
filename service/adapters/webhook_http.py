"""The HTTP client of webhook deliveries: httpx over an aiohttp transport.

httpx's own connection pool costs about 1.4 ms of CPU per request on the
benchmark machine, more as concurrency grows (encode/httpx#3215); the
``httpx-aiohttp`` transport (aiohttp's connection pool and C HTTP parser under
httpx's API) costs about 0.45 ms. Measured with ``benchmarks._sink`` as the
receiver, 5,000 posts of a 1 KB body, 8 and 64 at a time.

Unless ``allow_insecure``, every connection's addresses go through
:class:`PublicResolver`: a host name re-pointed to a private address after its
endpoint was created is refused when the delivery connects, not only when a
check ran before it (no DNS-rebinding window). Address literals never reach a
resolver; :func:`service.adapters.public_urls.check_target` checks them.
"""

from __future__ import annotations

import socket

import aiohttp
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from httpx_aiohttp import AiohttpTransport

from service.adapters.public_urls import is_public


class PublicResolver(AbstractResolver):
    """Resolves like aiohttp's default resolver, then refuses the name when
    any address is not global unicast (``OSError``, which httpx reports as a
    ``ConnectError``)."""

    def __init__(self) -> None:
        self._resolver = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._resolver.resolve(host, port, family)
        for result in results:
            if not is_public(result["host"]):
                raise OSError(f"{host} resolves to {result['host']}, which is not a public address")
        return results

    async def close(self) -> None:
        await self._resolver.close()


def open_client(connections: int, timeout: float, allow_insecure: bool) -> httpx.AsyncClient:
    """An httpx client for deliveries: up to ``connections`` kept-alive
    connections per host, ``timeout`` seconds per connect / read / write, redirects
    not followed. Call it in the event loop that will use it."""

    def session() -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=0,  # no shared cap: a dead receiver's connections starve no other
            limit_per_host=connections,
            resolver=None if allow_insecure else PublicResolver(),
        )
        return aiohttp.ClientSession(connector=connector)

    transport = AiohttpTransport(client=session)
    return httpx.AsyncClient(transport=transport, timeout=timeout, follow_redirects=False)
