"""Fixtures shared by several test modules; helpers to import live in ``clients``,
``scripted``, ``loopback`` and ``leaks``.

``loopback`` is imported inside the fixtures: it imports ``backendapi.testing``, which
must be first imported as the plugin below, so that pytest rewrites its assertions.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from typing import TYPE_CHECKING, Callable, Iterator, List

import pytest
from clients import KINDS
from leaks import recorded_leaks
from processes import TEST_HOME

from backendapi import RetryPolicy

if TYPE_CHECKING:
    from loopback import ForwardingProxy, RawServer, SilentServer, TLSSetup

pytest_plugins = ["backendapi.testing"]

# Proxies, .netrc and CA bundles from the environment: requests and aiohttp both read these.
NETWORK_ENV = (
    "NETRC",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
)


@pytest.fixture(scope="session", autouse=True)
def backendapi_home() -> Iterator[str]:
    """``BACKENDAPI_HOME`` for the whole run: the command line, run in-process too, keeps
    its conversation database in a temporary directory, never the user's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BACKENDAPI_HOME", TEST_HOME)
        yield TEST_HOME


@pytest.fixture(params=KINDS)
def client_kind(request: pytest.FixtureRequest) -> str:
    """Run the test once with the blocking client ("sync") and once with the async one."""
    return str(request.param)


@pytest.fixture
def clean_network_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy, .netrc or CA bundle from the machine's environment: each test sets what it
    needs. A module uses it with ``pytestmark = pytest.mark.usefixtures("clean_network_env")``.
    """
    for name in NETWORK_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def no_leaks() -> Iterator[None]:
    """Fail the test if it leaves a socket, response, session or connector to the GC
    (see `leaks.recorded_leaks`)."""
    with recorded_leaks() as leaks:
        yield
    assert leaks == []


@pytest.fixture
def retry_logs(caplog: pytest.LogCaptureFixture) -> Callable[[], List[str]]:
    """Returns a function listing the INFO retry messages logged on ``backendapi`` so far."""
    caplog.set_level(logging.INFO, logger="backendapi")

    def messages() -> List[str]:
        return [
            record.getMessage()
            for record in caplog.records
            if record.name == "backendapi"
            and record.levelno == logging.INFO
            and record.getMessage().startswith("retrying ")
        ]

    return messages


@pytest.fixture
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every backoff delay becomes 10 ms, so retry tests take no time."""
    monkeypatch.setattr(RetryPolicy, "backoff", lambda self, attempt: 0.01)


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    """A listener that never accepts: no byte ever comes back (`loopback.SilentServer`)."""
    from loopback import SilentServer

    server = SilentServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def raw_server() -> Iterator[RawServer]:
    """A server answering every request with the bytes of its `answer` (`loopback.RawServer`)."""
    from loopback import RawServer

    with contextlib.closing(RawServer()) as server:
        yield server


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSSetup:
    """A test CA, its bundle, and server contexts with certificates it issued."""
    from loopback import TLSSetup

    return TLSSetup.create(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def proxy() -> Iterator[ForwardingProxy]:
    """A forwarding HTTP proxy on 127.0.0.1 (`loopback.ForwardingProxy`)."""
    from loopback import ForwardingProxy

    with contextlib.closing(ForwardingProxy()) as forwarding:
        yield forwarding


@pytest.fixture
def refused_url() -> str:
    """A loopback URL where nothing listens: the port was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
