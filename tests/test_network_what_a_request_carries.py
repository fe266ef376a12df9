"""What a request carries over real sockets, with both clients: the request line, the
credentials of `base_url`, cookies and the caller's headers.

Both clients must put the same bytes on the wire: a raw socket server (``raw_server``,
`loopback.RawServer`) records the request line as it came, a `BackendApiTestServer` the
headers. ``docs/reliability.md`` lists what each case gives the caller.
"""

from __future__ import annotations

import dataclasses
import logging

import pytest
from clients import TEST_TIMEOUT, call, client_class, run_stream, run_turns
from loopback import RawServer
from scripted import GOOD, GOOD_EVENTS, basic_auth

from backendapi import APIConnectionError, InvalidInputError
from backendapi.testing import BackendApiTestServer, Reply

pytestmark = pytest.mark.usefixtures("clean_network_env")


# The request target


def test_both_clients_send_a_query_string_byte_for_byte_alike(
    client_kind: str, raw_server: RawServer
) -> None:
    """The core's urlencode()d query goes out as it is: yarl would requote %2F, %27..."""
    raw_server.answer = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n"
        b"Connection: close\r\n\r\nok"
    )
    url = raw_server.url + "/pre%7Efix/a b"
    prompt = "a b+c&d=e/\u00e9~'*()!%7E%2F"
    answer = call(client_kind, url, "create_text", prompt, model="m/x", provider="P q")

    assert answer == "ok"
    assert raw_server.request_lines == [
        b"GET /pre~fix/a%20b/backend-api/v2/create?prompt=a+b%2Bc%26d%3De%2F%C3%A9~"
        b"%27%2A%28%29%21%257E%252F&model=m%2Fx&provider=P+q HTTP/1.1"
    ]


# Credentials in base_url


def with_credentials(url: str, userinfo: str) -> str:
    return url.replace("://", f"://{userinfo}@", 1)


def test_credentials_in_base_url_go_as_basic_auth_and_are_never_shown(
    client_kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Percent-encoded, as a URL carries them: the server gets "me@home" / "p:ss w0rd".
    caplog.set_level(logging.DEBUG, logger="backendapi")
    with BackendApiTestServer() as server:
        server.reply(GOOD)
        url = with_credentials(server.url, "me%40home:p%3Ass%20w0rd")
        client = client_class(client_kind)(url, timeout=TEST_TIMEOUT)
        shown = [repr(client), client.base_url]

        (turn,) = run_turns(client_kind, url, [lambda: None], client_options={"max_retries": 0})

        (request,) = server.requests
        assert request.headers["Authorization"] == basic_auth("me@home", "p:ss w0rd")
        assert client.base_url == server.url
        plain_url = server.url
    assert (turn.events, turn.error) == (GOOD_EVENTS, None)
    logged = [record.getMessage() for record in caplog.records]
    assert any(plain_url in line for line in logged)  # the URL is logged, without them
    for text in shown + logged:
        assert "w0rd" not in text and "me%40home" not in text, text


def test_credentials_in_base_url_are_not_in_errors(client_kind: str, refused_url: str) -> None:
    url = with_credentials(refused_url, "me:s3cret")
    (turn,) = run_turns(client_kind, url, [lambda: None], client_options={"max_retries": 0})
    error = turn.error

    assert type(error) is APIConnectionError, error
    assert refused_url in str(error)
    assert "s3cret" not in str(error) and "s3cret" not in str(error.url)


def test_credentials_in_base_url_and_an_authorization_header_are_refused_together(
    client_kind: str,
) -> None:
    # requests let the URL's credentials replace the header, aiohttp refused the two.
    with pytest.raises(InvalidInputError, match="credentials") as caught:
        client_class(client_kind)(
            "http://me:s3cret@127.0.0.1:8080", headers={"Authorization": "Bearer token"}
        )
    assert "s3cret" not in str(caught.value)


# Cookies


def with_cookie(reply: Reply) -> Reply:
    return dataclasses.replace(reply, headers={"Set-Cookie": "session=abc; Path=/"})


def noop() -> None:
    """A turn of `run_turns` with nothing to prepare."""


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_cookies_are_sent_back_by_both_clients(client_kind: str, host: str) -> None:
    # aiohttp's default cookie jar drops the cookies of a server reached by IP
    # address; requests keeps them, so the async client's jar keeps them too.
    with BackendApiTestServer() as server:
        server.reply(with_cookie(GOOD), GOOD)

        turns = run_turns(
            client_kind, server.url.replace("127.0.0.1", host), [noop, noop], use_with=True
        )

        assert [turn.error for turn in turns] == [None, None]

        assert [request.headers.get("Cookie") for request in server.requests] == [
            None,
            "session=abc",
        ]


def test_cookies_outlive_the_event_loop_of_the_async_client() -> None:
    # The async client makes a session per event loop (asyncio.run twice); its
    # cookies stay the client's, as a BackendApiClient's do.
    with BackendApiTestServer() as server:
        server.reply(with_cookie(GOOD), GOOD)

        turns = run_turns("async", server.url, [noop, noop], use_with=True, new_loop_each_turn=True)

        assert [turn.error for turn in turns] == [None, None]

        assert [request.headers.get("Cookie") for request in server.requests] == [
            None,
            "session=abc",
        ]
        assert server.connections_accepted == 2  # two loops: two sessions


# Headers


def test_legal_header_values_go_as_they_are(client_kind: str) -> None:
    # A tab, inner spaces, an empty value and every printable ASCII
    # character are legal; both clients send them byte for byte.
    headers = {
        "X-Tab": "a\tb",
        "X-Spaces": "a  b",
        "X-Empty": "",
        "X-Printable": "".join(map(chr, range(0x21, 0x7F))),
        "x-lower_case.name~": "1",
    }
    with BackendApiTestServer() as server:
        result = run_stream(client_kind, server.url, client_options={"headers": headers})
        (request,) = server.requests

    assert result.error is None
    for name, value in headers.items():
        assert request.headers[name] == value
