"""Timeouts over real sockets: connect, read (silence) and total, with both clients.

`Timeout(connect, read, total)`: `connect` bounds opening the connection, `read` the longest
silence between two received bytes, `total` the whole call. Faults come from a
`BackendApiTestServer` (`Hold`, `Pause`), a listener that never answers (``silent_server``)
and one whose full accept queue makes ``connect()`` hang (``blackhole_url``). Every test
runs once per client; ``docs/reliability.md`` lists what each fault gives the caller.
"""

from __future__ import annotations

import contextlib
import socket
import time
from typing import Any, Callable, Iterator, List

import pytest
from clients import run_stream_with
from loopback import SilentServer
from scripted import CONVERSATION_PATH, FIRST, GOOD, GOOD_EVENTS, SECOND, WAIT

from backendapi import APIConnectionError, APITimeoutError, Timeout
from backendapi.testing import BackendApiTestServer, Hold, Pause, Reply

pytestmark = pytest.mark.usefixtures("clean_network_env")


@pytest.fixture
def blackhole_url() -> Iterator[str]:
    """A URL where ``connect()`` hangs: a listener whose accept queue is full.

    With ``listen(0)`` Linux queues one connection; once it is queued, the kernel drops
    further SYNs, so a connect keeps waiting for an answer to its retransmitted SYN. The
    queue is filled until a probe connect times out; a system that never drops the SYN
    (one that answers with RST or SYN cookies instead) gets the test skipped.
    """
    with contextlib.ExitStack() as stack:
        listener = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        address = listener.getsockname()
        for _ in range(64):
            probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            probe.settimeout(0.2)
            try:
                probe.connect(address)
            except socket.timeout:
                probe.close()
                break
            except OSError as exc:
                probe.close()
                pytest.skip(f"a connect to a full accept queue fails at once here: {exc}")
            stack.callback(probe.close)
        else:
            pytest.skip("connect() to a listen(0) socket never hangs here: cannot test it")
        yield f"http://127.0.0.1:{address[1]}"


def test_read_timeout_fires_when_the_server_never_answers(
    client_kind: str, silent_server: SilentServer, retry_logs: Callable[[], List[str]]
) -> None:
    result = run_stream_with(client_kind, silent_server.url, timeout=Timeout(connect=5, read=0.5))
    elapsed = result.elapsed()

    assert isinstance(result.error, APITimeoutError), result.error
    assert isinstance(result.error, APIConnectionError)
    message = str(result.error)
    assert "read timeout" in message
    assert silent_server.url + CONVERSATION_PATH in message
    assert result.error.url == silent_server.url + CONVERSATION_PATH
    assert 0.4 <= elapsed <= 3.0
    # A read timeout is not retried: the server may be working on the request.
    assert silent_server.connections() == 1
    assert retry_logs() == []


def test_read_timeout_fires_when_silence_follows_the_headers(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    backendapi_server.reply(Reply([Hold()]))

    result = run_stream_with(
        client_kind, backendapi_server.url, timeout=Timeout(connect=5, read=0.5)
    )
    elapsed = result.elapsed()

    assert isinstance(result.error, APITimeoutError), result.error
    assert "read timeout" in str(result.error)
    assert backendapi_server.url + CONVERSATION_PATH in str(result.error)
    assert 0.4 <= elapsed <= 3.0
    assert len(backendapi_server.requests) == 1
    assert backendapi_server.requests[0].disconnected.wait(WAIT)


def test_read_timeout_fires_when_silence_follows_the_first_event(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    backendapi_server.reply(Reply([FIRST, Hold(), SECOND]))

    result = run_stream_with(
        client_kind, backendapi_server.url, timeout=Timeout(connect=5, read=0.5)
    )
    silence = time.monotonic() - result.received[0].at

    assert result.events == [FIRST]
    assert isinstance(result.error, APITimeoutError), result.error
    assert "read timeout" in str(result.error)
    assert backendapi_server.url + CONVERSATION_PATH in str(result.error)
    assert 0.4 <= silence <= 3.0
    assert len(backendapi_server.requests) == 1
    assert backendapi_server.requests[0].disconnected.wait(WAIT)


def test_read_timeout_bounds_silence_not_duration(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    # 1.2 s in all, but never more than 0.3 s without a byte: within a 0.6 s read timeout.
    items: List[Any] = []
    for index in range(4):
        items += [Pause(0.3), {"type": "content", "content": str(index)}]
    backendapi_server.reply(Reply(items))

    result = run_stream_with(
        client_kind, backendapi_server.url, timeout=Timeout(connect=5, read=0.6)
    )
    elapsed = result.elapsed()

    assert result.error is None
    assert [event["content"] for event in result.events] == ["0", "1", "2", "3"]
    assert elapsed >= 1.2


def test_connect_timeout_fires_when_connect_hangs(
    client_kind: str, blackhole_url: str, retry_logs: Callable[[], List[str]]
) -> None:
    result = run_stream_with(
        client_kind, blackhole_url, timeout=Timeout(connect=0.5, read=5), max_retries=0
    )
    elapsed = result.elapsed()

    assert isinstance(result.error, APITimeoutError), result.error
    message = str(result.error)
    assert "connect timeout" in message
    assert "read timeout" not in message
    assert blackhole_url + CONVERSATION_PATH in message
    assert 0.4 <= elapsed <= 3.0
    assert retry_logs() == []


def test_connect_timeout_is_retried(
    client_kind: str, blackhole_url: str, fast_backoff: None, retry_logs: Callable[[], List[str]]
) -> None:
    result = run_stream_with(
        client_kind, blackhole_url, timeout=Timeout(connect=0.3, read=5), max_retries=1
    )

    assert isinstance(result.error, APITimeoutError), result.error
    assert "connect timeout" in str(result.error)
    assert len(retry_logs()) == 1


def test_connect_timeout_is_named_even_when_the_url_contains_read(
    client_kind: str, blackhole_url: str
) -> None:
    # A base URL with a path prefix is allowed; "reader" in it must not change which
    # timeout the message names.
    url = blackhole_url + "/reader"

    result = run_stream_with(client_kind, url, timeout=Timeout(connect=0.3, read=5), max_retries=0)

    assert isinstance(result.error, APITimeoutError), result.error
    message = str(result.error)
    assert "connect timeout" in message, message
    assert "read timeout" not in message, message


def test_total_timeout_ends_a_stream_that_keeps_going(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    # Each event within the 5 s read timeout, 4 s in all: over the 1 s total.
    items: List[Any] = []
    for index in range(20):
        items += [{"type": "content", "content": str(index)}, Pause(0.2)]
    backendapi_server.reply(Reply(items))

    result = run_stream_with(
        client_kind, backendapi_server.url, timeout=Timeout(connect=5, read=5, total=1)
    )
    elapsed = result.elapsed()

    assert isinstance(result.error, APITimeoutError), result.error
    message = str(result.error)
    assert "total" in message
    assert backendapi_server.url + CONVERSATION_PATH in message
    assert 2 <= len(result.events) < 20
    assert 0.8 <= elapsed <= 3.0


def test_total_timeout_ends_the_wait_for_an_answer(
    client_kind: str, silent_server: SilentServer
) -> None:
    result = run_stream_with(
        client_kind, silent_server.url, timeout=Timeout(connect=5, read=5, total=0.5)
    )
    elapsed = result.elapsed()

    assert isinstance(result.error, APITimeoutError), result.error
    assert "total" in str(result.error)
    assert silent_server.url + CONVERSATION_PATH in str(result.error)
    assert 0.4 <= elapsed <= 3.0


def test_timeout_none_disables_every_timeout(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    backendapi_server.reply(GOOD)

    result = run_stream_with(client_kind, backendapi_server.url, timeout=None)

    assert result.client.timeout == Timeout(connect=None, read=None, total=None)
    assert result.error is None
    assert result.events == GOOD_EVENTS
