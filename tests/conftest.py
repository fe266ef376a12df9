from __future__ import annotations

import socket

import pytest
from clients import KINDS

pytest_plugins = ["backendapi.testing"]


@pytest.fixture(params=KINDS)
def client_kind(request: pytest.FixtureRequest) -> str:
    """Run the test once with the blocking client ("sync") and once with the async one."""
    return str(request.param)


@pytest.fixture
def refused_url() -> str:
    """A loopback URL where nothing listens: the port was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
