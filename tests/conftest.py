from __future__ import annotations

import os
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


@pytest.fixture(params=["compiled", "python"])
def compiled_or_python(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test once with the streams' compiled batch steps and once with the Python ones.

    The compiled steps (``backendapi/_batches.c``) are used whenever they are
    built; the Python ones are what an install without a C compiler runs.
    """
    from backendapi import _async_client, _base, _events, _sync_client

    if request.param == "compiled":
        if os.environ.get("BACKENDAPI_NO_EXTENSIONS", "").strip() not in ("", "0"):
            pytest.skip("installed with BACKENDAPI_NO_EXTENSIONS: nothing compiled")
        # `make test` builds it (setup.py); a failed build only warns, so say so here.
        assert _events._wrap_events is not None, "backendapi._batches was not built"
    else:
        monkeypatch.setattr(_sync_client, "_wrap_events", None)
        monkeypatch.setattr(_async_client, "_wrap_events", None)
        monkeypatch.setattr(_base, "_content_pieces", _base._python_content_pieces)
    return str(request.param)
