"""Show a streaming answer in Jupyter as Markdown that updates in place.

::

    from backendapi import BackendApiClient
    from backendapi.notebook import show_stream

    client = BackendApiClient("http://localhost:8080")
    answer = show_stream(client.create("gpt-4o", [{"role": "user", "content": "Hi"}]))

and, with the async client and a notebook's top-level ``await``::

    answer = await ashow_stream(async_client.create("gpt-4o", messages))

Both return the finished :class:`~backendapi.Answer`. IPython is needed (it
is what Jupyter kernels run on); install it with ``pip install
'backendapi[notebook]'``. It is imported only when a function is called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Tuple

from ._answer import Answer
from ._sync.client import Stream

if TYPE_CHECKING:
    from ._async.client import AsyncStream

__all__ = ["ashow_stream", "show_stream"]


def show_stream(stream: Stream) -> Answer:
    """Display ``stream``'s answer as Markdown, updated in place as each piece arrives.

    The stream is read to its end and closed (also when an error or an
    interrupt stops it); returns its :class:`~backendapi.Answer`.
    """
    update = _start_display()
    with stream:
        for event in stream:
            if event.type == "content":
                update(stream.answer.text)
    update(stream.answer.text)
    return stream.answer


async def ashow_stream(stream: AsyncStream) -> Answer:
    """The async twin of :func:`show_stream`, for an :class:`~backendapi.AsyncStream`.

    Use it with a notebook's top-level ``await``::

        answer = await ashow_stream(client.create("gpt-4o", messages))
    """
    update = _start_display()
    async with stream:
        async for event in stream:
            if event.type == "content":
                update(stream.answer.text)
    update(stream.answer.text)
    return stream.answer


def _start_display() -> Callable[[str], None]:
    """Show an empty Markdown output; return a function replacing its text."""
    display, markdown = _ipython()
    handle = display(markdown(""), display_id=True)

    def update(text: str) -> None:
        if handle is not None:
            handle.update(markdown(text))

    return update


def _ipython() -> Tuple[Callable[..., Any], Callable[[str], Any]]:
    """IPython's ``display`` and ``Markdown``, imported on first use."""
    try:
        from IPython.display import Markdown, display
    except ImportError as exc:
        raise ImportError(
            "backendapi.notebook needs IPython; install it with: pip install 'backendapi[notebook]'"
        ) from exc
    return display, Markdown
