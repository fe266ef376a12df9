"""The notebook view (issue 15, point 5), run in a real Jupyter kernel through nbclient.

A notebook made here runs against a test server on loopback; every message the kernel
sends is recorded, so the redraws (``update_display_data``) are counted where Jupyter
sees them: at most 10 a second of streaming plus the last, the reasoning in a collapsed
block, provider, model and usage under the answer, with `Chat` and `AsyncChat` alike.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any, Dict, Iterator, List, Optional, Tuple

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient

from backendapi import AsyncBackendApiClient, BackendApiClient, InvalidInputError
from backendapi.notebook import ashow_stream, render_markdown, show_stream
from backendapi.testing import BackendApiTestServer, Pause, Reply

PACED_EVENTS = 60
PACE = 0.02  # the server's pause before each content event: a stream of about 1.2 s
REASONING = "First, *think*. Then </details> stays inside."


def paced_reply() -> Reply:
    text = " ".join(f"w{i}" for i in range(PACED_EVENTS // 2))
    events: List[Any] = []
    for event in Reply.answer(text).events:
        if isinstance(event, dict) and event.get("type") == "content":
            events.append(Pause(PACE))
        events.append(event)
    return Reply(events)


CELLS = {
    "setup": """
import json, time
from backendapi import AsyncBackendApiClient, AsyncChat, BackendApiClient, Chat
from backendapi.notebook import ashow_stream, show_stream
client = BackendApiClient(URL, timeout=30)
messages = [{"role": "user", "content": "count"}]
""",
    "paced": """
started = time.monotonic()
answer = show_stream(client.create("m", messages))
print(json.dumps({"seconds": time.monotonic() - started, "text": answer.text}))
""",
    "reasoning": """
answer = show_stream(client.create("m", messages))
print(json.dumps({"reasoning": answer.reasoning}))
""",
    "chat": """
chat = Chat(client, "m")
answer = show_stream(chat.send("Hi"))
print(json.dumps(chat.messages))
""",
    "achat": """
aclient = AsyncBackendApiClient(URL, timeout=30)
achat = AsyncChat(aclient, "m")
answer = await ashow_stream(achat.send("Hi"))
print(json.dumps(achat.messages))
await aclient.aclose()
client.close()
""",
}


class CountingClient(NotebookClient):
    """Records, per cell, every display message the kernel sent (updates included)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.displays: Dict[int, List[Tuple[str, str]]] = {}

    def process_message(self, msg: Dict[str, Any], cell: Any, cell_index: int) -> Optional[Any]:
        kind = msg["msg_type"]
        if kind in ("display_data", "update_display_data"):
            markdown = msg["content"].get("data", {}).get("text/markdown", "")
            self.displays.setdefault(cell_index, []).append((kind, markdown))
        return super().process_message(msg, cell, cell_index)


@pytest.fixture(scope="module")
def run() -> Iterator[Dict[str, Any]]:
    """Each cell's stdout (the JSON it printed), errors and display messages, by name."""
    with BackendApiTestServer() as server:
        server.reply(
            paced_reply(),
            Reply.answer("The answer.", reasoning=REASONING, model="gpt-x", provider="Prov"),
            Reply.answer("Hello back"),
            Reply.answer("Async hello"),
        )
        notebook = nbformat.v4.new_notebook()
        notebook.cells = [nbformat.v4.new_code_cell(f"URL = {server.url!r}")] + [
            nbformat.v4.new_code_cell(source.strip(), metadata={"tags": [name]})
            for name, source in CELLS.items()
        ]
        # This interpreter's own kernelspec first (see tests/test_notebook.py).
        own = os.path.join(sys.prefix, "share", "jupyter")
        old = os.environ.get("JUPYTER_PATH")
        os.environ["JUPYTER_PATH"] = own if not old else os.pathsep.join([own, old])
        try:
            KernelSpecManager().get_kernel_spec("python3")
            client = CountingClient(notebook, timeout=60, kernel_name="python3")
            client.execute()
        finally:
            if old is None:
                del os.environ["JUPYTER_PATH"]
            else:
                os.environ["JUPYTER_PATH"] = old
    cells: Dict[str, Any] = {}
    for index, cell in enumerate(notebook.cells):
        for name in cell.metadata.get("tags", []):
            out = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
            errors = [f"{o.ename}: {o.evalue}" for o in cell.outputs if o.output_type == "error"]
            cells[name] = {
                "json": json.loads(out) if out.strip() and not errors else None,
                "errors": errors,
                "displays": client.displays.get(index, []),
            }
    yield cells


def test_every_cell_ran(run: Dict[str, Any]) -> None:
    assert {name: cell["errors"] for name, cell in run.items()} == {name: [] for name in CELLS}


def test_redraws_are_at_most_ten_a_second_plus_the_last(run: Dict[str, Any]) -> None:
    cell = run["paced"]
    seconds = cell["json"]["seconds"]
    kinds = [kind for kind, _ in cell["displays"]]
    assert kinds[0] == "display_data" and set(kinds[1:]) == {"update_display_data"}
    updates = len(kinds) - 1
    # The server's pauses, one before each content event: the stream took that long.
    pauses = sum(isinstance(event, Pause) for event in paced_reply().events)
    assert pauses == PACED_EVENTS - 1  # 30 words and the 29 spaces between them
    assert seconds >= pauses * PACE
    assert updates <= 10 * seconds + 2, (updates, seconds)
    # ... and it is drawn while it streams, not only at the end (one per event before).
    assert updates >= 3, (updates, seconds)
    last = cell["displays"][-1][1]
    assert last.startswith(cell["json"]["text"] + "\n\n<small>ScriptedProvider · scripted-1 · ")


def test_reasoning_is_a_collapsed_block_and_the_footer_names_provider_model_usage(
    run: Dict[str, Any],
) -> None:
    cell = run["reasoning"]
    assert cell["json"]["reasoning"] == REASONING
    shown = cell["displays"][-1][1]
    escaped = REASONING.replace("</details", "&lt;/details")
    assert shown == (
        f"<details><summary>Reasoning</summary>\n\n{escaped}\n\n</details>\n\n"
        "The answer.\n\n"
        "<small>Prov · gpt-x · 3 prompt + 4 completion = 7 tokens</small>"
    )


def test_a_chat_turn_shown_is_kept_in_the_history(run: Dict[str, Any]) -> None:
    messages = run["chat"]["json"]
    assert messages[-1] == {"role": "assistant", "content": "Hello back"}
    assert run["chat"]["displays"][-1][1].startswith("Hello back\n\n<small>")


def test_an_async_chat_turn_shown_with_await_is_kept_too(run: Dict[str, Any]) -> None:
    messages = run["achat"]["json"]
    assert messages[-1] == {"role": "assistant", "content": "Async hello"}
    assert run["achat"]["displays"][-1][1].startswith("Async hello\n\n<small>")


# -- in-process: what needs no kernel ----------------------------------------------------------


def test_render_markdown_of_an_empty_answer_is_empty() -> None:
    from backendapi import Answer

    assert render_markdown(Answer()) == ""


def test_the_wrong_twin_says_which_to_write() -> None:
    async def main() -> None:
        async with AsyncBackendApiClient("http://127.0.0.1:9") as client:
            stream = client.create("m", [{"role": "user", "content": "x"}])
            with pytest.raises(TypeError, match=r"await ashow_stream\(stream\)"):
                show_stream(stream)  # type: ignore[arg-type]
            await stream.aclose()
        with BackendApiClient("http://127.0.0.1:9") as blocking:
            sync_stream = blocking.create("m", [{"role": "user", "content": "x"}])
            with pytest.raises(TypeError, match=r"answer = show_stream\(stream\)"):
                await ashow_stream(sync_stream)  # type: ignore[arg-type]
            sync_stream.close()

    asyncio.run(main())


def test_a_coroutine_or_an_answer_is_refused_naming_what_to_pass() -> None:
    from backendapi import Answer

    with pytest.raises(TypeError, match=r"not Answer: an Answer is already finished: pass client"):
        show_stream(Answer())  # type: ignore[arg-type]

    async def ask() -> None: ...

    with pytest.raises(TypeError, match=r"not coroutine: pass the stream"):
        show_stream(ask())  # type: ignore[arg-type]


@pytest.mark.parametrize("interval", [-1, float("nan"), "0.1", True])
def test_a_bad_interval_is_refused(interval: Any) -> None:
    with BackendApiClient("http://127.0.0.1:9") as client:
        stream = client.create("m", [{"role": "user", "content": "x"}])
        with pytest.raises(InvalidInputError, match="interval"):
            show_stream(stream, interval=interval)
        stream.close()
