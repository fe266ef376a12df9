"""The seed's provider class, :class:`BackendApi`, on top of the two clients."""

from __future__ import annotations

from typing import Any, AsyncIterator, ClassVar, Dict, Iterator, Optional

from ._core.media import MediaInput
from ._core.options import SSLOption
from ._core.request import Messages
from ._errors import InvalidInputError, StreamError
from ._events import RawResponse
from ._sync.client import BackendApiClient

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
        from ._async.client import AsyncBackendApiClient

        async with AsyncBackendApiClient(**cls._client_options()) as client:
            stream = client.create(model, messages, media, api_key, **kwargs)
            try:
                async for event in stream:
                    yield event
            except StreamError as exc:
                yield exc.event

    @classmethod
    def create_completion(
        cls, model: str, messages: Messages, *args: Any, **kwargs: Any
    ) -> Iterator[RawResponse]:
        """The blocking twin of :meth:`create_async_generator`, with the same arguments.

        ``args`` and ``kwargs`` are ``media``, ``api_key`` and the options, as there.
        """
        with BackendApiClient(**cls._client_options()) as client:
            try:
                yield from client.create(model, messages, *args, **kwargs)
            except StreamError as exc:
                yield exc.event

    @classmethod
    def _client_options(cls) -> Dict[str, Any]:
        return {"base_url": cls._base_url(), "headers": cls.headers, "ssl": cls.ssl}

    @classmethod
    def _base_url(cls) -> str:
        if not cls.url:
            raise InvalidInputError(
                f"{cls.__name__}.url is not set: subclass BackendApi and set url = 'http://host:port'"
            )
        return cls.url
