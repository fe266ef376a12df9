"""The finished answer gathered from a stream's events: :class:`Answer`."""

from __future__ import annotations

import copy
from typing import Any, Callable, Dict, Generic, List, Optional, Type, TypeVar, cast, overload

from ._core.tools import ToolCallGatherer
from ._events import RawResponse
from ._structured import parse_json, parse_model

__all__ = ["Answer"]

# Content pieces are joined into one string once CONTENT_CHUNK of them, and as many as
# there are joined strings already, are waiting: a stream of a few hundred tokens holds a
# few dozen strings, not one (~55 bytes) per token, and a long answer of n small tokens
# about sqrt(2n) of them (1,400 for a million), each piece copied once.
CONTENT_CHUNK = 16

DEBUG_EVENT_TYPES = frozenset({"request", "response", "headers"})
"""Event types that show a provider's own HTTP traffic (and may carry its secrets): an
:class:`Answer` keeps them only when told to (``keep_debug_events``)."""


T = TypeVar("T")
M = TypeVar("M")


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

    Every event type g4f 8.8.6 sends has its place (README, "Events"); an
    event of a type it does not know is kept whole in :attr:`other`. The
    ``request``, ``response`` and ``headers`` events (a provider's own HTTP
    traffic, which may carry its keys or cookies) are kept, in
    :attr:`debug_events`, only when ``keep_debug_events`` is true (the
    clients' ``keep_debug_events=`` option). What the answer keeps of the
    server's own words (``parameters``, ``warnings``, ``logs``,
    :attr:`debug_events`, :attr:`other`) has the api key replaced by ``***``
    as the SDK's errors do; the model's text and the ``conversation`` state
    are kept as they came.

    Args:
        keep_debug_events: keep ``request``, ``response`` and ``headers``
            events in :attr:`debug_events` instead of dropping them.
    """

    __slots__ = (
        "_audio",
        "_base_url",
        "_catch_up",
        "_chunks",
        "_content",
        "_continuation",
        "_conversation",
        "_debug_events",
        "_events",
        "_finish_reason",
        "_keep_debug_events",
        "_logs",
        "_media",
        "_model",
        "_other",
        "_parameters",
        "_preview_urls",
        "_previews",
        "_provider",
        "_reasoning",
        "_reasoning_label",
        "_reasoning_status",
        "_redact",
        "_suggestions",
        "_synthesize",
        "_text",
        "_text_events",
        "_title",
        "_tool_calls",
        "_usage",
        "_variant",
        "_warnings",
    )

    def __init__(self, *, keep_debug_events: bool = False) -> None:
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
        self._parameters: Dict[str, Any] = {}
        self._previews: List[str] = []
        self._preview_urls: List[str] = []
        self._audio: List[str] = []
        self._synthesize: Optional[Dict[str, Any]] = None
        self._warnings: List[Dict[str, Any]] = []
        self._logs: List[str] = []
        self._reasoning_status: Optional[str] = None
        self._reasoning_label: Optional[str] = None
        self._continuation: Optional[Dict[str, Any]] = None
        self._variant: Optional[str] = None
        self._other: List[RawResponse] = []
        self._debug_events: List[RawResponse] = []
        self._keep_debug_events = bool(keep_debug_events)
        # Set by the stream: a copy of a JSON value with the api key replaced.
        self._redact: Optional[Callable[[Any], Any]] = None

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
    parameters: _Field[Dict[str, Any]] = _Field(
        "The ``parameters`` events merged (later keys win): the options the provider took."
    )
    previews: _Field[List[str]] = _Field(
        "The ``preview`` events' text (a login link, an image in progress...), in order."
    )
    synthesize: _Field[Optional[Dict[str, Any]]] = _Field(
        "The last ``synthesize`` event's payload, ``{provider, data}``: how to have the "
        "server read the answer aloud (``synthesize/<provider>``)."
    )
    warnings: _Field[List[Dict[str, Any]]] = _Field(
        "The non-fatal provider errors (``message`` events), each ``{message, error}``."
    )
    logs: _Field[List[str]] = _Field("The server's ``log`` lines, in order.")
    reasoning_status: _Field[Optional[str]] = _Field(
        'The last reasoning ``status`` (``"Thinking"``, ``"Done"``...), if any.'
    )
    reasoning_label: _Field[Optional[str]] = _Field(
        "The last reasoning ``label`` (the step a reasoning model is on), if any."
    )
    continuation: _Field[Optional[Dict[str, Any]]] = _Field(
        "The last ``continue`` event, whole: the provider can go on with this answer."
    )
    variant: _Field[Optional[str]] = _Field(
        "The last ``variant`` event's text: another rendering of the answer."
    )
    other: _Field[List[RawResponse]] = _Field(
        "Events of types this class does not know (and ``tool_calls``), kept whole, in order."
    )
    debug_events: _Field[List[RawResponse]] = _Field(
        "The ``request``, ``response`` and ``headers`` events, when kept (``keep_debug_events``)."
    )

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
        return self._absolute(self._media)

    @property
    def preview_urls(self) -> List[str]:
        """URLs of the images ``preview`` events showed, absolute as :attr:`media`'s are."""
        return self._absolute(self._preview_urls)

    @property
    def audio(self) -> List[str]:
        """Audio the answer carried: the ``data`` of its content events (a ``data:`` URI, or a
        ``/media/...`` path given absolute as :attr:`media`'s are)."""
        return self._absolute(self._audio)

    def _absolute(self, urls: List[str]) -> List[str]:
        """``urls`` (caught up with the stream) against the client's ``base_url``, when known."""
        if self._catch_up is not None:
            self._catch_up()
        base = self._base_url
        if base is None:
            return list(urls)
        from ._core.files import resolve_url

        return [resolve_url(base, url) for url in urls]

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
        """Take one event into account (see the class's docstring for where each goes)."""
        self._events += 1
        data = event.__dict__
        kind = data.get("type")
        if kind == "content":
            content = data.get("content")
            if isinstance(content, str):
                parts = self._content
                parts.append(content)
                if len(parts) >= CONTENT_CHUNK and len(parts) >= len(self._chunks):
                    self._join_content()
                if len(data) == 2:
                    return
            # A generated image or video: its urls; audio: its data.
            urls = data.get("urls")
            if urls is not None:
                self._add_urls(urls)
            audio = data.get("data")
            if audio.__class__ is str and audio:
                self._audio.append(audio)
            return
        if kind == "reasoning":  # a reasoning model streams its thinking token by token too
            token = data.get("token")
            if token.__class__ is str:
                self._reasoning.append(token)
            if len(data) > 2:
                self._add_reasoning_state(data)
            return
        gather = _GATHER.get(kind) if kind.__class__ is str else None
        if gather is not None:
            gather(self, event)
        elif kind.__class__ is str and kind in DEBUG_EVENT_TYPES:
            if self._keep_debug_events:
                self._debug_events.append(self._redacted_event(event))
        else:
            self._other.append(self._redacted_event(event))

    def _add_reasoning_state(self, data: Dict[str, Any]) -> None:
        status = data.get("status")
        if isinstance(status, str):
            self._reasoning_status = status
        label = data.get("label")
        if isinstance(label, str):
            self._reasoning_label = label

    def _add_provider(self, event: RawResponse) -> None:
        provider = event.get("provider")
        if isinstance(provider, dict):
            self._provider = provider
            if self._model is None and isinstance(provider.get("model"), str):
                self._model = provider["model"]

    def _add_usage(self, event: RawResponse) -> None:
        usage = event.get("usage")
        if isinstance(usage, dict):
            self._usage = usage
        if isinstance(event.get("model"), str) and event.get("model"):
            self._model = event["model"]

    def _add_finish(self, event: RawResponse) -> None:
        finish = event.get("finish")
        reason = finish.get("reason") if isinstance(finish, dict) else finish
        if isinstance(reason, str):
            self._finish_reason = reason

    def _add_title(self, event: RawResponse) -> None:
        if isinstance(event.get("title"), str):
            self._title = event["title"]

    def _add_suggestions(self, event: RawResponse) -> None:
        suggestions = event.get("suggestions")
        if isinstance(suggestions, list):
            self._suggestions = [str(item) for item in suggestions]

    def _add_conversation(self, event: RawResponse) -> None:
        state = event.get("conversation")
        if isinstance(state, dict):
            self._conversation.update(state)

    def _add_parameters(self, event: RawResponse) -> None:
        parameters = event.get("parameters")
        if isinstance(parameters, dict):
            self._parameters.update(self._redacted(parameters))

    def _add_preview(self, event: RawResponse) -> None:
        preview = event.get("preview")
        if isinstance(preview, str):
            self._previews.append(preview)
        urls = event.get("urls")
        if isinstance(urls, str):
            urls = [urls]
        if isinstance(urls, list):
            self._preview_urls.extend(url for url in urls if isinstance(url, str))

    def _add_synthesize(self, event: RawResponse) -> None:
        synthesize = event.get("synthesize")
        if isinstance(synthesize, dict):
            self._synthesize = synthesize

    def _add_message(self, event: RawResponse) -> None:
        warning = {key: event.get(key) for key in ("message", "error")}
        self._warnings.append(self._redacted(warning))

    def _add_log(self, event: RawResponse) -> None:
        line = event.get("log")
        if line is not None:
            self._logs.append(self._redacted(line if isinstance(line, str) else str(line)))

    def _add_continue(self, event: RawResponse) -> None:
        self._continuation = self._redacted(event.get_dict())

    def _add_variant(self, event: RawResponse) -> None:
        variant = event.get("variant")
        if isinstance(variant, str):
            self._variant = variant

    def _redacted(self, value: T) -> T:
        redact = self._redact
        return value if redact is None else cast(T, redact(value))

    def _redacted_event(self, event: RawResponse) -> RawResponse:
        if self._redact is None:
            return event
        return RawResponse(self._redact(event.get_dict()))

    def _add_tool_calls(self, event: RawResponse) -> None:
        if self._tool_calls is None:
            self._tool_calls = ToolCallGatherer()
        self._tool_calls.add(event.get("tool_calls"))

    def _add_contents(self, contents: List[Any]) -> None:
        """Take a run of plain ``content`` events (no ``urls``) into account.

        Raises TypeError, having changed nothing, if a content is no string.
        """
        self._add_text("".join(contents), len(contents))

    def _add_text(self, text: str, events: int) -> None:
        """Take ``events`` plain ``content`` events whose texts make ``text`` into account."""
        self._events += events
        parts = self._content
        parts.append(text)
        if len(parts) >= CONTENT_CHUNK and len(parts) >= len(self._chunks):
            self._join_content()

    def _join_content(self) -> None:
        self._chunks.append("".join(self._content))
        self._content = []

    def _add_urls(self, urls: Any) -> None:
        if isinstance(urls, str):
            urls = [urls]
        if isinstance(urls, list):
            self._media.extend(url for url in urls if isinstance(url, str))

    def json(self) -> Any:
        """The answer's text parsed as JSON (for ``response_format`` answers and the like).

        The whole text is parsed; if it is no JSON but holds a fenced code block
        (```` ```json ... ``` ````, as models often wrap JSON), the first block
        labelled ``json``, else the first unlabelled one, is. Raises
        :class:`AnswerParseError` (a :class:`ValueError`) naming the line and
        column of the text where parsing failed, with an excerpt.

        >>> answer = Answer()
        >>> answer.add(RawResponse(type="content", content='```json\\n{"a": 1}\\n```'))
        >>> answer.json()
        {'a': 1}
        """
        return parse_json(self.text)

    def parse(self, model: Type[M]) -> M:
        """The answer's JSON (see :meth:`json`) as an instance of ``model``.

        ``model`` is a pydantic model class (v2's ``model_validate``, else v1's
        ``parse_obj``; any class with one of them will do) or a dataclass,
        whose nested dataclass fields (also in lists, tuples, dicts and
        ``Optional``) are built from nested objects; keys that are no field
        are ignored, as pydantic does by default; other values are taken as
        JSON gives them, unchecked. Raises :class:`AnswerParseError` when the
        text is no JSON or does not fit ``model``, naming where;
        :class:`InvalidInputError` when ``model`` is none of those.
        """
        return parse_model(self.text, model)

    def __repr__(self) -> str:
        text = self.text
        shown = text if len(text) <= 60 else text[:60] + "..."
        return (
            f"Answer(text={shown!r}, model={self.model!r}, provider={self.provider_name!r}, "
            f"finish_reason={self.finish_reason!r}, events={self.events})"
        )

    def __str__(self) -> str:
        return self.text


# The handlers of every event type but content and reasoning (which add() takes itself).
_GATHER: Dict[str, Callable[[Answer, RawResponse], None]] = {
    "provider": Answer._add_provider,
    "usage": Answer._add_usage,
    "finish": Answer._add_finish,
    "title": Answer._add_title,
    "suggestions": Answer._add_suggestions,
    "conversation": Answer._add_conversation,
    "parameters": Answer._add_parameters,
    "preview": Answer._add_preview,
    "synthesize": Answer._add_synthesize,
    "message": Answer._add_message,
    "log": Answer._add_log,
    "continue": Answer._add_continue,
    "tool_calls": Answer._add_tool_calls,
    "variant": Answer._add_variant,
}
