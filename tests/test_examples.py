"""Every script in examples/ runs against a test server and prints what it should."""

from __future__ import annotations

import asyncio
import importlib.util
import signal
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Dict, List, Optional, Tuple

import pytest
import requests
from aiohttp.test_utils import TestClient, TestServer
from processes import child_env, ended

from backendapi import BackendApiError
from backendapi.testing import BackendApiTestServer, Hold, Reply

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TIMEOUT = 30


def run_example(
    name: str, *args: str, env: Optional[Dict[str, str]] = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env if env is not None else child_env(),
        timeout=TIMEOUT,
    )


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_sse(body: str) -> List[Tuple[str, str]]:
    """(event type, data) pairs of an SSE body, by the SSE rules the relay relies on."""
    events = []
    for block in body.split("\n\n"):
        if not block:
            continue
        kind, data = "message", []
        for line in block.split("\n"):
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                kind = value
            elif field == "data":
                data.append(value)
        events.append((kind, "\n".join(data)))
    return events


def test_every_example_is_covered() -> None:
    scripts = {path.name for path in EXAMPLES.glob("*.py")}
    assert scripts == {"demo.py", "chat_script.py", "web_relay.py"}
    assert (EXAMPLES / "notebook.ipynb").exists()  # run by test_notebook.py


# -- demo.py ------------------------------------------------------------------------------


def test_demo_streams_through_both_clients() -> None:
    result = run_example("demo.py")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("test server at http://127.0.0.1:")
    assert "== BackendApiClient (requests) ==" in out
    assert "== AsyncBackendApiClient (aiohttp) ==" in out
    answer = load_example("demo").ANSWER
    # Twice through the two clients, once more through `backendapi chat`.
    assert out.count(answer) == 3
    assert out.count("thinking: Rayleigh scattering") == 2
    assert "the server answered 2 requests" in out
    # A tool call answered by a Python function, between the streams and the command line.
    demo = load_example("demo")
    tool_part = out[out.index("== Chat with a tool") : out.index("== backendapi chat")]
    assert "[tool] get_weather(city='Paris', unit='celsius') runs" in tool_part
    assert demo.WEATHER_ANSWER in tool_part
    assert "the chat now holds: user -> assistant -> tool -> assistant" in tool_part
    assert "== backendapi chat (the command line) ==" in out
    cli_part = out[out.index("== backendapi chat (the command line) ==") :]
    said, logged = cli_part.split("$ backendapi logs --short\n")
    assert said.rstrip().endswith(answer)
    # The exchange, recorded in the demo's own (temporary) database.
    assert logged.startswith("1  ") and logged.rstrip().endswith(demo.QUESTION)


# -- chat_script.py -------------------------------------------------------------------------


FIRST, SECOND = "Mount Everest.", "It is 8,849 metres high."


@pytest.mark.parametrize("how", ["environment", "argument"])
def test_chat_script_keeps_the_conversation(
    backendapi_server: BackendApiTestServer, how: str
) -> None:
    backendapi_server.reply(Reply.answer(FIRST), Reply.answer(SECOND))
    if how == "environment":
        result = run_example(
            "chat_script.py", env=child_env(BACKENDAPI_BASE_URL=backendapi_server.url)
        )
    else:
        result = run_example("chat_script.py", backendapi_server.url)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    questions = [line for line in lines if line.startswith("> ")]
    assert len(questions) == 2
    assert FIRST in lines and SECOND in lines
    assert lines.index(FIRST) < lines.index(questions[1]) < lines.index(SECOND)
    requests_ = backendapi_server.requests
    assert len(requests_) == 2
    second = requests_[1].json["messages"]
    assert {"role": "assistant", "content": FIRST} in second
    assert second[-1] == {"role": "user", "content": questions[1][2:]}


def test_chat_script_reports_a_server_error(backendapi_server: BackendApiTestServer) -> None:
    backendapi_server.reply(Reply.http_error(404, "Provider not found"))
    result = run_example("chat_script.py", backendapi_server.url)
    assert result.returncode == 1
    assert "Provider not found" in result.stderr
    assert "Traceback" not in result.stderr


# -- web_relay.py: as a program -----------------------------------------------------------


def test_web_relay_as_a_program(backendapi_server: BackendApiTestServer) -> None:
    answer = "Blue light\nscatters  most."
    backendapi_server.reply(Reply.answer(answer))
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "web_relay.py"), "--port", "0", "--base-url",
         backendapi_server.url, "--provider", "ScriptedProvider"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
    )  # fmt: skip
    with ended(process):
        assert process.stdout is not None
        url = process.stdout.readline().strip()  # printed once it listens
        assert url.startswith("http://127.0.0.1:")
        response = requests.get(f"{url}/ask", params={"q": "Why blue?"}, timeout=TIMEOUT)
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = parse_sse(response.text)
        assert events[-1] == ("done", "")
        tokens = [data for kind, data in events[:-1] if kind == "message"]
        assert len(tokens) == len(events) - 1 > 3  # one event per piece
        assert "".join(tokens) == answer
        body = backendapi_server.requests[0].json
        assert body["messages"] == [{"role": "user", "content": "Why blue?"}]
        assert body["provider"] == "ScriptedProvider"
        process.send_signal(signal.SIGINT)
        assert process.wait(TIMEOUT) == 0


# -- web_relay.py: in-process, with aiohttp's test utilities -----------------------------


async def _with_relay(base_url: str, check: Any) -> Any:
    relay = load_example("web_relay")
    app = relay.create_app(base_url)
    # handler_cancellation, as the example's own serve() sets it.
    async with TestClient(TestServer(app, handler_cancellation=True)) as client:
        result = await check(client)
    # on_cleanup has closed the Backend API client.
    with pytest.raises(BackendApiError, match="closed"):
        await app[relay.CLIENT].version()
    return result


def test_web_relay_needs_a_question(backendapi_server: BackendApiTestServer) -> None:
    async def check(client: TestClient) -> Tuple[int, str]:
        response = await client.get("/ask")
        return response.status, await response.text()

    status, text = asyncio.run(_with_relay(backendapi_server.url, check))
    assert status == 400
    assert "q=" in text
    assert backendapi_server.requests == []


def test_web_relay_turns_an_upstream_refusal_into_502(
    backendapi_server: BackendApiTestServer,
) -> None:
    backendapi_server.reply(Reply.http_error(404, "Provider not found"))

    async def check(client: TestClient) -> Tuple[int, str]:
        response = await client.get("/ask", params={"q": "hi"})
        return response.status, await response.text()

    status, text = asyncio.run(_with_relay(backendapi_server.url, check))
    assert status == 502
    assert "Provider not found" in text


def test_web_relay_forwards_a_stream_error(backendapi_server: BackendApiTestServer) -> None:
    backendapi_server.reply(
        Reply(
            [
                {"type": "content", "content": "Half"},
                {"type": "error", "error": "RuntimeError", "message": "model crashed"},
            ]
        )
    )

    async def check(client: TestClient) -> List[Tuple[str, str]]:
        response = await client.get("/ask", params={"q": "hi"})
        assert response.status == 200
        return parse_sse(await response.text())

    events = asyncio.run(_with_relay(backendapi_server.url, check))
    assert events[0] == ("message", "Half")
    assert events[1][0] == "error"
    assert "model crashed" in events[1][1]
    assert len(events) == 2


def test_web_relay_closes_upstream_when_its_client_leaves(
    backendapi_server: BackendApiTestServer,
) -> None:
    backendapi_server.reply(Reply([{"type": "content", "content": "first"}, Hold()]))

    async def check(client: TestClient) -> Tuple[bytes, bool, bool]:
        response = await client.get("/ask", params={"q": "hi"})
        first = await response.content.readuntil(b"\n\n")
        upstream = backendapi_server.requests[0]
        before = upstream.disconnected.is_set()
        response.close()  # the browser goes away mid-answer
        # While the relay still runs: its handler, cancelled, closed the upstream stream.
        after = await asyncio.to_thread(upstream.disconnected.wait, 5)
        return first, before, after

    first, before, after = asyncio.run(_with_relay(backendapi_server.url, check))
    assert first == b"data: first\n\n"
    assert (before, after) == (False, True)
