"""The main job, offline: stream one conversation through both clients.

Starts the bundled test server (``backendapi.testing``) with a scripted
answer, then streams the same question through ``BackendApiClient`` and
``AsyncBackendApiClient``, printing reasoning, the answer token by token, and
the usage line, as a user's program would. Then a ``Chat`` offers the model a
Python function as a tool: the server (scripted) asks to call it, the chat
calls it and sends its result back, and the model answers with it. Last, the
command line does the same as the first part: ``backendapi serve-test`` in the
background, ``backendapi chat`` against it.

Run it with ``make demo`` (or ``python examples/demo.py``).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from typing import IO, Any, Dict, List

from backendapi import AsyncBackendApiClient, BackendApiClient, Chat, RawResponse
from backendapi.testing import BackendApiTestServer, Pause, Reply

QUESTION = "Why is the sky blue?"
ANSWER = (
    "Sunlight scatters off the molecules of the air, and short (blue) wavelengths "
    "scatter far more than long (red) ones, so blue light reaches your eyes from "
    "every direction of the sky."
)
MESSAGES: List[Dict[str, Any]] = [
    {"role": "system", "content": "Answer in one short paragraph."},
    {"role": "user", "content": QUESTION},
]


WEATHER_QUESTION = "Do I need a coat in Paris today?"
WEATHER_ANSWER = "No coat needed: it is 21 C and clear in Paris."


def get_weather(city: str, unit: str = "celsius") -> str:
    """The current weather in a city.

    Args:
        city: the city's name, e.g. "Paris".
        unit: "celsius" or "fahrenheit".
    """
    print(f"  [tool] get_weather(city={city!r}, unit={unit!r}) runs")
    return json.dumps({"city": city, "temperature": 21, "unit": unit, "sky": "clear"})


def scripted_reply() -> Reply:
    """A realistic answer: provider, reasoning, tokens arriving over time, usage."""
    answer = Reply.answer(ANSWER, reasoning="Rayleigh scattering, 1/wavelength^4.", title="Sky")
    paced: List[Any] = []
    for event in answer.events:
        paced.append(event)
        if isinstance(event, dict) and event.get("type") == "content":
            paced.append(Pause(0.02))  # let the tokens visibly stream in
    return Reply(events=paced)


def show(event: RawResponse) -> None:
    """Print one event the way a chat program would."""
    if event.type == "provider":
        print(f"[{event.provider['label']} / {event.provider['model']}]")
    elif event.type == "reasoning" and event.get("token"):
        print(f"  (thinking: {event.token})")
    elif event.type == "content":
        print(event.content, end="", flush=True)
    elif event.type == "title":
        print(f"\n  title: {event.title}", end="")
    elif event.type == "usage":
        usage = event.usage
        print(
            f"\n  usage: {usage['prompt_tokens']} prompt + "
            f"{usage['completion_tokens']} completion tokens"
        )


def blocking(url: str) -> None:
    """The blocking client: no event loop needed (scripts, notebooks)."""
    print("== BackendApiClient (requests) ==")
    with BackendApiClient(url, api_key="demo-key") as client:
        for event in client.create("scripted-1", MESSAGES, provider="ScriptedProvider"):
            show(event)


async def concurrent(url: str) -> None:
    """The async client: the same call, same events."""
    print("== AsyncBackendApiClient (aiohttp) ==")
    async with AsyncBackendApiClient(url, api_key="demo-key") as client:
        stream = client.create("scripted-1", MESSAGES, provider="ScriptedProvider")
        async with stream:
            async for event in stream:
                show(event)


def tool_call(server: BackendApiTestServer) -> None:
    """A Python function as a tool: the chat runs it when the model asks, then answers."""
    print("== Chat with a tool: a Python function answers the model's call ==")
    server.reply(
        Reply.tool_calls([{"name": "get_weather", "arguments": {"city": "Paris"}}], pieces=True),
        Reply.answer(WEATHER_ANSWER),
    )
    with BackendApiClient(server.url, api_key="demo-key") as client:
        chat = Chat(client, "scripted-1", provider="ScriptedProvider", tools=[get_weather])
        print(f"> {WEATHER_QUESTION}")
        answer = chat.ask(WEATHER_QUESTION)
        print(answer.text)
    sent = server.requests[-2].json["tools"][0]["function"]
    print(f"  the tool as sent: {sent['name']}({', '.join(sent['parameters']['properties'])})")
    print(f"  the chat now holds: {' -> '.join(m['role'] for m in chat.messages)}")


def command_line() -> int:
    """The CLI: ``backendapi serve-test`` serves, ``backendapi chat`` asks."""
    print("== backendapi chat (the command line) ==")
    # The server's stderr greeting ("serving scripted answers...") would land in the
    # middle of the transcript below; it goes to a file, shown only if the server fails.
    with tempfile.TemporaryFile(mode="w+") as greeting:
        return _chat_and_logs(greeting)


def _chat_and_logs(greeting: IO[str]) -> int:
    cli = [sys.executable, "-m", "backendapi"]
    server = subprocess.Popen(
        [*cli, "serve-test", "--text", ANSWER],
        stdout=subprocess.PIPE,
        stderr=greeting,
        text=True,
    )
    # The CLI records every exchange in a database: here a temporary one, not yours.
    home = tempfile.mkdtemp(prefix="backendapi-demo-")
    env = {**os.environ, "BACKENDAPI_HOME": home}
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()  # serve-test prints its URL first
        if not url:
            greeting.seek(0)
            print(f"backendapi serve-test failed:\n{greeting.read()}", file=sys.stderr)
            return 1
        print(f"$ backendapi chat --base-url {url} {QUESTION!r}", flush=True)
        # No stdin: text piped to the CLI would become part of the prompt.
        code = subprocess.call(
            [*cli, "chat", "--base-url", url, QUESTION],
            stdin=subprocess.DEVNULL,
            env=env,
            timeout=60,
        )
        print("$ backendapi logs --short", flush=True)
        logs = [*cli, "logs", "--short"]
        return code or subprocess.call(logs, stdin=subprocess.DEVNULL, env=env, timeout=60)
    finally:
        shutil.rmtree(home, ignore_errors=True)
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
        server.stdout.close()  # type: ignore[union-attr]


def main() -> int:
    with BackendApiTestServer() as server:
        server.default_reply = scripted_reply()
        print(f"test server at {server.url}\n> {QUESTION}\n")
        blocking(server.url)
        print()
        asyncio.run(concurrent(server.url))
        print(f"\nthe server answered {len(server.requests)} requests\n")
        tool_call(server)
        print()
    return command_line()


if __name__ == "__main__":
    sys.exit(main())
