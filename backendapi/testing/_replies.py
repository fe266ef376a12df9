"""Scripting a reply: its events, its framing and transfer, and the transport actions."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# The one provider, serving one model, that the test server lists and `Reply.answer` names.
PROVIDER = "ScriptedProvider"
MODEL = "scripted-1"

# Splits an answer the way providers stream it: words, runs of whitespace, single symbols.
# The three alternatives cover every character, so the tokens always join back to the text.
_TOKEN = re.compile(r"\w+|\s+|[^\w\s]")


def split_tokens(text: str) -> list[str]:
    """`text` cut into the tokens a provider would stream it in."""
    return _TOKEN.findall(text)


def error_document(message: str) -> dict[str, Any]:
    """g4f's JSON error body, ``{"error": {"message": message}}``."""
    return {"error": {"message": message}}


@dataclass(frozen=True)
class Pause:
    """Make the server wait `seconds` before it sends the next item of a reply."""

    seconds: float


@dataclass(frozen=True)
class Wait:
    """Make the server wait until the test sets `event` before it sends the next item.

    Lets a test check what the client did with the events so far, without sleeping::

        release = threading.Event()
        server.reply(Reply([first_event, Wait(release), second_event]))
        ...  # assert the client has seen first_event
        release.set()
    """

    event: threading.Event


@dataclass(frozen=True)
class Hold:
    """Make the server stop sending and keep the connection open until the client closes it."""


@dataclass(frozen=True)
class Cut:
    """Make the server abort the TCP connection here, so the body ends before its proper end.

    Everything written before the cut reaches the client first. A chunked body then lacks its
    terminating zero-length chunk; a Content-Length body, whose length counts the items after
    the cut too, falls short of it.
    """


def _call_pieces(call: dict[str, Any]) -> list[dict[str, Any]]:
    """One tool call as OpenAI stream deltas, one ``tool_calls`` event each (`Reply.tool_calls`)."""
    function = call["function"]
    first = {**call, "function": {"name": function["name"], "arguments": ""}}
    events = [{"type": "tool_calls", "tool_calls": [first]}]
    arguments = function["arguments"]
    size = max(-(-len(arguments) // 3), 1)
    for start in range(0, len(arguments), size):
        delta = {"index": call["index"], "function": {"arguments": arguments[start : start + size]}}
        events.append({"type": "tool_calls", "tool_calls": [delta]})
    return events


_FRAMINGS = ("sse", "ndjson")
_TRANSFERS = ("chunked", "close", "length")


@dataclass(frozen=True)
class Reply:
    """What the server sends in response to one conversation request.

    Attributes:
        events: sent in order. A mapping is one event, serialized with `json.dumps` (ASCII
            only, like g4f) and framed; bytes are written exactly as given, for malformed
            streams; `Pause`, `Wait`, `Hold` and `Cut` act on the transport.
        framing: ``"sse"`` (``event: <type>\\ndata: <json>\\n\\n``, g4f 8.x) or ``"ndjson"``
            (``<json>\\n``, g4f before December 2025).
        transfer: ``"chunked"`` (each write is one chunk), ``"close"`` (no length, the body
            ends when the server closes the connection, as behind some proxies) or
            ``"length"`` (Content-Length; the whole body is sent at once, after any pauses).
        status: the HTTP status. From 400 on, the body is `error` instead of the events.
        error: the body of an error reply: JSON-encoded unless it is str or bytes, which are
            sent as given (an HTML page from a proxy, say). ``None`` sends an empty body.
        content_type: overrides the Content-Type: by default `STREAM_CONTENT_TYPE` for
            streams, ``application/json`` for JSON errors, ``text/plain; charset=utf-8`` for
            str errors and ``application/octet-stream`` for bytes errors.
        headers: extra response headers.
        write_size: when set, each item's bytes are written in pieces of at most this size,
            to exercise the client's reassembly of events split across reads.
        gzip: send the body gzip-compressed, with ``Content-Encoding: gzip``, as some
            servers and proxies do. The compressor is flushed (``Z_SYNC_FLUSH``) after each
            item, so every event can be decompressed as soon as it arrives; the gzip trailer
            follows the last item (not after a `Cut`). `write_size` then cuts the compressed
            bytes.
        reset: abort the connection with a TCP reset as soon as the request has been read,
            before a single byte of the response (not even the status line) is sent, the way
            a crashing server or a load balancer dropping a connection does. The request is
            still recorded; every other attribute is ignored.
    """

    events: Sequence[Mapping[str, Any] | bytes | Pause | Wait | Hold | Cut] = ()
    framing: str = "sse"
    transfer: str = "chunked"
    status: int = 200
    error: Any | None = None
    content_type: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    write_size: int | None = None
    gzip: bool = False
    reset: bool = False

    def __post_init__(self) -> None:
        if self.framing not in _FRAMINGS:
            raise ValueError(f"framing must be one of {_FRAMINGS}, not {self.framing!r}")
        if self.transfer not in _TRANSFERS:
            raise ValueError(f"transfer must be one of {_TRANSFERS}, not {self.transfer!r}")
        if self.write_size is not None and self.write_size < 1:
            raise ValueError(f"write_size must be at least 1, not {self.write_size}")

    @classmethod
    def answer(
        cls,
        text: str,
        *,
        model: str = MODEL,
        provider: str = PROVIDER,
        reasoning: str | None = None,
        title: str | None = None,
        conversation: Mapping[str, Any] | None = None,
        prompt_tokens: int = 3,
        framing: str = "sse",
        transfer: str = "chunked",
    ) -> Reply:
        """A successful reply: `text` as the model's answer, shaped like a g4f 8.8.6 transcript.

        Events: ``provider``; ``reasoning`` (if given); ``conversation`` with `conversation`
        stored under the provider's name (if given); `text` as ``content`` events of one
        word, whitespace run or symbol each; ``title`` (if given); ``usage`` counting those
        content events as completion tokens; ``finish`` with reason ``stop``.

        >>> [e["content"] for e in Reply.answer("Hi, you").events if e["type"] == "content"]
        ['Hi', ',', ' ', 'you']
        """
        events: list[dict[str, Any]] = [
            {
                "type": "provider",
                "provider": {
                    "name": provider,
                    "url": "http://127.0.0.1",
                    "label": provider,
                    "model": model,
                },
            }
        ]
        if reasoning is not None:
            events.append({"type": "reasoning", "token": reasoning})
        if conversation is not None:
            events.append({"type": "conversation", "conversation": {provider: conversation}})
        tokens = split_tokens(text)
        events.extend({"type": "content", "content": token} for token in tokens)
        if title is not None:
            events.append({"type": "title", "title": title})
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(tokens),
            "total_tokens": prompt_tokens + len(tokens),
        }
        events.append({"type": "usage", "usage": usage, "model": model, "provider": provider})
        events.append({"type": "finish", "finish": {"reason": "stop"}})
        return cls(events, framing=framing, transfer=transfer)

    @classmethod
    def tool_calls(
        cls,
        calls: Sequence[Mapping[str, Any]],
        *,
        text: str = "",
        pieces: bool = False,
        model: str = MODEL,
        provider: str = PROVIDER,
        conversation: Mapping[str, Any] | None = None,
        framing: str = "sse",
        transfer: str = "chunked",
    ) -> Reply:
        """A reply in which the model asks to call tools, as g4f 8.8.6 streams it.

        Each call is ``{"name": ..., "arguments": {...} or JSON text, "id": ...}`` (``id``
        defaults to ``call_<n>``). Events: ``provider``; ``conversation`` (if given, as in
        `answer`); `text`, if any, as ``content``
        events; one ``tool_calls`` event carrying every call (``{"index", "id", "type":
        "function", "function": {"name", "arguments": JSON text}}``); ``usage``; ``finish``
        with reason ``tool_calls``. With `pieces`, each call comes as OpenAI-style stream
        deltas instead, one ``tool_calls`` event each: the first with the id, the name and
        no arguments, then the arguments text in three parts under the same ``index``.

        >>> reply = Reply.tool_calls([{"name": "weather", "arguments": {"city": "Paris"}}])
        >>> [e["tool_calls"] for e in reply.events if e["type"] == "tool_calls"][0][0]["id"]
        'call_0'
        """
        start = cls.answer(text, model=model, provider=provider, conversation=conversation)
        events = [dict(event) for event in start.events if isinstance(event, Mapping)]
        usage, finish = events[-2], events[-1]
        del events[-2:]
        wire_calls = []
        for index, call in enumerate(calls):
            arguments = call.get("arguments", {})
            if not isinstance(arguments, str):
                arguments = json.dumps(arguments)
            wire_calls.append(
                {
                    "index": index,
                    "id": call.get("id", f"call_{index}"),
                    "type": "function",
                    "function": {"name": call["name"], "arguments": arguments},
                }
            )
        if pieces:
            for call in wire_calls:
                events.extend(_call_pieces(call))
        else:
            events.append({"type": "tool_calls", "tool_calls": wire_calls})
        events.append(usage)
        events.append({**finish, "finish": {"reason": "tool_calls"}})
        return cls(events, framing=framing, transfer=transfer)

    @classmethod
    def http_error(cls, status: int, message: str) -> Reply:
        """An HTTP error with g4f's body, ``{"error": {"message": message}}``."""
        return cls(status=status, error=error_document(message))
