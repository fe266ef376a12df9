"""Proxies and the environment over real sockets, with both clients.

A forwarding HTTP proxy in threads (``proxy``, `loopback.ForwardingProxy`; behind TLS as an
``https://`` proxy, with ``CONNECT`` tunnels) is given as `proxy=` or found, as requests
finds it, in ``HTTP_PROXY``/``HTTPS_PROXY``/``ALL_PROXY`` (and ``NO_PROXY``); credentials
come from the proxy URL or ``.netrc``. Each request reads the environment as it is when it
starts. ``docs/reliability.md`` lists what each case gives the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import warnings
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
from clients import (
    MESSAGES,
    TEST_TIMEOUT,
    Result,
    insecure_warnings,
    run_stream,
    run_stream_with,
    run_turns,
)
from loopback import ForwardingProxy, TLSForwardingProxy, TLSSetup
from scripted import CONVERSATION_PATH, FINISH, FIRST, GOOD, GOOD_EVENTS, SECOND, basic_auth

from backendapi import (
    APIConnectionError,
    AsyncBackendApiClient,
    PreparedRequest,
    RawResponse,
    Timeout,
)
from backendapi._core import environment
from backendapi._transports.aiohttp import AiohttpTransport
from backendapi.testing import BackendApiTestServer, Reply, Wait

pytestmark = pytest.mark.usefixtures("clean_network_env")


@pytest.fixture
def https_proxy(tls: TLSSetup) -> Iterator[TLSForwardingProxy]:
    """The forwarding proxy behind TLS, with a certificate from the test CA."""
    with contextlib.closing(TLSForwardingProxy(tls.server_context)) as forwarding:
        yield forwarding


def proxied_stream(kind: str, server: BackendApiTestServer, **options: Any) -> Result:
    """Stream a reply that the server only finishes once the client has its first event.

    A proxy (or client) that buffers the answer never hands out that event, so the stream
    ends in a read timeout instead of succeeding.
    """
    release = threading.Event()
    server.reply(Reply([FIRST, Wait(release), SECOND, FINISH]))

    def on_event(event: RawResponse) -> None:
        release.set()

    try:
        result = run_stream(
            kind,
            server.url,
            client_options={"timeout": Timeout(connect=5, read=3), **options},
            on_event=on_event,
        )
    finally:
        release.set()
    return result


def test_a_proxy_argument_forwards_each_event_as_it_comes(
    client_kind: str, backendapi_server: BackendApiTestServer, proxy: ForwardingProxy
) -> None:
    result = proxied_stream(client_kind, backendapi_server, proxy=proxy.url)

    assert result.error is None
    assert result.events == GOOD_EVENTS
    (proxied,) = proxy.requests
    assert proxied.method == "POST"
    assert proxied.target == backendapi_server.url + CONVERSATION_PATH
    (received,) = backendapi_server.requests
    assert received.json["messages"] == MESSAGES


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"])
def test_a_proxy_from_the_environment_is_used(
    client_kind: str,
    variable: str,
    backendapi_server: BackendApiTestServer,
    proxy: ForwardingProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(variable, proxy.url)

    result = proxied_stream(client_kind, backendapi_server)

    assert result.error is None
    assert result.events == GOOD_EVENTS
    (proxied,) = proxy.requests
    assert proxied.target == backendapi_server.url + CONVERSATION_PATH
    assert len(backendapi_server.requests) == 1


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio has TLS in TLS from 3.11")
@pytest.mark.parametrize("given", ["environment", "argument"])
def test_an_https_proxy_tunnels_to_an_https_server(
    client_kind: str,
    tls: TLSSetup,
    https_proxy: TLSForwardingProxy,
    monkeypatch: pytest.MonkeyPatch,
    given: str,
) -> None:
    # requests used an https:// proxy from HTTPS_PROXY; the async client ignored it
    # (aiohttp's rule from before asyncio could run TLS inside TLS).
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls.ca_path))  # trusts proxy and server
    options: Dict[str, Any] = {}
    if given == "environment":
        monkeypatch.setenv("HTTPS_PROXY", https_proxy.url)
    else:
        options["proxy"] = https_proxy.url
    with BackendApiTestServer(ssl_context=tls.server_context) as server:
        server.reply(GOOD)
        result = run_stream_with(client_kind, server.url, **options)
        address = server.url.split("//")[1]

    assert result.error is None
    assert result.events == GOOD_EVENTS
    (proxied,) = https_proxy.requests
    assert (proxied.method, proxied.target) == ("CONNECT", address)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio has TLS in TLS from 3.11")
def test_an_https_proxy_with_an_untrusted_certificate_is_refused(
    client_kind: str,
    tls: TLSSetup,
    https_proxy: TLSForwardingProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # ssl= another CA's bundle trusts neither the proxy nor the server: both clients
    # check the proxy's certificate with it, and fail there, before any CONNECT.
    monkeypatch.setenv("HTTPS_PROXY", https_proxy.url)
    with BackendApiTestServer(ssl_context=tls.server_context) as server:
        result = run_stream_with(client_kind, server.url, ssl=str(tls.other_ca_path))

        assert type(result.error) is APIConnectionError, result.error
        assert https_proxy.requests == []
        assert server.requests == []


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio has TLS in TLS from 3.11")
@pytest.mark.parametrize("trusted", [True, False], ids=["trusted", "untrusted"])
def test_an_https_proxy_for_a_plain_http_server_is_verified(
    client_kind: str,
    tls: TLSSetup,
    https_proxy: TLSForwardingProxy,
    backendapi_server: BackendApiTestServer,
    monkeypatch: pytest.MonkeyPatch,
    trusted: bool,
) -> None:
    # requests left an https:// proxy's certificate unchecked when the server's URL
    # was http:// (a warning, and on it went); aiohttp checked it. Both check it now.
    monkeypatch.setenv("HTTP_PROXY", https_proxy.url)
    if trusted:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls.ca_path))
    backendapi_server.reply(GOOD)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        result = run_stream_with(client_kind, backendapi_server.url)

    assert insecure_warnings(seen) == []
    if trusted:
        assert result.error is None
        assert result.events == GOOD_EVENTS
        assert [request.method for request in https_proxy.requests] == ["POST"]
    else:
        assert type(result.error) is APIConnectionError, result.error
        assert "certificate verification failed" in str(result.error)
        assert https_proxy.requests == []
        assert backendapi_server.requests == []


def test_scheme_proxy_wins_over_all_proxy(
    client_kind: str,
    backendapi_server: BackendApiTestServer,
    proxy: ForwardingProxy,
    monkeypatch: pytest.MonkeyPatch,
    refused_url: str,
) -> None:
    monkeypatch.setenv("ALL_PROXY", refused_url)  # nothing listens there
    monkeypatch.setenv("HTTP_PROXY", proxy.url)

    result = proxied_stream(client_kind, backendapi_server)

    assert result.error is None
    assert result.events == GOOD_EVENTS
    assert len(proxy.requests) == 1


@pytest.mark.parametrize("proxy_variable", ["HTTP_PROXY", "ALL_PROXY"])
@pytest.mark.parametrize("variable", ["NO_PROXY", "no_proxy"])
def test_no_proxy_bypasses_the_proxy(
    client_kind: str,
    variable: str,
    proxy_variable: str,
    backendapi_server: BackendApiTestServer,
    proxy: ForwardingProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(proxy_variable, proxy.url)
    monkeypatch.setenv(variable, "127.0.0.1")

    result = proxied_stream(client_kind, backendapi_server)

    assert result.error is None
    assert result.events == GOOD_EVENTS
    assert proxy.requests == []
    assert len(backendapi_server.requests) == 1


@pytest.fixture
def netrc_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A .netrc with credentials for 127.0.0.1, named by $NETRC."""
    path = tmp_path / "netrc"
    path.write_text("machine 127.0.0.1 login netrc-user password netrc-pw\n")
    path.chmod(0o600)
    monkeypatch.setenv("NETRC", str(path))
    return path


def test_netrc_credentials_reach_the_server(
    client_kind: str, backendapi_server: BackendApiTestServer, netrc_file: Path
) -> None:
    backendapi_server.reply(GOOD)
    result = run_stream_with(client_kind, backendapi_server.url)

    assert result.error is None
    (received,) = backendapi_server.requests
    assert received.headers["Authorization"] == basic_auth("netrc-user", "netrc-pw")


def test_an_authorization_header_wins_over_netrc(
    client_kind: str, backendapi_server: BackendApiTestServer, netrc_file: Path
) -> None:
    backendapi_server.reply(GOOD)
    result = run_stream_with(
        client_kind, backendapi_server.url, headers={"authorization": "Bearer my-own-token"}
    )

    assert result.error is None
    (received,) = backendapi_server.requests
    assert received.headers.getall("Authorization") == ["Bearer my-own-token"]


def test_proxy_credentials_in_the_environment_reach_the_proxy_alone(
    client_kind: str,
    backendapi_server: BackendApiTestServer,
    proxy: ForwardingProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url.replace("http://", "http://p-user:p%40ss@"))

    result = proxied_stream(client_kind, backendapi_server)

    assert result.error is None
    (proxied,) = proxy.requests
    assert proxied.headers["Proxy-Authorization"] == basic_auth("p-user", "p@ss")
    (received,) = backendapi_server.requests
    assert "Proxy-Authorization" not in received.headers


def test_netrc_credentials_reach_a_proxy_from_the_environment(
    client_kind: str,
    backendapi_server: BackendApiTestServer,
    proxy: ForwardingProxy,
    netrc_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """aiohttp's rule, in both clients: a proxy from the environment given without
    credentials gets those of its host in .netrc (requests alone has no such rule)."""
    monkeypatch.setenv("HTTP_PROXY", proxy.url)

    result = proxied_stream(client_kind, backendapi_server)

    assert result.error is None
    (proxied,) = proxy.requests
    assert proxied.headers["Proxy-Authorization"] == basic_auth("netrc-user", "netrc-pw")


def test_a_change_to_the_environment_counts_for_the_next_request(
    client_kind: str,
    backendapi_server: BackendApiTestServer,
    proxy: ForwardingProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One client, three requests: direct, then through HTTP_PROXY, then direct again."""
    backendapi_server.default_reply = GOOD
    seen: List[int] = []

    def through_proxy_then_not() -> None:
        seen.append(len(proxy.requests))
        if len(seen) == 1:
            monkeypatch.setenv("HTTP_PROXY", proxy.url)
        else:
            monkeypatch.delenv("HTTP_PROXY", raising=False)

    turns = run_turns(
        client_kind,
        backendapi_server.url,
        [lambda: None, through_proxy_then_not, through_proxy_then_not],
    )
    through_proxy_then_not()

    assert [(turn.events, turn.error) for turn in turns] == [(GOOD_EVENTS, None)] * 3
    assert seen == [0, 1, 1]
    assert len(backendapi_server.requests) == 3


def test_concurrent_requests_share_one_reading_of_the_environment(
    backendapi_server: BackendApiTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A count, not a timing: the environment is read once for requests started together."""
    backendapi_server.default_reply = GOOD
    readings: List[int] = []

    class CountedReading(environment.Reading):
        def __init__(self, *args: Any) -> None:
            readings.append(1)
            super().__init__(*args)

    monkeypatch.setattr(environment, "Reading", CountedReading)

    async def one(client: AsyncBackendApiClient) -> int:
        return len([event async for event in client.create("m", MESSAGES)])

    async def main() -> List[int]:
        async with AsyncBackendApiClient(backendapi_server.url, timeout=TEST_TIMEOUT) as client:
            await one(client)  # the session exists from here on
            readings.clear()
            return await asyncio.gather(*(one(client) for _ in range(20)))

    assert asyncio.run(main()) == [len(GOOD_EVENTS)] * 20
    assert len(readings) == 1


def test_a_reading_of_the_environment_does_not_outlive_its_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A loop stopped before its reading expired must not hand it to the next loop."""
    transport = AiohttpTransport(None, ssl=True, proxy=None, max_connections=10)
    request = PreparedRequest("POST", "http://backend.test/backend-api/v2/conversation")

    async def options() -> Any:
        return transport._request_options(request)

    first = asyncio.new_event_loop()
    try:
        task = first.create_task(options())
        first.call_soon(first.stop)
        first.run_forever()  # one iteration: the reading is taken, its expiry never runs
        assert task.result() == {"headers": request.headers}
    finally:
        first.close()
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.test:3128")
    found = asyncio.run(options())
    assert found == {"headers": request.headers, "proxy": "http://proxy.test:3128"}
