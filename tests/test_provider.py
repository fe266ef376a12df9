"""The seed's provider class, `BackendApi`, run the way the design note runs it."""

from __future__ import annotations

import asyncio
import copy
import gc
import logging
from typing import Any, AsyncIterator, List, Optional, Type

import pytest

from backendapi import BackendApi, InvalidInputError, RawResponse
from backendapi.testing import BackendApiTestServer, Reply

MESSAGES = [{"role": "user", "content": "Hello, world!"}]
ERROR_REPLY = Reply(
    [
        {"type": "content", "content": "partial"},
        {"type": "error", "error": "RateLimitError", "message": "slow down"},
        {"type": "content", "content": "never sent on: the server ends here"},
    ]
)
AUTH_REPLY = Reply([{"type": "auth", "auth": "MissingAuthError", "message": "log in first"}])
PNG = b"\x89PNG\r\n\x1a\n" + bytes(16)


def local(url: str, **attributes: Any) -> Type[BackendApi]:
    """``class Local(BackendApi): url = ...`` plus any other class attribute."""
    return type("Local", (BackendApi,), {"url": url, **attributes})


def collect_async(cls: Type[BackendApi], *args: Any, **kwargs: Any) -> List[RawResponse]:
    async def main() -> List[RawResponse]:
        generator = cls.create_async_generator(*args, **kwargs)
        return [response async for response in generator]

    return asyncio.run(main())


def collect_sync(cls: Type[BackendApi], *args: Any, **kwargs: Any) -> List[RawResponse]:
    return list(cls.create_completion(*args, **kwargs))


COLLECTORS = {"create_async_generator": collect_async, "create_completion": collect_sync}


def test_the_seed_example_runs_unchanged(
    backendapi_server: BackendApiTestServer, capsys: pytest.CaptureFixture[str]
) -> None:
    class Local(BackendApi):
        url = backendapi_server.url

    backendapi_server.reply(Reply.answer("Hi there, world"))

    # The design note's example, word for word, with Local for BackendApi.
    model = "gpt-3.5-turbo"
    messages = [{"role": "user", "content": "Hello, world!"}]
    media = None
    api_key = "your_api_key"
    kwargs: dict[str, Any] = {}

    async def main() -> None:
        async for response in Local.create_async_generator(
            model, messages, media, api_key, **kwargs
        ):
            print(response)

    asyncio.run(main())

    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("RawResponse(type='provider'")
    contents = [line for line in printed if line.startswith("RawResponse(type='content'")]
    assert contents == [
        f"RawResponse(type='content', content={token!r})"
        for token in ["Hi", " ", "there", ",", " ", "world"]
    ]
    assert "type='finish'" in printed[-1]
    assert "your_api_key" not in "\n".join(printed)
    assert backendapi_server.requests[0].json == {
        "model": model,
        "messages": messages,
        "media": None,
        "api_key": api_key,
    }
    assert backendapi_server.requests[0].headers["Accept"] == "text/event-stream"


@pytest.mark.parametrize("method", sorted(COLLECTORS))
def test_events_are_yielded_as_raw_responses(
    backendapi_server: BackendApiTestServer, method: str
) -> None:
    backendapi_server.add_provider("P")
    backendapi_server.reply(Reply.answer("Hi", title="Greeting"))
    responses = COLLECTORS[method](
        local(backendapi_server.url), "m", MESSAGES, None, None, provider="P"
    )
    assert all(isinstance(response, RawResponse) for response in responses)
    types = [response.type for response in responses]
    assert types == ["provider", "content", "title", "usage", "finish"]
    assert responses[1].content == "Hi"
    assert responses[2].get_dict() == {"type": "title", "title": "Greeting"}
    assert backendapi_server.requests[0].json["provider"] == "P"


def test_both_methods_yield_the_same_events(backendapi_server: BackendApiTestServer) -> None:
    backendapi_server.default_reply = Reply.answer("Same answer", conversation={"id": "c1"})
    provider = local(backendapi_server.url)
    assert collect_async(provider, "m", MESSAGES) == collect_sync(provider, "m", MESSAGES)


@pytest.mark.parametrize("method", sorted(COLLECTORS))
def test_headers_attribute_reaches_the_request(
    backendapi_server: BackendApiTestServer, method: str
) -> None:
    provider = local(
        backendapi_server.url, headers={"X-Custom": "yes", "Authorization": "Bearer t"}
    )
    COLLECTORS[method](provider, "m", MESSAGES)
    headers = backendapi_server.requests[0].headers
    assert (headers["X-Custom"], headers["Authorization"]) == ("yes", "Bearer t")


@pytest.mark.parametrize("method", sorted(COLLECTORS))
def test_ssl_false_is_accepted(backendapi_server: BackendApiTestServer, method: str) -> None:
    # Plain http has nothing to verify; the point is that the client takes the attribute.
    responses = COLLECTORS[method](local(backendapi_server.url, ssl=False), "m", MESSAGES)
    assert responses[-1].type == "finish"
    assert len(backendapi_server.requests) == 1


@pytest.mark.parametrize("method", sorted(COLLECTORS))
def test_ssl_attribute_reaches_the_client(
    backendapi_server: BackendApiTestServer, method: str
) -> None:
    # The client gets the attribute as it is: a CA bundle that does not exist is refused.
    missing = local(backendapi_server.url, ssl="/nonexistent/ca-bundle.pem")
    with pytest.raises(InvalidInputError, match=r"ca-bundle\.pem"):
        COLLECTORS[method](missing, "m", MESSAGES)
    assert backendapi_server.requests == []
    # The refused client must go away quietly (an error in its __del__ fails the test here).
    gc.collect()


@pytest.mark.parametrize("method", sorted(COLLECTORS))
@pytest.mark.parametrize(
    ("reply", "kind", "message"),
    [(ERROR_REPLY, "error", "slow down"), (AUTH_REPLY, "auth", "log in first")],
)
def test_error_events_are_yielded_last_not_raised(
    backendapi_server: BackendApiTestServer, method: str, reply: Reply, kind: str, message: str
) -> None:
    backendapi_server.reply(reply)
    responses = COLLECTORS[method](local(backendapi_server.url), "m", MESSAGES)
    assert responses[-1].type == kind
    assert responses[-1].message == message
    assert [response.type for response in responses[:-1]] == (
        ["content"] if kind == "error" else []
    )


@pytest.mark.parametrize("method", sorted(COLLECTORS))
def test_media_list_is_not_modified(backendapi_server: BackendApiTestServer, method: str) -> None:
    media = [(PNG, "a.png"), ("https://example.com/b.jpg", None)]
    snapshot = copy.deepcopy(media)
    COLLECTORS[method](local(backendapi_server.url), "m", MESSAGES, media)
    assert media == snapshot
    sent = backendapi_server.requests[0].json["media"]
    assert sent[0][0].startswith("data:image/png;base64,")
    assert sent[0][1] == "a.png"
    assert sent[1] == ["https://example.com/b.jpg", None]


@pytest.mark.parametrize("method", sorted(COLLECTORS))
def test_api_key_is_never_logged(
    backendapi_server: BackendApiTestServer, method: str, caplog: pytest.LogCaptureFixture
) -> None:
    key = "sk-test-0123456789abcdef"
    backendapi_server.reply(ERROR_REPLY)  # the error path logs too
    caplog.set_level(logging.DEBUG)
    COLLECTORS[method](local(backendapi_server.url), "m", MESSAGES, None, key)
    COLLECTORS[method](local(backendapi_server.url), "m", MESSAGES, None, key)
    assert backendapi_server.requests[0].json["api_key"] == key
    records = [record for record in caplog.records if record.name.startswith("backendapi")]
    assert records, "the SDK logged nothing at DEBUG: this test would prove nothing"
    for record in caplog.records:
        assert key not in record.getMessage()
        assert key not in repr(record.args)
    assert key not in caplog.text


@pytest.mark.parametrize("method", sorted(COLLECTORS))
@pytest.mark.parametrize("url", [None, ""])
def test_unset_url_gives_a_clear_error(method: str, url: Optional[str]) -> None:
    provider: Type[BackendApi] = BackendApi if url is None else local(url)
    with pytest.raises(InvalidInputError, match=r"url is not set"):
        COLLECTORS[method](provider, "m", MESSAGES)


def test_create_async_generator_is_an_async_generator(
    backendapi_server: BackendApiTestServer,
) -> None:
    generator = local(backendapi_server.url).create_async_generator("m", MESSAGES)
    assert isinstance(generator, AsyncIterator)

    async def first_then_close() -> RawResponse:
        try:
            return await generator.__anext__()
        finally:
            await generator.aclose()  # type: ignore[attr-defined]

    assert asyncio.run(first_then_close()).type == "provider"
