"""Retries and redirects over real sockets, with both clients.

A request is retried (`max_retries`, default 2; jittered exponential backoff from 0.5 s, at
most 8 s; a `Retry-After` of up to 60 s replaces the backoff, a longer one makes the error
be raised at once) only while no byte of the answer's body was read: when connecting fails
or times out, when the connection is reset before the status line, and on HTTP 408, 409,
429, 500, 502, 503, 504. Each retry is logged at INFO (``retry_logs``). Redirects are never
followed, since the request body carries the api key. Backoff delays are made tiny where a
test is not about them (``fast_backoff``); ``docs/reliability.md`` lists what each fault
gives the caller.
"""

from __future__ import annotations

import email.utils
import re
import time
from typing import Any, Callable, Iterator, List

import pytest
from clients import client_class, run_stream_with
from scripted import CONVERSATION_PATH, FIRST, GOOD, GOOD_EVENTS, SECOND

from backendapi import APIConnectionError, APIStatusError, IncompleteStreamError
from backendapi.testing import BackendApiTestServer, Cut, Reply

pytestmark = pytest.mark.usefixtures("clean_network_env")

SECRET = "sk-reliability-secret-key"


@pytest.fixture
def second_server() -> Iterator[BackendApiTestServer]:
    """Another test server, on another loopback address: 127.0.0.2."""
    with BackendApiTestServer(host="127.0.0.2") as server:
        yield server


def error_reply(status: int, message: str = "try later", **headers: str) -> Reply:
    """An HTTP error with g4f's body and extra headers, e.g. ``Retry-After``."""
    return Reply(status=status, error={"error": {"message": message}}, headers=headers)


# Retries


def test_backoff_is_exponential_with_jitter(client_kind: str) -> None:
    client = client_class(client_kind)("http://127.0.0.1:9")
    policy = client.retry
    assert policy.max_retries == 2  # the default
    for attempt in range(6):
        ceiling = min(policy.backoff_max, policy.backoff_base * 2**attempt)
        delays = [policy.backoff(attempt) for _ in range(200)]
        assert all(0.5 * ceiling <= delay <= ceiling for delay in delays), attempt
        assert max(delays) - min(delays) > 0.1 * ceiling  # jittered, not a constant
    assert policy.backoff(10) <= policy.backoff_max


def test_backoff_delay_is_waited(
    client_kind: str, backendapi_server: BackendApiTestServer, retry_logs: Callable[[], List[str]]
) -> None:
    backendapi_server.reply(error_reply(503), GOOD)

    result = run_stream_with(client_kind, backendapi_server.url)
    elapsed = result.elapsed()

    assert result.error is None
    (log,) = retry_logs()
    match = re.search(r" in (\d+\.\d+) s ", log)
    assert match is not None, log
    delay = float(match.group(1))
    assert 0.25 <= delay <= 0.5  # backoff_base 0.5 s, jitter factor 0.5 to 1
    assert elapsed >= delay - 0.01


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
def test_a_retryable_status_is_retried_then_the_answer_arrives(
    client_kind: str,
    status: int,
    backendapi_server: BackendApiTestServer,
    fast_backoff: None,
    retry_logs: Callable[[], List[str]],
) -> None:
    backendapi_server.reply(error_reply(status), GOOD)

    result = run_stream_with(client_kind, backendapi_server.url)

    assert result.error is None
    assert result.events == GOOD_EVENTS
    assert len(backendapi_server.requests) == 2
    (log,) = retry_logs()
    assert f"HTTP {status}" in log


def test_two_503s_are_retried_then_the_answer_arrives(
    client_kind: str,
    backendapi_server: BackendApiTestServer,
    fast_backoff: None,
    retry_logs: Callable[[], List[str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    backendapi_server.reply(error_reply(503, "overloaded"), error_reply(503, "overloaded"), GOOD)

    result = run_stream_with(client_kind, backendapi_server.url, api_key=SECRET)

    assert result.error is None
    assert result.events == GOOD_EVENTS
    assert len(backendapi_server.requests) == 3
    logs = retry_logs()
    assert len(logs) == 2
    assert "(retry 1)" in logs[0] and "(retry 2)" in logs[1]
    assert all(backendapi_server.url + CONVERSATION_PATH in log for log in logs)
    assert SECRET not in caplog.text


def test_the_last_503_is_raised_once_the_retries_are_exhausted(
    client_kind: str,
    backendapi_server: BackendApiTestServer,
    fast_backoff: None,
    retry_logs: Callable[[], List[str]],
) -> None:
    backendapi_server.reply(*[error_reply(503, "overloaded")] * 3, GOOD)

    result = run_stream_with(client_kind, backendapi_server.url)

    assert isinstance(result.error, APIStatusError), result.error
    assert result.error.status_code == 503
    assert "overloaded" in str(result.error)
    assert len(backendapi_server.requests) == 3
    assert len(retry_logs()) == 2


def test_max_retries_zero_raises_the_first_503(
    client_kind: str, backendapi_server: BackendApiTestServer, retry_logs: Callable[[], List[str]]
) -> None:
    backendapi_server.reply(error_reply(503, "overloaded"), GOOD)

    result = run_stream_with(client_kind, backendapi_server.url, max_retries=0)

    assert isinstance(result.error, APIStatusError), result.error
    assert result.error.status_code == 503
    assert len(backendapi_server.requests) == 1
    assert retry_logs() == []


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_a_client_error_is_not_retried(
    client_kind: str,
    status: int,
    backendapi_server: BackendApiTestServer,
    retry_logs: Callable[[], List[str]],
) -> None:
    backendapi_server.reply(error_reply(status, "you asked wrong"), GOOD)

    result = run_stream_with(client_kind, backendapi_server.url)

    assert isinstance(result.error, APIStatusError), result.error
    assert result.error.status_code == status
    assert "you asked wrong" in str(result.error)
    assert len(backendapi_server.requests) == 1
    assert retry_logs() == []


@pytest.mark.parametrize(
    "retry_after",
    ["0", email.utils.formatdate(time.time() - 3600, usegmt=True)],
    ids=["seconds", "http-date-in-the-past"],
)
def test_a_retry_after_of_now_is_honoured(
    client_kind: str,
    retry_after: str,
    backendapi_server: BackendApiTestServer,
    retry_logs: Callable[[], List[str]],
) -> None:
    # Without Retry-After the first retry waits 0.25 to 0.5 s (see the backoff test).
    backendapi_server.reply(error_reply(503, **{"Retry-After": retry_after}), GOOD)

    result = run_stream_with(client_kind, backendapi_server.url)
    elapsed = result.elapsed()

    assert result.error is None
    assert len(backendapi_server.requests) == 2
    (log,) = retry_logs()
    assert " in 0.00 s " in log, log
    assert elapsed < 2.0


def test_a_retry_after_in_seconds_is_waited(
    client_kind: str, backendapi_server: BackendApiTestServer, retry_logs: Callable[[], List[str]]
) -> None:
    backendapi_server.reply(error_reply(429, **{"Retry-After": "0.6"}), GOOD)

    result = run_stream_with(client_kind, backendapi_server.url)
    elapsed = result.elapsed()

    assert result.error is None
    (log,) = retry_logs()
    assert " in 0.60 s " in log, log
    assert elapsed >= 0.6


@pytest.mark.parametrize(
    "retry_after",
    ["3600", lambda: email.utils.formatdate(time.time() + 3600, usegmt=True)],
    ids=["seconds", "http-date"],
)
def test_a_retry_after_beyond_the_cap_raises_at_once(
    client_kind: str,
    retry_after: Any,
    backendapi_server: BackendApiTestServer,
    retry_logs: Callable[[], List[str]],
) -> None:
    value = retry_after() if callable(retry_after) else retry_after
    backendapi_server.reply(error_reply(429, "slow down", **{"Retry-After": value}), GOOD)

    result = run_stream_with(client_kind, backendapi_server.url)
    elapsed = result.elapsed()

    assert isinstance(result.error, APIStatusError), result.error
    assert result.error.status_code == 429
    assert "slow down" in str(result.error)
    assert len(backendapi_server.requests) == 1
    assert retry_logs() == []
    assert elapsed < 2.0


def test_a_cut_after_the_first_event_is_not_retried(
    client_kind: str,
    backendapi_server: BackendApiTestServer,
    fast_backoff: None,
    retry_logs: Callable[[], List[str]],
) -> None:
    # A retry would get the good reply queued behind and hide the cut: there must be none.
    backendapi_server.reply(Reply([FIRST, Cut(), SECOND]), GOOD)

    result = run_stream_with(client_kind, backendapi_server.url)

    assert result.events == [FIRST]
    assert isinstance(result.error, IncompleteStreamError), result.error
    assert backendapi_server.url + CONVERSATION_PATH in str(result.error)
    assert len(backendapi_server.requests) == 1
    assert retry_logs() == []


def test_a_cut_after_the_headers_is_not_retried(
    client_kind: str,
    backendapi_server: BackendApiTestServer,
    fast_backoff: None,
    retry_logs: Callable[[], List[str]],
) -> None:
    backendapi_server.reply(Reply([Cut(), FIRST]), GOOD)

    result = run_stream_with(client_kind, backendapi_server.url)

    assert result.events == []
    assert isinstance(result.error, IncompleteStreamError), result.error
    assert len(backendapi_server.requests) == 1
    assert retry_logs() == []


def test_a_reset_before_any_byte_of_the_answer_is_retried(
    client_kind: str,
    backendapi_server: BackendApiTestServer,
    fast_backoff: None,
    retry_logs: Callable[[], List[str]],
) -> None:
    backendapi_server.reply(Reply(reset=True), GOOD)

    result = run_stream_with(client_kind, backendapi_server.url)

    assert result.error is None
    assert result.events == GOOD_EVENTS
    assert len(backendapi_server.requests) == 2
    assert len(retry_logs()) == 1


def test_a_reset_on_every_attempt_is_raised_once_the_retries_are_exhausted(
    client_kind: str,
    backendapi_server: BackendApiTestServer,
    fast_backoff: None,
    retry_logs: Callable[[], List[str]],
) -> None:
    backendapi_server.reply(*[Reply(reset=True)] * 3, GOOD)

    result = run_stream_with(client_kind, backendapi_server.url)

    assert type(result.error) is APIConnectionError, result.error
    assert backendapi_server.url + CONVERSATION_PATH in str(result.error)
    assert len(backendapi_server.requests) == 3
    assert len(retry_logs()) == 2


@pytest.mark.parametrize("max_retries", [0, 3])
def test_a_refused_connection_is_retried_then_raised(
    client_kind: str,
    max_retries: int,
    refused_url: str,
    fast_backoff: None,
    retry_logs: Callable[[], List[str]],
) -> None:
    result = run_stream_with(client_kind, refused_url, max_retries=max_retries)

    assert type(result.error) is APIConnectionError, result.error
    assert refused_url + CONVERSATION_PATH in str(result.error)
    assert len(retry_logs()) == max_retries


# Redirects


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_not_followed(
    client_kind: str,
    status: int,
    backendapi_server: BackendApiTestServer,
    second_server: BackendApiTestServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    location = second_server.url + CONVERSATION_PATH
    backendapi_server.reply(Reply(status=status, headers={"Location": location}))

    result = run_stream_with(client_kind, backendapi_server.url, api_key=SECRET)

    assert isinstance(result.error, APIStatusError), result.error
    assert result.error.status_code == status
    message = str(result.error)
    assert "redirect" in message
    assert location in message
    assert SECRET not in message and SECRET not in caplog.text
    assert len(backendapi_server.requests) == 1
    assert backendapi_server.requests[0].json["api_key"] == SECRET
    # Not a request, not even a connection: the key never went to 127.0.0.2.
    assert second_server.requests == []
    assert second_server.connections_accepted == 0
