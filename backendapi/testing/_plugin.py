"""The pytest plugin: the ``backendapi_server`` fixture.

Importing this module needs pytest; ``backendapi.testing`` imports it only when pytest is there.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ._server import BackendApiTestServer


@pytest.fixture
def backendapi_server() -> Iterator[BackendApiTestServer]:
    """A started `BackendApiTestServer`, stopped after the test.

    Enable it with ``pytest_plugins = ["backendapi.testing"]`` in a ``conftest.py``.
    """
    with BackendApiTestServer() as server:
        yield server
