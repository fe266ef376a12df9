"""A multi-turn chat over the client: :class:`AsyncChat`.

Generated into ``backendapi/_sync/chat.py`` as the client is (``make
unasync``); what a chat keeps and sends is decided in ``backendapi/_core/chat.py``.
"""

from __future__ import annotations

import functools
import inspect
import logging
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence, Type, TypeVar, Union

from .._answer import Answer
from .._core.chat import DEFAULT_MAX_TOOL_ROUNDS, BaseChat, _Turn
from .._core.media import MediaInput
from .._errors import InvalidInputError
from .._store import ConversationStore, StoreError

if TYPE_CHECKING:
    from .client import AsyncBackendApiClient, AsyncStream

__all__ = ["AsyncChat"]

logger = logging.getLogger("backendapi")

_ThisChat = TypeVar("_ThisChat", bound="AsyncChat")


class AsyncChat(BaseChat["AsyncBackendApiClient"]):
    """A multi-turn chat over an :class:`AsyncBackendApiClient`.

    >>> chat = AsyncChat(client, "gpt-4o", provider="OpenaiChat", temperature=0.2)  # doctest: +SKIP
    >>> async for event in chat.send("Hello"):  # doctest: +SKIP
    ...     if event.type == "content":
    ...         print(event.content, end="")
    >>> answer = await chat.ask("And then?")  # doctest: +SKIP
    >>> answer = await chat.continue_()  # doctest: +SKIP
    >>> answer = await chat.regenerate()  # doctest: +SKIP

    See :class:`~backendapi._core.chat.BaseChat` for the attributes;
    :meth:`save` and :meth:`load` keep a chat across runs. ``send`` is a
    plain call, like ``client.create``. A chat is not meant to be shared by
    threads.

    Tools: ``ask(..., tools=[f, g])`` (or ``AsyncChat(..., tools=[...])``)
    offers Python functions to the model. When its answer asks for some of
    them, the chat calls them with the arguments the model gave, adds the
    assistant message that asked (with its ``tool_calls``) and one ``{"role":
    "tool", "tool_call_id", "content"}`` message per result to the history,
    and sends the history again, until an answer asks for no tool; ``ask``
    returns that last answer. Tools given as definition dicts are offered
    too, but the chat cannot run them: an answer that asks for one ends the
    loop (answer it with :meth:`add_tool_result`, then :meth:`run_tools`).
    Coroutine functions are tools only for the chat of the async client, which
    awaits them; the blocking client's chat refuses them.

    Stored: ``AsyncChat(client, model, store=ConversationStore())`` records
    every turn, completed, failed or interrupted, in a SQLite database (see
    :meth:`attach`); ``await AsyncChat.resume(store, client)`` goes on with
    the last conversation there, or the one named. The database is read
    and written through the client's transport (``run_blocking``), so the
    async chat does it in a worker thread, off the event loop.
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
        only; ``model=``, ``provider=`` and ``tools=`` too), and ``conversation``: the
        state stored under the provider's name, or all the state for no
        provider or ``"AnyProvider"``, or nothing when there is none (pass
        ``conversation=`` to override). ``media`` goes with this turn only and
        is not kept in the history.

        The history changes only when the stream completes without error: then
        the user message and ``{"role": "assistant", "content": answer.text}``
        (with the answer's ``tool_calls``, if it asked for tools) are appended
        and the answer's ``conversation`` state is merged in. A turn that
        fails (HTTP error, ``error`` event, broken connection) or is closed
        before its end leaves the chat as it was, so it can be sent again.
        ``send`` runs no tools: after an answer that asked for some,
        :meth:`run_tools` does.

        Sending again before an earlier turn's stream has ended is allowed:
        each request carries the history as it was when ``send`` was called,
        and turns enter the history in the order their streams complete.
        (``action="continue"`` or ``"variant"`` is refused here: they are
        :meth:`continue_` and :meth:`regenerate`.)
        """
        return self._open(self._start_turn(content, api_key, kwargs), media)

    async def ask(
        self,
        content: Union[str, Sequence[Mapping[str, Any]]],
        media: Optional[MediaInput] = None,
        *,
        api_key: Optional[str] = None,
        max_tool_rounds: int = DEFAULT_MAX_TOOL_ROUNDS,
        **kwargs: Any,
    ) -> Answer:
        """Send a user message and return the finished :class:`Answer` (see :meth:`send`).

        When the answer asks for tools the chat has Python functions for, it
        runs the tool loop (see the class) for at most ``max_tool_rounds``
        rounds of results, and returns the answer that asks for no more; past
        that bound it raises :class:`ToolRoundsExceededError`, the history
        holding every round so far. An exception a tool raises propagates as
        it is, the history ending with the assistant message that asked.
        """
        self._check_rounds(max_tool_rounds)
        turn = self._start_turn(content, api_key, kwargs)
        return await self._complete(turn, media, api_key, max_tool_rounds, kwargs)

    def send_continue(self, *, api_key: Optional[str] = None, **kwargs: Any) -> AsyncStream:
        """Ask the model to go on with its last answer; return the :class:`AsyncStream`.

        As g4f's web client does: the request carries the history as it is,
        ending with the last assistant message, and ``action: "continue"``
        (the server then offers the provider its ``continue_tool``). Once the
        stream completes, its text is appended to that assistant message;
        nothing is added to the history. Raises :class:`InvalidInputError`
        when the history does not end with an assistant message.
        """
        return self._open(self._start_continue(api_key, kwargs), None)

    async def continue_(
        self,
        *,
        api_key: Optional[str] = None,
        max_tool_rounds: int = DEFAULT_MAX_TOOL_ROUNDS,
        **kwargs: Any,
    ) -> Answer:
        """Continue the last answer (see :meth:`send_continue`); return what was added.

        The returned :class:`Answer` holds only the continuation; the whole
        text is the last assistant message's ``content`` in :attr:`messages`.
        Tool calls in it are run as :meth:`ask` runs them.
        """
        self._check_rounds(max_tool_rounds)
        turn = self._start_continue(api_key, kwargs)
        return await self._complete(turn, None, api_key, max_tool_rounds, kwargs)

    def send_regenerate(
        self,
        media: Optional[MediaInput] = None,
        *,
        api_key: Optional[str] = None,
        **kwargs: Any,
    ) -> AsyncStream:
        """Ask for another answer to the last user message; return the :class:`AsyncStream`.

        As g4f's web client does: the request carries the history up to that
        user message and ``action: "variant"``. Once the stream completes, its
        answer replaces whatever followed the user message (the last answer,
        and any tool rounds), which is kept in :attr:`variants`. Raises
        :class:`InvalidInputError` when the history holds no user message.
        The chat keeps no media: if the question came with some, pass it
        again as ``media``.
        """
        return self._open(self._start_regenerate(api_key, kwargs), media)

    async def regenerate(
        self,
        media: Optional[MediaInput] = None,
        *,
        api_key: Optional[str] = None,
        max_tool_rounds: int = DEFAULT_MAX_TOOL_ROUNDS,
        **kwargs: Any,
    ) -> Answer:
        """Answer the last user message again (see :meth:`send_regenerate`); return the answer.

        Tool calls in it are run as :meth:`ask` runs them.
        """
        self._check_rounds(max_tool_rounds)
        turn = self._start_regenerate(api_key, kwargs)
        return await self._complete(turn, media, api_key, max_tool_rounds, kwargs)

    async def run_tools(
        self,
        *,
        api_key: Optional[str] = None,
        max_tool_rounds: int = DEFAULT_MAX_TOOL_ROUNDS,
        **kwargs: Any,
    ) -> Answer:
        """Answer the tool calls the history ends with, send the results, and go on.

        For after :meth:`send` (which runs no tools), after
        :class:`ToolRoundsExceededError`, after a tool raised, or after
        :meth:`add_tool_result`: the calls of the last assistant message that
        have no result yet are run with the chat's ``tools`` (or ``tools=``),
        their results sent, and the loop goes on as in :meth:`ask`. Raises
        :class:`InvalidInputError`, before any request, when there is no call
        to answer or one names a tool without a Python function.
        """
        self._check_rounds(max_tool_rounds)
        specs = self._new_turn(api_key, kwargs).tools
        runnable = self._check_tool_round(specs)
        await self._call_tools(runnable)
        turn = self._start_tool_round(api_key, kwargs)
        return await self._complete(turn, None, api_key, max_tool_rounds, kwargs, rounds=1)

    @classmethod
    async def resume(
        cls: Type[_ThisChat],
        store: ConversationStore,
        client: AsyncBackendApiClient,
        conversation_id: Optional[str] = None,
        *,
        api_key: Optional[str] = None,
        tools: Optional[Sequence[Any]] = None,
    ) -> _ThisChat:
        """The chat of a stored conversation (the latest for None), recording into ``store``.

        It holds the conversation's state after its latest exchange: history,
        provider state, model, provider and options. ``api_key`` and ``tools``
        are never stored: give them again here. Raises
        :class:`InvalidInputError` when ``store`` holds no such conversation.
        """
        if not isinstance(store, ConversationStore):
            raise InvalidInputError(
                f"store must be a ConversationStore, not {type(store).__name__}"
            )
        transport = client._transport
        if conversation_id is None:
            conversation_id = await transport.run_blocking(store.last_conversation_id)
            if conversation_id is None:
                raise InvalidInputError(f"there is no conversation to continue in {store.path}")
        found = await transport.run_blocking(functools.partial(store.conversation, conversation_id))
        if found is None:
            raise InvalidInputError(f"there is no conversation {conversation_id!r} in {store.path}")
        state = found["state"]
        if state is None:
            chat = cls(client, found["model"] or "", provider=found["provider"], api_key=api_key)
        else:
            chat = cls.from_dict(state, client, api_key=api_key, tools=tools)
        chat.attach(store, conversation_id)
        return chat

    async def flush(self) -> None:
        """Write the records of ended turns that are not in :attr:`store` yet.

        ``ask``, ``continue_``, ``regenerate`` and ``run_tools`` call it after
        each stream; after iterating a stream of :meth:`send` yourself, call
        it. Raises :class:`StoreError` when the database stays locked past
        its timeout: the records not written are kept for the next call.
        """
        store = self.store
        while store is not None and self._unstored:
            record = self._unstored.pop(0)
            try:
                await self.client._transport.run_blocking(functools.partial(store.add, record))
            except BaseException:
                self._unstored.insert(0, record)
                raise

    async def _flush_quietly(self) -> None:
        """:meth:`flush` while a turn's own error propagates: a store error is only logged."""
        try:
            await self.flush()
        except StoreError as exc:
            logger.warning("%s (kept for the next flush)", exc)

    def _open(self, turn: _Turn, media: Optional[MediaInput]) -> AsyncStream:
        stream = self.client.create(turn.model, turn.messages, media, turn.api_key, **turn.options)
        self._watch(stream._core, turn)
        return stream

    async def _complete(
        self,
        turn: _Turn,
        media: Optional[MediaInput],
        api_key: Optional[str],
        max_tool_rounds: int,
        kwargs: Mapping[str, Any],
        rounds: int = 0,
    ) -> Answer:
        """Send ``turn``, then rounds of tool results while the answer asks for our tools."""
        while True:
            try:
                async with self._open(turn, media) as stream:
                    answer = await stream.collect()
            except BaseException:
                await self._flush_quietly()
                raise
            await self.flush()
            runnable = self._runnable_calls(turn.tools) if answer.tool_calls else None
            if runnable is None:
                return answer
            if rounds >= max_tool_rounds:
                raise self._rounds_exceeded(rounds)
            await self._call_tools(runnable)
            rounds += 1
            media = None
            turn = self._start_tool_round(api_key, kwargs)

    async def _call_tools(self, runnable: Sequence[Any]) -> None:
        """Run the calls; add their results to the history once every one has one."""
        results = []
        for call, function in runnable:
            result = function(**self._tool_arguments(call, function))
            if self._awaits() and inspect.isawaitable(result):
                result = await result
            results.append(self._tool_result(call, result))
        self.messages.extend(results)
