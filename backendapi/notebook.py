"""Show a streaming answer in Jupyter as Markdown that updates in place.

::

    from backendapi import BackendApiClient, Chat
    from backendapi.notebook import show_stream

    client = BackendApiClient("http://localhost:8080")
    answer = show_stream(client.create("gpt-4o", [{"role": "user", "content": "Hi"}]))
    chat = Chat(client, "gpt-4o")
    answer = show_stream(chat.send("Hi"))  # the chat keeps the turn, as with a loop

and, with the async client (or an ``AsyncChat``) and a notebook's top-level ``await``::

    answer = await ashow_stream(async_client.create("gpt-4o", messages))
    answer = await ashow_stream(async_chat.send("Hi"))

Both return the finished :class:`~backendapi.Answer`. The display is
redrawn at most every ``interval`` seconds (0.1 by default) while the
answer streams, and once at the end: rendering the whole Markdown on every
token costs far more than reading it. It shows the reasoning, if any, in a
collapsed block (HTML ``<details>``) above the answer, and the provider, the
model and the token usage under it.

IPython is needed (it is what Jupyter kernels run on); install it with
``pip install 'backendapi[notebook]'``. It is imported only when a function
is called.
"""

from __future__ import annotations

import html
import time
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Tuple

from ._answer import Answer
from ._errors import InvalidInputError
from ._sync.client import Stream

if TYPE_CHECKING:
    from ._async.client import AsyncStream

__all__ = ["RENDER_INTERVAL", "ashow_stream", "render_markdown", "show_stream"]

RENDER_INTERVAL = 0.1
"""Seconds between two redraws of a streaming answer, at least (the last one comes at its end)."""


def show_stream(stream: Stream, *, interval: float = RENDER_INTERVAL) -> Answer:
    """Display ``stream``'s answer as Markdown, redrawn in place while it arrives.

    ``stream`` is what :meth:`BackendApiClient.create` or :meth:`Chat.send`
    (``send_continue``, ``send_regenerate``) returns. The display is redrawn
    at most once per ``interval`` seconds (when an event arrives), and once
    more at the end, also when an error or an interrupt stops the stream, so
    that what arrived stays shown. The stream is read to its end and closed;
    returns its :class:`~backendapi.Answer`. For an ``AsyncStream`` use
    ``await ashow_stream(stream)``.
    """
    if not isinstance(stream, Stream):
        raise _not_a_stream(stream, "show_stream")
    view = _View(interval)
    answer = stream.answer
    try:
        with stream:
            for _ in stream:
                if time.monotonic() >= view.next_render:
                    view.render(answer)
    finally:
        view.render(answer)
    return answer


async def ashow_stream(stream: AsyncStream, *, interval: float = RENDER_INTERVAL) -> Answer:
    """The async twin of :func:`show_stream`, for an :class:`~backendapi.AsyncStream`.

    ``stream`` is what :meth:`AsyncBackendApiClient.create` or
    :meth:`AsyncChat.send` returns (not awaited: either works). Use it with a
    notebook's top-level ``await``::

        answer = await ashow_stream(client.create("gpt-4o", messages))
    """
    if isinstance(stream, Stream) or not hasattr(stream, "__aiter__"):
        raise _not_a_stream(stream, "ashow_stream")
    view = _View(interval)
    answer = stream.answer
    try:
        async with stream:
            async for _ in stream:
                if time.monotonic() >= view.next_render:
                    view.render(answer)
    finally:
        view.render(answer)
    return answer


def render_markdown(answer: Answer) -> str:
    """The Markdown :func:`show_stream` shows for ``answer`` (as it is so far).

    The reasoning in a collapsed ``<details>`` block, the answer's text as it
    is, and a small line naming the provider, the model and the token usage.
    """
    parts: List[str] = []
    reasoning = answer.reasoning
    if reasoning:
        status = answer.reasoning_status
        summary = "Reasoning" + (f" ({status})" if status else "")
        # The text stays Markdown; only a closing tag in it could end the block early.
        body = reasoning.replace("</details", "&lt;/details")
        parts.append(f"<details><summary>{html.escape(summary)}</summary>\n\n{body}\n\n</details>")
    text = answer.text
    if text:
        parts.append(text)
    footer = _footer(answer)
    if footer:
        parts.append(f"<small>{html.escape(footer)}</small>")
    return "\n\n".join(parts)


def _footer(answer: Answer) -> str:
    """``provider · model · usage``, as far as the server said."""
    items: List[str] = []
    provider = answer.provider or {}
    name = provider.get("label") or provider.get("name")
    if isinstance(name, str) and name:
        items.append(name)
    model = answer.model or provider.get("model")
    if isinstance(model, str) and model:
        items.append(model)
    usage = answer.usage
    if usage:
        items.append(_usage(usage))
    return " · ".join(items)


def _usage(usage: Any) -> str:
    counts = {k: v for k, v in usage.items() if isinstance(v, int) and not isinstance(v, bool)}
    prompt = counts.get("prompt_tokens")
    completion = counts.get("completion_tokens")
    total = counts.get("total_tokens")
    if prompt is not None and completion is not None:
        total = prompt + completion if total is None else total
        return f"{prompt} prompt + {completion} completion = {total} tokens"
    return ", ".join(f"{key} {value}" for key, value in counts.items()) or "usage"


class _View:
    """One Markdown display, redrawn from the answer when it changed and the interval passed."""

    def __init__(self, interval: float) -> None:
        if isinstance(interval, bool) or not isinstance(interval, (int, float)):
            raise InvalidInputError(
                f"interval must be a number of seconds, not {type(interval).__name__}"
            )
        if not interval >= 0:
            raise InvalidInputError(f"interval must be >= 0 seconds, got {interval}")
        self.interval = float(interval)
        self._show = _display_function()
        self._shown_events = 0  # the answer's event count at the last redraw
        self._shown = ""
        # The output appears at the first redraw: an answer streamed within the interval
        # is shown once, whole, at no more cost than one display.
        self.next_render = time.monotonic() + self.interval
        """The ``time.monotonic()`` before which no redraw happens."""

    def render(self, answer: Answer) -> None:
        """Redraw from ``answer``, unless no event came since the last redraw."""
        if answer.events != self._shown_events:
            self._shown_events = answer.events
            markdown = render_markdown(answer)
            if markdown != self._shown:  # a finish event, say, changes nothing shown
                self._shown = markdown
                self._show(markdown)
        self.next_render = time.monotonic() + self.interval


def _not_a_stream(value: object, function: str) -> TypeError:
    """The error for a value ``function`` cannot show, saying what to write instead."""
    given = type(value).__name__
    if function == "show_stream" and hasattr(value, "__aiter__"):
        hint = "an async stream is shown with: answer = await ashow_stream(stream)"
    elif function == "ashow_stream" and isinstance(value, Stream):
        hint = "a blocking client's stream is shown with: answer = show_stream(stream)"
    elif isinstance(value, Answer):
        hint = "an Answer is already finished: pass client.create(...) or chat.send(...)"
    elif hasattr(value, "__await__"):
        hint = "pass the stream, client.create(...) or chat.send(...), not a coroutine (ask())"
        close: Optional[Callable[[], Any]] = getattr(value, "close", None)
        if close is not None:
            close()  # never awaited: spare the "was never awaited" warning
    else:
        hint = "pass client.create(...) or chat.send(...)"
    return TypeError(f"{function}() takes a stream, not {given}: {hint}")


def _display_function() -> Callable[[str], None]:
    """A function showing its Markdown text: in a new output the first time, then in place."""
    display, markdown = _ipython()
    handles: List[Any] = []

    def show(text: str) -> None:
        if not handles:
            # Outside a kernel IPython prints the object once and gives no handle.
            handles.append(display(markdown(text), display_id=True))
        elif handles[0] is not None:
            handles[0].update(markdown(text))

    return show


def _ipython() -> Tuple[Callable[..., Any], Callable[[str], Any]]:
    """IPython's ``display`` and ``Markdown``, imported on first use."""
    try:
        from IPython.display import Markdown, display
    except ImportError as exc:
        raise ImportError(
            "backendapi.notebook needs IPython; install it with: pip install 'backendapi[notebook]'"
        ) from exc
    return display, Markdown
