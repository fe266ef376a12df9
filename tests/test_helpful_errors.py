"""Errors that say what to do (issue 15, point 4).

* a bad ``BACKENDAPI_BASE_URL`` is refused naming the variable, and the URL to write;
* a base URL copied with ``/backend-api/v2`` is the server's root without it (the
  client adds that path itself), any other ``/backend-api/`` path is refused naming
  the root;
* ``await client.create(...)`` (openai's habit) gives the stream, its request sent.
"""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path
from typing import Any, Iterator, List

import pytest
from clients import MESSAGES, TEST_TIMEOUT, call, client_class

from backendapi import (
    APIStatusError,
    AsyncBackendApiClient,
    AsyncChat,
    AsyncStream,
    BackendApiClient,
    InvalidInputError,
    Stream,
)
from backendapi._cli import main
from backendapi.testing import BackendApiTestServer, Reply

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def server() -> Iterator[BackendApiTestServer]:
    """One test server for the module; each test scripts its replies."""
    with BackendApiTestServer() as running:
        running.default_reply = Reply.answer("Hello there")
        yield running


# -- the variable's name in an environment error ----------------------------------------------


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_bad_base_url_from_the_environment_names_the_variable(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BACKENDAPI_BASE_URL", "localhost:8080")
    with pytest.raises(InvalidInputError) as caught:
        call(kind, None, "version")
    message = str(caught.value)
    assert message.startswith("BACKENDAPI_BASE_URL must start with http:// or https://")
    assert "(write 'http://localhost:8080')" in message


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_the_same_url_given_as_an_argument_names_the_argument(kind: str) -> None:
    with pytest.raises(InvalidInputError, match=r"^base_url must start with http://") as caught:
        client_class(kind)("localhost:8080")
    assert "write 'http://localhost:8080'" in str(caught.value)


def test_the_cli_reports_the_variable_by_name(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BACKENDAPI_BASE_URL", "localhost:8080")
    assert main(["version"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("backendapi: error: BACKENDAPI_BASE_URL must start with http://")
    assert "http://localhost:8080" in err


def test_a_password_in_the_variable_is_masked_in_the_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BACKENDAPI_BASE_URL", "me:hunter22@localhost:8080")
    with pytest.raises(InvalidInputError) as caught:
        BackendApiClient()
    assert "hunter22" not in str(caught.value)
    assert "BACKENDAPI_BASE_URL" in str(caught.value)


# -- a base URL ending in /backend-api/v2 -------------------------------------------------------


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("suffix", ["/backend-api/v2", "/backend-api/v2/"])
def test_a_base_url_with_the_api_path_reaches_the_server(
    kind: str, suffix: str, server: BackendApiTestServer
) -> None:
    url = server.url + suffix
    answer = call(kind, url, "complete", "m", MESSAGES)
    assert answer.text == "Hello there"  # not a 404 for /backend-api/v2/backend-api/v2/...
    assert call(kind, url, "version")["version"]
    assert client_class(kind)(url).base_url == server.url


def test_the_api_path_is_removed_after_a_path_prefix_of_the_server() -> None:
    client = BackendApiClient("https://me:pw@proxy.lan/g4f/backend-api/v2")
    assert client.base_url == "https://proxy.lan/g4f"


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize(
    ("url", "root"),
    [
        ("http://h:8080/backend-api/v2/conversation", "http://h:8080"),
        ("http://h:8080/backend-api/v1", "http://h:8080"),
        ("http://h:8080/backend-api", "http://h:8080"),
        ("http://h/g4f/backend-api/v2/models/", "http://h/g4f"),
    ],
)
def test_another_api_path_is_refused_naming_the_root(kind: str, url: str, root: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        client_class(kind)(url)
    message = str(caught.value)
    assert message.startswith("base_url is the server's root")
    assert message.endswith(f"write {root!r}")


def test_the_variable_is_named_when_it_holds_a_route(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKENDAPI_BASE_URL", "http://h:8080/backend-api/v2/conversation")
    with pytest.raises(InvalidInputError, match=r"^BACKENDAPI_BASE_URL is the server's root"):
        AsyncBackendApiClient()


# -- await client.create(...) -------------------------------------------------------------------


def test_awaiting_create_sends_the_request_and_gives_the_stream(
    server: BackendApiTestServer,
) -> None:
    async def run() -> Any:
        async with AsyncBackendApiClient(server.url, timeout=TEST_TIMEOUT) as client:
            stream = await client.create("m", MESSAGES)
            sent = len(server.requests)  # the request went out at the await
            status = stream.status_code
            text = "".join([e.content async for e in stream if e.type == "content"])
            return stream, sent, status, text

    before = len(server.requests)
    stream, sent, status, text = asyncio.run(run())
    assert isinstance(stream, AsyncStream)
    assert (sent - before, status, text) == (1, 200, "Hello there")
    assert stream.closed


def test_an_http_error_is_raised_at_the_await(server: BackendApiTestServer) -> None:
    async def run() -> None:
        async with AsyncBackendApiClient(server.url, timeout=TEST_TIMEOUT) as client:
            await client.create("m", MESSAGES, provider="NoSuchProvider")

    with pytest.raises(APIStatusError) as caught:
        asyncio.run(run())
    assert caught.value.status_code == 404


def test_an_awaited_stream_still_works_in_async_with(server: BackendApiTestServer) -> None:
    async def run() -> List[str]:
        async with AsyncBackendApiClient(server.url, timeout=TEST_TIMEOUT) as client:
            async with await client.create("m", MESSAGES) as stream:
                texts = [e.content async for e in stream if e.type == "content"]
            assert stream.closed
            return texts

    assert "".join(asyncio.run(run())) == "Hello there"


def test_awaiting_a_chat_turn_gives_its_stream_and_keeps_the_turn(
    server: BackendApiTestServer,
) -> None:
    async def run() -> AsyncChat:
        async with AsyncBackendApiClient(server.url, timeout=TEST_TIMEOUT) as client:
            chat = AsyncChat(client, "m")
            stream = await chat.send("Hi")
            await stream.collect()
            return chat

    chat = asyncio.run(run())
    assert chat.messages[-1] == {"role": "assistant", "content": "Hello there"}


def test_the_blocking_stream_is_not_awaitable(server: BackendApiTestServer) -> None:
    # Awaiting it cannot work (nothing to run it on): Python's own TypeError names the
    # class, and nothing (asyncio, a framework) takes it for an awaitable.
    with BackendApiClient(server.url, timeout=TEST_TIMEOUT) as client:
        stream = client.create("m", MESSAGES)
        assert not inspect.isawaitable(stream)
        assert not hasattr(Stream, "__await__")

        async def run() -> None:
            await stream  # type: ignore[misc]

        with pytest.raises(TypeError, match="Stream"):
            asyncio.run(run())
        stream.close()


def test_unasync_leaves_the_async_only_block_out_of_the_blocking_client() -> None:
    source = (ROOT / "backendapi" / "_async" / "client.py").read_text(encoding="utf-8")
    generated = (ROOT / "backendapi" / "_sync" / "client.py").read_text(encoding="utf-8")
    assert "def __await__" in source
    assert "__await__" not in generated
    assert "unasync:" not in generated
