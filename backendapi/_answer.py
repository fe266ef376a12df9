"""The finished answer gathered from a stream's events: :class:`Answer`."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from ._events import RawResponse

__all__ = ["Answer"]

# Content pieces are joined into one string every CONTENT_CHUNK of them, so a long
# answer of small tokens is held as a few thousand strings, not millions.
CONTENT_CHUNK = 1024


class Answer:
    """What a turn produced, gathered event by event.

    Every stream keeps one up to date as it is iterated (``stream.answer``),
    so it can be read while the answer is still arriving or after the loop::

        stream = client.create(model, messages)
        for event in stream:
            ...
        print(stream.answer.text, stream.answer.usage)

    ``client.complete(...)`` returns one without any loop at all.
    """

    __slots__ = (
        "_chunks",
        "_content",
        "_reasoning",
        "_text",
        "_text_events",
        "conversation",
        "events",
        "finish_reason",
        "media",
        "model",
        "provider",
        "suggestions",
        "title",
        "usage",
    )

    def __init__(self) -> None:
        self._chunks: List[str] = []  # joined runs of CONTENT_CHUNK content pieces
        self._content: List[str] = []  # the pieces since the last join
        self._reasoning: List[str] = []
        self._text: Optional[str] = None
        # _text is valid while events is what it was when _text was joined: every
        # event counts, so a new content piece always invalidates it.
        self._text_events = 0
        self.provider: Optional[Dict[str, Any]] = None
        """The ``provider`` event's payload: ``{name, label, url, model}``."""
        self.model: Optional[str] = None
        """The model that answered (from the usage or provider event)."""
        self.usage: Optional[Dict[str, Any]] = None
        """Token counts: ``{prompt_tokens, completion_tokens, total_tokens, ...}``."""
        self.finish_reason: Optional[str] = None
        """Why the answer ended (``"stop"``, ``"length"``...), if the server said."""
        self.title: Optional[str] = None
        """A title the server generated for the chat."""
        self.suggestions: List[str] = []
        """Follow-up suggestions."""
        self.conversation: Dict[str, Any] = {}
        """Provider state to send back next turn, merged: ``{ProviderName: state}``."""
        self.media: List[str] = []
        """URLs of media (images, audio) the answer carried."""
        self.events = 0
        """How many events were gathered."""

    @property
    def text(self) -> str:
        """The answer's text: every ``content`` event joined."""
        if self._text is None or self._text_events != self.events:
            self._text_events = self.events
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
        return "".join(self._reasoning)

    @property
    def provider_name(self) -> Optional[str]:
        """The answering provider's name, if the server said."""
        name = (self.provider or {}).get("name")
        return name if isinstance(name, str) else None

    def add(self, event: RawResponse) -> None:
        """Take one event into account; events of unknown types only count."""
        self.events += 1
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
                self.provider = provider
                if self.model is None and isinstance(provider.get("model"), str):
                    self.model = provider["model"]
        elif kind == "usage":
            usage = event.get("usage")
            if isinstance(usage, dict):
                self.usage = usage
            if isinstance(event.get("model"), str) and event.get("model"):
                self.model = event["model"]
        elif kind == "finish":
            finish = event.get("finish")
            reason = finish.get("reason") if isinstance(finish, dict) else finish
            if isinstance(reason, str):
                self.finish_reason = reason
        elif kind == "title":
            if isinstance(event.get("title"), str):
                self.title = event["title"]
        elif kind == "suggestions":
            suggestions = event.get("suggestions")
            if isinstance(suggestions, list):
                self.suggestions = [str(item) for item in suggestions]
        elif kind == "conversation":
            state = event.get("conversation")
            if isinstance(state, dict):
                self.conversation.update(state)

    def _join_content(self) -> None:
        self._chunks.append("".join(self._content))
        self._content = []

    def _add_urls(self, urls: Any) -> None:
        if isinstance(urls, str):
            urls = [urls]
        if isinstance(urls, list):
            self.media.extend(url for url in urls if isinstance(url, str))

    def __repr__(self) -> str:
        text = self.text
        shown = text if len(text) <= 60 else text[:60] + "..."
        return (
            f"Answer(text={shown!r}, model={self.model!r}, provider={self.provider_name!r}, "
            f"finish_reason={self.finish_reason!r}, events={self.events})"
        )

    def __str__(self) -> str:
        return self.text
