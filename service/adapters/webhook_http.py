"""The HTTP client of webhook deliveries: httpx requests over an aiohttp transport.

httpx's own connection pool costs about 1.4 ms of CPU per request on the
benchmark machine, more as concurrency grows (encode/httpx#3215); the
``httpx-aiohttp`` transport (aiohttp's connection pool and C HTTP parser under
httpx's API) costs about 0.45 ms. :class:`WebhookPoster` hands each
``httpx.Request`` straight to that transport: a delivery needs none of
``httpx.AsyncClient``'s layers (URL merging, cookies, auth, redirects, which
are never followed), and skipping them halved the dispatcher's CPU per message
(``benchmarks.webhook_drain``).

Unless ``allow_insecure``, every connection's addresses go through
:class:`PublicResolver`: a host name re-pointed to a private address after its
endpoint was created is refused when the delivery connects, not only when a
check ran before it (no DNS-rebinding window). Address literals never reach a
resolver; :func:`service.adapters.public_urls.check_target` checks them.
"""

from __future__ import annotations

import errno
import socket

import aiohttp
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from httpx_aiohttp import AiohttpTransport

from service.adapters.public_urls import is_public


class PublicResolver(AbstractResolver):
    """Resolves like aiohttp's default resolver, then refuses the name when
    any address is not global unicast (``OSError``, which
    :meth:`WebhookPoster.post` raises as an ``httpx.ConnectError``)."""

    def __init__(self) -> None:
        self._resolver = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._resolver.resolve(host, port, family)
        for result in results:
            if not is_public(result["host"]):
                reason = f"{host} resolves to {result['host']}, which is not a public address"
                raise OSError(errno.EACCES, reason)
        return results

    async def close(self) -> None:
        await self._resolver.close()


class WebhookPoster:
    """Posts webhook messages: up to ``connections`` kept-alive connections
    per host, redirects never followed, only the start of an answer read.

    It sets no timeout of its own: the caller bounds each post (the dispatcher
    gives an attempt 10 s in all). Create it in the event loop that will use it.
    """

    def __init__(self, connections: int, allow_insecure: bool) -> None:
        def session() -> aiohttp.ClientSession:
            connector = aiohttp.TCPConnector(
                limit=0,  # no shared cap: a dead receiver's connections starve no other
                limit_per_host=connections,
                resolver=None if allow_insecure else PublicResolver(),
            )
            return aiohttp.ClientSession(connector=connector)

        self._transport = AiohttpTransport(client=session)

    async def post(
        self, url: httpx.URL, body: bytes, headers: list[tuple[str, str]], excerpt: int
    ) -> tuple[int, str]:
        """``POST``\\ s ``body`` to ``url``; returns the status and the first
        ``excerpt`` characters of the answer (no more is read).

        Raises ``httpx.ConnectError`` when no connection could be made (refused,
        unresolvable, or a name resolving to a non-public address), other
        ``httpx.TransportError`` subclasses when it failed later.
        """
        request = httpx.Request("POST", url, content=body, headers=headers)
        try:
            response = await self._transport.handle_async_request(request)
        except httpx.ConnectTimeout as error:
            # httpx-aiohttp reports a refused connection as a timeout.
            if isinstance(error.__cause__, aiohttp.ClientConnectorError):
                raise httpx.ConnectError(str(error), request=request) from error.__cause__
            raise
        try:
            head = b""
            # Read even a 2xx's (short) answer to its end: aiohttp keeps only
            # connections whose answer was read whole.
            async for chunk in response.aiter_raw():
                head += chunk
                if len(head) >= excerpt:
                    break
            return response.status_code, head[:excerpt].decode("utf-8", "replace")
        finally:
            await response.aclose()

    async def aclose(self) -> None:
        await self._transport.aclose()
