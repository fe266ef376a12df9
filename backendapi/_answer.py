"""The finished answer gathered from a stream's events: :class:`Answer`."""

from __future__ import annotations

import copy
from typing import Any, Callable, Dict, Generic, List, Optional, TypeVar, overload

from ._core.tools import ToolCallGatherer
from ._events import RawResponse

__all__ = ["Answer"]

# Content pieces are joined into one string every CONTENT_CHUNK of them, so a long
# answer of small tokens is held as a few thousand strings, not millions.
CONTENT_CHUNK = 1024


T = TypeVar("T")


class _Field(Generic[T]):
    """A public field of :class:`Answer`, read after the answer caught up with its stream."""

    def __init__(self, doc: str) -> None:
        self.__doc__ = doc
        self._slot = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self._slot = "_" + name

    @overload
    def __get__(self, answer: None, owner: Optional[type] = None) -> _Field[T]: ...

    @overload
    def __get__(self, answer: Answer, owner: Optional[type] = None) -> T: ...

    def __get__(self, answer: Optional[Answer], owner: Optional[type] = None) -> Any:
        if answer is None:
            return self
        if answer._catch_up is not None:
            answer._catch_up()
        return getattr(answer, self._slot)

    def __set__(self, answer: Answer, value: T) -> None:
        setattr(answer, self._slot, value)


class Answer:
    """What a turn produced, gathered event by event.

    Every stream keeps one up to date as it is iterated (``stream.answer``),
    so it can be read while the answer is still arriving or after the loop::

        stream = client.create(model, messages)
        for event in stream:
            ...
        print(stream.answer.text, stream.answer.usage)

    ``client.complete(...)`` returns one without any loop at all.

    It holds exactly the events the stream has handed out so far. (A stream
    gathers them in batches, when the answer is read or a network read is
    used up, rather than one by one: a ``content`` piece is taken as it
    arrived, other events as they are when gathered.)
    """

    __slots__ = (
        "_base_url",
        "_catch_up",
        "_chunks",
        "_content",
        "_conversation",
        "_events",
        "_finish_reason",
        "_media",
        "_model",
        "_provider",
        "_reasoning",
        "_suggestions",
        "_text",
        "_text_events",
        "_title",
        "_tool_calls",
        "_usage",
    )

    def __init__(self) -> None:
        # Set by the stream while events it handed out may still be uncounted.
        self._catch_up: Optional[Callable[[], None]] = None
        self._chunks: List[str] = []  # joined runs of CONTENT_CHUNK content pieces
        self._content: List[str] = []  # the pieces since the last join
        self._reasoning: List[str] = []
        self._text: Optional[str] = None
        # _text is valid while _events is what it was when _text was joined:
        # every event counts, so a new content piece always invalidates it.
        self._text_events = 0
        self._provider: Optional[Dict[str, Any]] = None
        self._model: Optional[str] = None
        self._usage: Optional[Dict[str, Any]] = None
        self._finish_reason: Optional[str] = None
        self._title: Optional[str] = None
        self._suggestions: List[str] = []
        self._conversation: Dict[str, Any] = {}
        self._media: List[str] = []
        self._tool_calls: Optional[ToolCallGatherer] = None  # made by the first tool_calls event
        self._events = 0
        # The server's root, which the stream sets: media URLs are relative to it.
        self._base_url: Optional[str] = None

    provider: _Field[Optional[Dict[str, Any]]] = _Field(
        "The ``provider`` event's payload: ``{name, label, url, model}``."
    )
    model: _Field[Optional[str]] = _Field(
        "The model that answered (from the usage or provider event)."
    )
    usage: _Field[Optional[Dict[str, Any]]] = _Field(
        "Token counts: ``{prompt_tokens, completion_tokens, total_tokens, ...}``."
    )
    finish_reason: _Field[Optional[str]] = _Field(
        'Why the answer ended (``"stop"``, ``"length"``...), if the server said.'
    )
    title: _Field[Optional[str]] = _Field("A title the server generated for the chat.")
    suggestions: _Field[List[str]] = _Field("Follow-up suggestions.")
    conversation: _Field[Dict[str, Any]] = _Field(
        "Provider state to send back next turn, merged: ``{ProviderName: state}``."
    )
    events: _Field[int] = _Field("How many events were gathered.")

    @property
    def text(self) -> str:
        """The answer's text: every ``content`` event joined."""
        if self._catch_up is not None:
            self._catch_up()
        if self._text is None or self._text_events != self._events:
            self._text_events = self._events
            if self._chunks:
                self._chunks.append("".join(self._content))
                self._content = []
                self._text = "".join(self._chunks)
                self._chunks = [self._text]
            else:
                self._text = "".join(self._content)
        return self._text

    @property
    def reasoning(self) -> str:
        """The reasoning (thinking) tokens joined."""
        if self._catch_up is not None:
            self._catch_up()
        return "".join(self._reasoning)

    @property
    def media(self) -> List[str]:
        """URLs of the media (images, audio, video) the answer carried, absolute.

        g4f sends them relative to its root (``/media/...``, ``/images/...``,
        ``/thumbnail/...``, ``/files/<bucket>/media/<name>``); they are given
        here against the client's ``base_url`` (a path prefix of it kept), so
        they can be opened or passed to ``client.download()`` as they are.
        Absolute URLs and ``data:`` URIs are unchanged.
        """
        if self._catch_up is not None:
            self._catch_up()
        base = self._base_url
        if base is None:
            return list(self._media)
        from ._core.files import resolve_url

        return [resolve_url(base, url) for url in self._media]

    @property
    def tool_calls(self) -> List[Dict[str, Any]]:
        """The functions the model asked to call (from ``tool_calls`` events), in order.

        Each is ``{"id", "type": "function", "function": {"name", "arguments"}}``,
        ``arguments`` being JSON text; calls the server sent in pieces (OpenAI
        stream deltas, with an ``index``) are put back together. A copy: changing
        it changes nothing in the answer.
        """
        if self._catch_up is not None:
            self._catch_up()
        return [] if self._tool_calls is None else copy.deepcopy(self._tool_calls.calls)

    @property
    def provider_name(self) -> Optional[str]:
        """The answering provider's name, if the server said."""
        name = (self.provider or {}).get("name")
        return name if isinstance(name, str) else None

    def add(self, event: RawResponse) -> None:
        """Take one event into account; events of unknown types only count."""
        self._events += 1
        data = event.__dict__
        kind = data.get("type")
        if kind == "content":
            content = data.get("content")
            if isinstance(content, str):
                parts = self._content
                parts.append(content)
                if len(parts) >= CONTENT_CHUNK:
                    self._join_content()
            urls = data.get("urls")
            if urls is not None:
                self._add_urls(urls)
        elif kind == "reasoning":
            token = event.get("token")
            if isinstance(token, str):
                self._reasoning.append(token)
        elif kind == "provider":
            provider = event.get("provider")
            if isinstance(provider, dict):
                self._provider = provider
                if self._model is None and isinstance(provider.get("model"), str):
                    self._model = provider["model"]
        elif kind == "usage":
            usage = event.get("usage")
            if isinstance(usage, dict):
                self._usage = usage
            if isinstance(event.get("model"), str) and event.get("model"):
                self._model = event["model"]
        elif kind == "finish":
            finish = event.get("finish")
            reason = finish.get("reason") if isinstance(finish, dict) else finish
            if isinstance(reason, str):
                self._finish_reason = reason
        elif kind == "title":
            if isinstance(event.get("title"), str):
                self._title = event["title"]
        elif kind == "suggestions":
            suggestions = event.get("suggestions")
            if isinstance(suggestions, list):
                self._suggestions = [str(item) for item in suggestions]
        elif kind == "conversation":
            state = event.get("conversation")
            if isinstance(state, dict):
                self._conversation.update(state)
        elif kind == "tool_calls":
            if self._tool_calls is None:
                self._tool_calls = ToolCallGatherer()
            self._tool_calls.add(event.get("tool_calls"))

    def _add_contents(self, contents: List[Any]) -> None:
        """Take a run of plain ``content`` events (no ``urls``) into account.

        Raises TypeError, having changed nothing, if a content is no string.
        """
        text = "".join(contents)
        self._events += len(contents)
        parts = self._content
        parts.append(text)
        if len(parts) >= CONTENT_CHUNK:
            self._join_content()

    def _join_content(self) -> None:
        self._chunks.append("".join(self._content))
        self._content = []

    def _add_urls(self, urls: Any) -> None:
        if isinstance(urls, str):
            urls = [urls]
        if isinstance(urls, list):
            self._media.extend(url for url in urls if isinstance(url, str))

    def __repr__(self) -> str:
        text = self.text
        shown = text if len(text) <= 60 else text[:60] + "..."
        return (
            f"Answer(text={shown!r}, model={self.model!r}, provider={self.provider_name!r}, "
            f"finish_reason={self.finish_reason!r}, events={self.events})"
        )

    def __str__(self) -> str:
        return self.text
