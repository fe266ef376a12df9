"""Bad arguments of the constructors and of `create()`, with both clients: an
`InvalidInputError` naming the argument, before any connection, and nothing else (no
error from the finaliser of a half-built client). ``docs/reliability.md`` lists them.
"""

from __future__ import annotations

import gc
import sys
from typing import Any, Callable, Dict, List, Tuple

import pytest
from clients import MESSAGES, client_class
from loopback import SilentServer

from backendapi import InvalidInputError, Timeout

pytestmark = pytest.mark.usefixtures("clean_network_env")


BAD_CONSTRUCTOR_ARGUMENTS: List[Tuple[str, Callable[[], Dict[str, Any]], str]] = [
    ("max_retries=-1", lambda: {"max_retries": -1}, "max_retries"),
    ("max_retries=str", lambda: {"max_retries": "2"}, "max_retries"),
    ("max_retries=2.0", lambda: {"max_retries": 2.0}, "max_retries"),
    ("timeout=-1", lambda: {"timeout": -1}, "timeout"),
    ("timeout=0", lambda: {"timeout": 0}, "timeout"),
    ("timeout=str", lambda: {"timeout": "5"}, "timeout"),
    ("Timeout(read=0)", lambda: {"timeout": Timeout(read=0)}, "read"),
    ("Timeout(connect=-1)", lambda: {"timeout": Timeout(connect=-1)}, "connect"),
    ("Timeout(total=0)", lambda: {"timeout": Timeout(total=0)}, "total"),
    ("Timeout(read=str)", lambda: {"timeout": Timeout(read="5")}, "read"),
    ("proxy=123", lambda: {"proxy": 123}, "proxy"),
    ("proxy=not-a-url", lambda: {"proxy": "not a url"}, "proxy"),
    ("max_connections=0", lambda: {"max_connections": 0}, "max_connections"),
    ("max_connections=str", lambda: {"max_connections": "10"}, "max_connections"),
    ("ssl=123", lambda: {"ssl": 123}, "ssl"),
    ("ssl=missing-file", lambda: {"ssl": "/no/such/ca-bundle.pem"}, "ssl"),
    ("max_event_size=0", lambda: {"max_event_size": 0}, "max_event_size"),
    ("api_key=123", lambda: {"api_key": 123}, "api_key"),
]


def construct(kind: str, options: Callable[[], Dict[str, Any]]) -> Tuple[Any, List[str]]:
    """Build the `kind` client with ``options()``; return (what it raised, unraisable errors).

    The half-built client is released (and any ``__del__`` run) before returning, with the
    interpreter's unraisable-exception hook recording what such a finaliser raised.
    """
    unraisable: List[str] = []
    previous = sys.unraisablehook

    def hook(info: Any) -> None:
        unraisable.append(f"{type(info.exc_value).__name__}: {info.exc_value} in {info.object}")

    sys.unraisablehook = hook
    try:
        try:
            client = client_class(kind)("http://127.0.0.1:9", **options())
        except Exception as exc:
            raised: Any = exc
            exc.__traceback__ = None  # drops the frames holding the half-built client
        else:
            raised = None
            if kind == "sync":
                client.close()
            del client
        gc.collect()
    finally:
        sys.unraisablehook = previous
    return raised, unraisable


@pytest.mark.parametrize(
    ("options", "name"),
    [pytest.param(options, name, id=label) for label, options, name in BAD_CONSTRUCTOR_ARGUMENTS],
)
def test_a_bad_constructor_argument_is_named_by_an_invalid_input_error(
    client_kind: str, options: Callable[[], Dict[str, Any]], name: str
) -> None:
    raised, _ = construct(client_kind, options)

    assert isinstance(raised, InvalidInputError), raised
    assert isinstance(raised, (ValueError, TypeError))
    assert name in str(raised), str(raised)


def test_a_failed_constructor_is_silent(client_kind: str) -> None:
    raised, unraisable = construct(client_kind, lambda: {"max_retries": -1})

    assert isinstance(raised, InvalidInputError)
    assert unraisable == []


BAD_CREATE_ARGUMENTS: List[Tuple[str, Dict[str, Any], str]] = [
    ("model=123", {"model": 123, "messages": MESSAGES}, "model"),
    ("messages=str", {"model": "m", "messages": "Hello"}, "messages"),
    ("messages=[]", {"model": "m", "messages": []}, "messages"),
    ("api_key=123", {"model": "m", "messages": MESSAGES, "api_key": 123}, "api_key"),
    ("media=123", {"model": "m", "messages": MESSAGES, "media": 123}, "media"),
]


@pytest.mark.parametrize(
    ("arguments", "name"),
    [pytest.param(arguments, name, id=label) for label, arguments, name in BAD_CREATE_ARGUMENTS],
)
def test_a_bad_create_argument_is_refused_before_any_connection(
    client_kind: str, arguments: Dict[str, Any], name: str, silent_server: SilentServer
) -> None:
    client = client_class(client_kind)(silent_server.url)
    try:
        with pytest.raises(InvalidInputError) as caught:
            client.create(**arguments)
    finally:
        if client_kind == "sync":
            client.close()
    assert name in str(caught.value), str(caught.value)
    assert silent_server.connections() == 0  # raised before any network call
