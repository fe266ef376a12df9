"""Streaming Python client for Backend API servers (gpt4free's ``/backend-api/v2``).

>>> from backendapi import BackendApiClient
>>> with BackendApiClient("http://localhost:8080") as client:  # doctest: +SKIP
...     for event in client.create("gpt-4o", [{"role": "user", "content": "Hello"}]):
...         if event.type == "content":
...             print(event.content, end="")

``AsyncBackendApiClient`` is the asyncio twin; it is imported on first use,
so a blocking script never pays for importing aiohttp. ``Chat``,
``AsyncChat``, ``BackendApi`` and ``ConversationStore`` are imported on first use too.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._answer import Answer
from ._core.decoder import DEFAULT_MAX_EVENT_SIZE, MAX_EVENT_DEPTH, EventDecoder, decode
from ._core.files import bucket_message
from ._core.options import DEFAULT_MAX_RESPONSE_SIZES, DEFAULT_TIMEOUT, Timeout
from ._core.request import PreparedRequest
from ._core.retry import RETRY_STATUSES, RetryPolicy
from ._core.routes import Speech
from ._core.tools import function_definition
from ._errors import (
    AnswerParseError,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BackendApiError,
    DecodeError,
    EventTooLargeError,
    IncompleteStreamError,
    InvalidInputError,
    ResponseTooLargeError,
    StreamError,
    ToolCallError,
    ToolRoundsExceededError,
)
from ._events import RawResponse
from ._sync.client import BackendApiClient, Stream
from ._version import __version__

if TYPE_CHECKING:
    from ._async.chat import AsyncChat
    from ._async.client import AsyncBackendApiClient, AsyncStream
    from ._provider import BackendApi
    from ._store import ConversationStore, StoreError
    from ._sync.chat import Chat

__all__ = [
    "DEFAULT_MAX_EVENT_SIZE",
    "DEFAULT_MAX_RESPONSE_SIZES",
    "DEFAULT_TIMEOUT",
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "Answer",
    "AnswerParseError",
    "AsyncBackendApiClient",
    "AsyncChat",
    "AsyncStream",
    "AuthenticationError",
    "BackendApi",
    "BackendApiClient",
    "BackendApiError",
    "Chat",
    "ConversationStore",
    "DecodeError",
    "EventDecoder",
    "EventTooLargeError",
    "IncompleteStreamError",
    "InvalidInputError",
    "MAX_EVENT_DEPTH",
    "PreparedRequest",
    "RETRY_STATUSES",
    "RawResponse",
    "ResponseTooLargeError",
    "RetryPolicy",
    "Speech",
    "Stream",
    "StoreError",
    "StreamError",
    "Timeout",
    "ToolCallError",
    "ToolRoundsExceededError",
    "__version__",
    "bucket_message",
    "function_definition",
    "decode",
]


_LAZY = {
    "AsyncBackendApiClient": "_async.client",
    "AsyncStream": "_async.client",
    "AsyncChat": "_async.chat",
    "Chat": "_sync.chat",
    "BackendApi": "_provider",
    "ConversationStore": "_store",
    "StoreError": "_store",
}


def __getattr__(name: str) -> Any:
    # PEP 562: import the aiohttp-based client (and what few scripts use) only
    # when it is asked for; `import backendapi` stays close to `import requests`.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'backendapi' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
