"""The seed's provider class, :class:`BackendApi`, on top of the two clients."""

from __future__ import annotations

from typing import Any, AsyncIterator, ClassVar, Dict, Iterator, Optional

from ._base import SSLOption
from ._errors import InvalidInputError, StreamError
from ._events import RawResponse
from ._media import MediaInput
from ._request import Messages
from ._sync_client import BackendApiClient

__all__ = ["BackendApi"]


class BackendApi:
    """gpt4free-style provider for a Backend API server, as the original design note has it.

    Subclass it and set ``url``; ``ssl`` and ``headers`` reach every request::

        class MyServer(BackendApi):
            url = "http://localhost:8080"

        async for response in MyServer.create_async_generator(model, messages):
            print(response)

    Like the seed, every event is yielded as a :class:`RawResponse`, the
    server's ``error`` and ``auth`` events included (as the stream's last
    event); HTTP and connection failures raise. Unlike the seed, the api key is
    never logged, and ``media`` is never modified.
    """

    url: ClassVar[str] = ""
    """The server's root URL; a subclass sets it."""
    ssl: ClassVar[SSLOption] = None
    """TLS verification: None/True, False, an ``ssl.SSLContext`` or a CA bundle path."""
    headers: ClassVar[Dict[str, str]] = {}
    """Extra HTTP headers for every request."""

    @classmethod
    async def create_async_generator(
        cls,
        model: str,
        messages: Messages,
        media: Optional[MediaInput] = None,
        api_key: Optional[str] = None,
        **kwargs: Any,
    ) -> AsyncIterator[RawResponse]:
        """Stream a conversation turn's events, asynchronously (the seed's contract)."""
        from ._async_client import AsyncBackendApiClient

        async with AsyncBackendApiClient(
            cls._base_url(), headers=cls.headers, ssl=cls.ssl
        ) as client:
            try:
                async for event in client.create(model, messages, media, api_key, **kwargs):
                    yield event
            except StreamError as exc:
                yield exc.event

    @classmethod
    def create_completion(
        cls,
        model: str,
        messages: Messages,
        media: Optional[MediaInput] = None,
        api_key: Optional[str] = None,
        **kwargs: Any,
    ) -> Iterator[RawResponse]:
        """The blocking twin of :meth:`create_async_generator`, on :class:`BackendApiClient`."""
        with BackendApiClient(cls._base_url(), headers=cls.headers, ssl=cls.ssl) as client:
            try:
                yield from client.create(model, messages, media, api_key, **kwargs)
            except StreamError as exc:
                yield exc.event

    @classmethod
    def _base_url(cls) -> str:
        if not cls.url:
            raise InvalidInputError(
                f"{cls.__name__}.url is not set: subclass BackendApi and set url = 'http://host:port'"
            )
        return cls.url
