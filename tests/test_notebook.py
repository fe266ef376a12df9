"""examples/notebook.ipynb runs top to bottom in a real Jupyter kernel, offline."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any, Dict, List

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient

from backendapi import Answer, AsyncBackendApiClient, BackendApiClient, StreamError
from backendapi.notebook import ashow_stream, show_stream
from backendapi.testing import BackendApiTestServer, Reply

NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "notebook.ipynb"
ANSWER = "The sky is **blue** because air scatters *short* wavelengths the most."


@pytest.fixture(scope="module")
def executed() -> Dict[str, Any]:
    """The notebook after execution, its code cells by tag."""
    # This interpreter's own kernelspec (ipykernel installs it under sys.prefix) goes first,
    # so that "python3" never resolves to a kernel of another installation.
    own = os.path.join(sys.prefix, "share", "jupyter")
    old = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = own if not old else os.pathsep.join([own, old])
    try:
        spec = KernelSpecManager().get_kernel_spec("python3")
        # jupyter_client replaces a bare "python" with sys.executable when it launches it.
        assert spec.argv[0] in ("python", "python3", sys.executable), spec.argv
        notebook = nbformat.read(NOTEBOOK, as_version=4)
        client = NotebookClient(
            notebook,
            timeout=60,
            kernel_name="python3",
            resources={"metadata": {"path": str(NOTEBOOK.parent)}},
        )
        client.execute()
    finally:
        if old is None:
            del os.environ["JUPYTER_PATH"]
        else:
            os.environ["JUPYTER_PATH"] = old
    cells: Dict[str, Any] = {}
    for cell in notebook.cells:
        for tag in cell.metadata.get("tags", []):
            cells[tag] = cell
    return cells


def _stdout(cell: Any) -> str:
    return "".join(
        output.get("text", "")
        for output in cell.outputs
        if output.output_type == "stream" and output.name == "stdout"
    )


def _markdown_outputs(cell: Any) -> List[str]:
    return [
        output.data["text/markdown"]
        for output in cell.outputs
        if output.output_type == "display_data" and "text/markdown" in output.get("data", {})
    ]


def _errors(cells: Dict[str, Any]) -> List[str]:
    return [
        f"{tag}: {output.get('ename')}: {output.get('evalue')}"
        for tag, cell in cells.items()
        for output in cell.outputs
        if output.output_type == "error"
    ]


def test_the_notebook_scripts_the_answer_this_test_expects() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    assert any(ANSWER in cell.source for cell in notebook.cells)
    assert "".join(e["content"] for e in Reply.answer(ANSWER).events[1:-2]) == ANSWER
    # Saved without outputs, so the file shows the code and the test proves it runs.
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")


def test_every_cell_ran_without_error(executed: Dict[str, Any]) -> None:
    assert set(executed) == {"server", "blocking", "async", "show", "ashow", "cleanup"}
    assert _errors(executed) == []
    assert all(cell.execution_count for cell in executed.values())


def test_the_server_cell_printed_a_loopback_url(executed: Dict[str, Any]) -> None:
    assert _stdout(executed["server"]).startswith("test server at http://127.0.0.1:")


def test_the_blocking_client_streamed_the_answer(executed: Dict[str, Any]) -> None:
    assert _stdout(executed["blocking"]) == ANSWER + "\n"


def test_the_async_client_streamed_the_answer_with_top_level_async_for(
    executed: Dict[str, Any],
) -> None:
    assert _stdout(executed["async"]) == ANSWER + "\n"


FOOTER = "<small>ScriptedProvider · scripted-1 · "


def test_show_stream_left_the_full_answer_as_markdown(executed: Dict[str, Any]) -> None:
    cell = executed["show"]
    # One display, updated in place: the updates replaced its text rather than adding outputs.
    [shown] = _markdown_outputs(cell)
    assert shown.startswith(ANSWER + "\n\n" + FOOTER)
    assert "Sky" in _stdout(cell)
    assert "'completion_tokens'" in _stdout(cell)


def test_ashow_stream_left_the_full_answer_as_markdown(executed: Dict[str, Any]) -> None:
    cell = executed["ashow"]
    [shown] = _markdown_outputs(cell)
    assert shown.startswith(ANSWER + "\n\n" + FOOTER)
    assert _stdout(cell) == "scripted-1 stop\n"


def test_the_notebook_cleaned_up_after_four_conversations(executed: Dict[str, Any]) -> None:
    assert _stdout(executed["cleanup"]) == "requests served: 4\n"


# -- the display helpers alone, with IPython's display recorded -----------------------------


class FakeHandle:
    """Records what a display handle was updated with."""

    def __init__(self, shown: Any) -> None:
        self.texts = [shown.data]

    def update(self, markdown: Any) -> None:
        self.texts.append(markdown.data)


@pytest.fixture
def handles(monkeypatch: pytest.MonkeyPatch) -> List[FakeHandle]:
    import IPython.display

    created: List[FakeHandle] = []

    def display(obj: Any, display_id: Any = None) -> FakeHandle:
        assert display_id is True
        assert isinstance(obj, IPython.display.Markdown)
        created.append(FakeHandle(obj))
        return created[-1]

    monkeypatch.setattr(IPython.display, "display", display)
    return created


def _texts(handle: FakeHandle) -> List[str]:
    """The answer's text in each thing shown (without the provider line under it)."""
    return [text.split("<small>")[0].rstrip("\n") for text in handle.texts]


# interval=0: a redraw per event that changes what is shown (the default redraws at most 10
# a second): the provider (shown under an empty text), four contents, the usage (the finish
# event changes nothing shown).
PER_EVENT = ["", "One", "One,", "One, ", "One, two", "One, two"]


def test_show_stream_updates_in_place_per_event_with_no_interval(
    handles: List[FakeHandle], backendapi_server: BackendApiTestServer
) -> None:
    backendapi_server.reply(Reply.answer("One, two"))
    with BackendApiClient(backendapi_server.url) as client:
        stream = client.create("m", [{"role": "user", "content": "count"}])
        answer = show_stream(stream, interval=0)
    assert answer.text == "One, two"
    assert stream.closed
    assert len(handles) == 1  # one display, updated: not one output per token
    assert _texts(handles[0]) == PER_EVENT
    assert handles[0].texts[-1].endswith("3 prompt + 4 completion = 7 tokens</small>")


def test_ashow_stream_updates_in_place_per_event_with_no_interval(
    handles: List[FakeHandle], backendapi_server: BackendApiTestServer
) -> None:
    backendapi_server.reply(Reply.answer("One, two"))

    async def run() -> Answer:
        async with AsyncBackendApiClient(backendapi_server.url) as client:
            stream = client.create("m", [{"role": "user", "content": "count"}])
            return await ashow_stream(stream, interval=0)

    assert asyncio.run(run()).text == "One, two"
    assert len(handles) == 1
    assert _texts(handles[0]) == PER_EVENT


def test_show_stream_closes_the_stream_on_error(
    handles: List[FakeHandle], backendapi_server: BackendApiTestServer
) -> None:
    error = {"type": "error", "error": "RuntimeError", "message": "broke"}
    backendapi_server.reply(Reply([{"type": "content", "content": "Half"}, error]))
    with BackendApiClient(backendapi_server.url) as client:
        stream = client.create("m", [{"role": "user", "content": "x"}])
        with pytest.raises(StreamError, match="broke"):
            show_stream(stream)
    assert stream.closed
    assert handles[0].texts == ["Half"]  # what arrived stays shown


def test_without_ipython_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "IPython.display", None)  # makes the import fail
    with BackendApiClient("http://127.0.0.1:9") as client:
        stream = client.create("m", [{"role": "user", "content": "x"}])
        with pytest.raises(ImportError, match=r"backendapi\[notebook\]"):
            show_stream(stream)
        stream.close()
