"""What the tests script the test server with, and how they wait on what it saw.

One home for the events most tests stream (`FIRST`, `SECOND`, `FINISH`, the
`GOOD` reply), the bytes of an event as g4f frames it, and the bounded waits on
what a `BackendApiTestServer` reports. Imported as a top-level module, like
``clients``.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Dict

from backendapi.testing import BackendApiTestServer, Reply

WAIT = 5.0
"""Seconds to wait for something a server reports; only reached when a test fails."""

CONVERSATION_PATH = "/backend-api/v2/conversation"

FIRST = {"type": "content", "content": "Hello"}
SECOND = {"type": "content", "content": " world"}
FINISH = {"type": "finish", "finish": {"reason": "stop"}}
GOOD_EVENTS = [FIRST, SECOND, FINISH]
GOOD = Reply(GOOD_EVENTS)
"""A whole, successful answer: `GOOD_EVENTS`."""


def sse(event: Dict[str, Any]) -> bytes:
    """One event in SSE framing, as g4f 8.x sends it."""
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked HTTP body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def disconnected(server: BackendApiTestServer, index: int = 0) -> bool:
    """Wait until the server saw the client drop request `index`; False after `WAIT` s."""
    return server.requests[index].disconnected.wait(WAIT)


def basic_auth(user: str, password: str) -> str:
    """The value of an ``Authorization`` (or ``Proxy-Authorization``) header for Basic auth."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
