"""A multi-turn chat over the client: :class:`AsyncChat`.

Generated into ``backendapi/_sync/chat.py`` as the client is (``make
unasync``); what a chat keeps and sends is decided in ``backendapi/_core/chat.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence, Union

from .._answer import Answer
from .._core.chat import BaseChat
from .._core.media import MediaInput

if TYPE_CHECKING:
    # Named in a string (the base class), which ruff does not see.
    from .client import AsyncBackendApiClient, AsyncStream  # noqa: F401

__all__ = ["AsyncChat"]


class AsyncChat(BaseChat["AsyncBackendApiClient"]):
    """A multi-turn chat over an :class:`AsyncBackendApiClient`.

    >>> chat = AsyncChat(client, "gpt-4o", provider="OpenaiChat", temperature=0.2)  # doctest: +SKIP
    >>> async for event in chat.send("Hello"):  # doctest: +SKIP
    ...     if event.type == "content":
    ...         print(event.content, end="")
    >>> answer = await chat.ask("And then?")  # doctest: +SKIP

    See :class:`~backendapi._core.chat.BaseChat` for the attributes;
    :meth:`save` and :meth:`load` keep a chat across runs. ``send`` is a
    plain call, like ``client.create``. A chat is not meant to be shared by
    threads.
    """

    @classmethod
    def _client_class(cls) -> type:
        # Imported here: `backendapi.AsyncChat` must not import the HTTP library.
        from .client import AsyncBackendApiClient

        return AsyncBackendApiClient

    def send(
        self,
        content: Union[str, Sequence[Mapping[str, Any]]],
        media: Optional[MediaInput] = None,
        *,
        api_key: Optional[str] = None,
        **kwargs: Any,
    ) -> AsyncStream:
        """Send a user message; return the client's :class:`AsyncStream` of the answer.

        The request carries the whole history plus the new user message, the
        chat's provider, its options (``kwargs`` override them for this turn
        only; ``model=`` and ``provider=`` too), and ``conversation``: the
        state stored under the provider's name, or all the state for no
        provider or ``"AnyProvider"``, or nothing when there is none (pass
        ``conversation=`` to override). ``media`` goes with this turn only and
        is not kept in the history.

        The history changes only when the stream completes without error: then
        the user message and ``{"role": "assistant", "content": answer.text}``
        are appended and the answer's ``conversation`` state is merged in. A
        turn that fails (HTTP error, ``error`` event, broken connection) or is
        closed before its end leaves the chat as it was, so it can be sent
        again.

        Sending again before an earlier turn's stream has ended is allowed:
        each request carries the history as it was when ``send`` was called,
        and turns enter the history in the order their streams complete.
        """
        turn = self._start_turn(content, api_key, kwargs)
        stream = self.client.create(turn.model, turn.messages, media, turn.api_key, **turn.options)
        self._watch(stream._core, turn)
        return stream

    async def ask(
        self,
        content: Union[str, Sequence[Mapping[str, Any]]],
        media: Optional[MediaInput] = None,
        *,
        api_key: Optional[str] = None,
        **kwargs: Any,
    ) -> Answer:
        """Send a user message and return the finished :class:`Answer` (see :meth:`send`)."""
        async with self.send(content, media, api_key=api_key, **kwargs) as stream:
            return await stream.collect()
