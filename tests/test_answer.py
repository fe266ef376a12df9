"""`Answer`: what a turn produced, gathered from its events; `stream.answer`; `complete()`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest
from clients import MESSAGES, TEST_TIMEOUT, call

from backendapi import (
    Answer,
    BackendApiClient,
    RawResponse,
    StreamError,
    decode,
)
from backendapi._core.request import PreparedRequest
from backendapi._core.stream import StreamCore
from backendapi.testing import BackendApiTestServer, Reply

DATA = Path(__file__).parent / "data"
TRANSCRIPT = DATA / "g4f-8.8.6-conversation.sse"
TEXT = "Hello, w\u00f6rld \U0001f30d\u2028!"
STATE = {"ScriptedProvider": {"conversation_id": "c-123", "message_id": "m-1"}}
IMAGE = "https://example.com/cat.png"
AUDIO = "https://example.com/hello.mp3"
# What g4f sends for generated media: markdown in `content`, the links in `urls`.
MEDIA_EVENTS = [
    {"type": "content", "content": f"\n![a cat]({IMAGE})", "urls": [IMAGE], "alt": "a cat"},
    {"type": "content", "content": "", "urls": AUDIO},
]


def transcript() -> List[RawResponse]:
    """The real g4f 8.8.6 transcript, decoded."""
    return decode(TRANSCRIPT.read_bytes())


def realistic_events() -> List[RawResponse]:
    """The transcript with generated media and a second provider's state before `usage`."""
    events = transcript()
    usage_at = [event.type for event in events].index("usage")
    extra = [RawResponse(event) for event in MEDIA_EVENTS]
    extra.append(RawResponse({"type": "conversation", "conversation": {"Other": {"id": "o-1"}}}))
    extra.append(RawResponse({"type": "log", "log": "a debug line"}))
    extra.append(RawResponse({"type": "brand-new-type", "whatever": 1}))
    return events[:usage_at] + extra + events[usage_at:]


def check_transcript_answer(answer: Answer, events: int) -> None:
    assert answer.text == TEXT
    assert str(answer) == TEXT
    assert answer.reasoning == "thinking about it"
    assert answer.provider == {
        "name": "ScriptedProvider",
        "url": "http://127.0.0.1",
        "label": "ScriptedProvider",
        "model": "scripted-1",
    }
    assert answer.provider_name == "ScriptedProvider"
    assert answer.model == "scripted-1"
    assert answer.usage == {"prompt_tokens": 3, "completion_tokens": 8, "total_tokens": 11}
    assert answer.finish_reason == "stop"
    assert answer.title == "Greeting"
    assert answer.suggestions == ["And then?"]
    assert answer.conversation == STATE
    assert answer.events == events


def test_answer_gathers_a_real_transcript() -> None:
    events = transcript()
    answer = Answer()
    for event in events:
        answer.add(event)
    check_transcript_answer(answer, len(events))
    assert answer.media == []


def test_answer_gathers_media_urls_and_merges_conversations() -> None:
    events = realistic_events()
    answer = Answer()
    for event in events:
        answer.add(event)
    assert answer.media == [IMAGE, AUDIO]
    assert answer.text == TEXT + f"\n![a cat]({IMAGE})"
    assert answer.conversation == {**STATE, "Other": {"id": "o-1"}}
    assert answer.events == len(events)  # unknown types are counted, nothing else
    assert answer.usage is not None and answer.title == "Greeting"


def test_later_conversation_state_of_a_provider_replaces_the_earlier_one() -> None:
    answer = Answer()
    answer.add(RawResponse({"type": "conversation", "conversation": {"A": {"id": 1}}}))
    answer.add(RawResponse({"type": "conversation", "conversation": {"B": {"id": 2}}}))
    answer.add(RawResponse({"type": "conversation", "conversation": {"A": {"id": 3}}}))
    assert answer.conversation == {"A": {"id": 3}, "B": {"id": 2}}


def test_model_comes_from_usage_over_provider() -> None:
    answer = Answer()
    answer.add(RawResponse({"type": "provider", "provider": {"name": "P", "model": "asked"}}))
    assert answer.model == "asked"
    answer.add(RawResponse({"type": "usage", "usage": {"total_tokens": 1}, "model": "served"}))
    assert answer.model == "served"


def test_empty_answer() -> None:
    answer = Answer()
    assert (answer.text, answer.reasoning, answer.provider_name, answer.events) == ("", "", None, 0)
    assert (answer.usage, answer.finish_reason, answer.title, answer.model) == (None,) * 4
    assert (answer.suggestions, answer.conversation, answer.media) == ([], {}, [])


def test_repr_is_short_and_readable() -> None:
    answer = Answer()
    answer.add(RawResponse({"type": "content", "content": "x" * 500}))
    text = repr(answer)
    assert text.startswith("Answer(text='xxx")
    assert len(text) < 200


# Through the clients


def transcript_reply(**options: Any) -> Reply:
    return Reply([event.get_dict() for event in realistic_events()], **options)


def stream_with_snapshots(
    kind: str, url: str, snapshot: Callable[[Any, RawResponse], Any]
) -> List[Any]:
    """Iterate one stream; call `snapshot(stream, event)` at every event; return the results."""
    results: List[Any] = []
    if kind == "sync":
        with BackendApiClient(url, timeout=TEST_TIMEOUT) as client:
            stream = client.create("scripted-1", MESSAGES)
            for event in stream:
                results.append(snapshot(stream, event))
            results.append(snapshot(stream, None))
        return results

    async def main() -> None:
        from backendapi import AsyncBackendApiClient

        async with AsyncBackendApiClient(url, timeout=TEST_TIMEOUT) as client:
            stream = client.create("scripted-1", MESSAGES)
            async for event in stream:
                results.append(snapshot(stream, event))
            results.append(snapshot(stream, None))

    asyncio.run(main())
    return results


@pytest.mark.parametrize("framing", ["sse", "ndjson"])
def test_stream_answer_is_live_during_iteration(
    client_kind: str, framing: str, backendapi_server: BackendApiTestServer
) -> None:
    backendapi_server.reply(transcript_reply(framing=framing))

    def snapshot(stream: Any, event: Any) -> Dict[str, Any]:
        answer = stream.answer
        return {
            "type": None if event is None else event.type,
            "text": answer.text,
            "title": answer.title,
            "events": answer.events,
            "same": answer is stream.answer,
        }

    snapshots = stream_with_snapshots(client_kind, backendapi_server.url, snapshot)
    events = realistic_events()
    # At each event, the answer already holds it and everything before it.
    text = ""
    for index, (event, seen) in enumerate(zip(events, snapshots)):
        if event.type == "content":
            text += event.content
        assert (seen["type"], seen["text"], seen["events"]) == (event.type, text, index + 1)
        assert seen["same"]
    assert [seen["title"] for seen in snapshots].index("Greeting") == [
        event.type for event in events
    ].index("title")
    assert snapshots[-1]["events"] == len(events)
    assert snapshots[-1]["text"] == TEXT + f"\n![a cat]({IMAGE})"


def complete(kind: str, url: str, *args: Any, **kwargs: Any) -> Answer:
    answer: Answer = call(kind, url, "complete", *args, **kwargs)
    return answer


def test_complete_returns_the_whole_answer(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    backendapi_server.reply(transcript_reply())
    answer = complete(
        client_kind,
        backendapi_server.url,
        "scripted-1",
        MESSAGES,
        None,
        "key",
        provider="ScriptedProvider",
    )
    assert isinstance(answer, Answer)
    assert answer.text == TEXT + f"\n![a cat]({IMAGE})"
    assert answer.media == [IMAGE, AUDIO]
    assert answer.conversation == {**STATE, "Other": {"id": "o-1"}}
    assert (answer.model, answer.provider_name, answer.finish_reason) == (
        "scripted-1",
        "ScriptedProvider",
        "stop",
    )
    assert (answer.title, answer.suggestions) == ("Greeting", ["And then?"])
    assert answer.usage == {"prompt_tokens": 3, "completion_tokens": 8, "total_tokens": 11}
    assert answer.reasoning == "thinking about it"
    assert answer.events == len(realistic_events())
    body = backendapi_server.requests[0].json
    assert body == {
        "model": "scripted-1",
        "messages": MESSAGES,
        "media": None,
        "api_key": "key",
        "provider": "ScriptedProvider",
    }


def test_complete_of_the_plain_transcript(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    backendapi_server.reply(Reply([event.get_dict() for event in transcript()]))
    check_transcript_answer(
        complete(client_kind, backendapi_server.url, "scripted-1", MESSAGES), len(transcript())
    )


def test_complete_raises_at_an_error_event(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    backendapi_server.reply(
        Reply(
            [
                {"type": "content", "content": "partial"},
                {"type": "error", "error": "RateLimitError", "message": "slow down"},
            ]
        )
    )
    with pytest.raises(StreamError, match="slow down") as caught:
        complete(client_kind, backendapi_server.url, "scripted-1", MESSAGES)
    assert caught.value.error_type == "RateLimitError"


@pytest.mark.parametrize("framing", ["sse", "ndjson"])
def test_a_held_answer_follows_every_event_of_one_network_read(
    client_kind: str, framing: str, backendapi_server: BackendApiTestServer
) -> None:
    """Events that arrive together are counted lazily, yet the answer is never behind."""
    pieces = [f"<{i}>" for i in range(300)]
    backendapi_server.reply(
        Reply(
            [{"type": "content", "content": piece} for piece in pieces[:150]]
            + [{"type": "title", "title": "T"}]
            + [{"type": "content", "content": piece} for piece in pieces[150:]],
            framing=framing,
        )
    )
    held: List[Answer] = []

    def snapshot(stream: Any, event: Any) -> Any:
        if not held:
            held.append(stream.answer)
        return (held[0].events, held[0].text, held[0].title)

    snapshots = stream_with_snapshots(client_kind, backendapi_server.url, snapshot)
    texts = ["".join(pieces[:n]) for n in range(151)] + ["".join(pieces[:150])]
    texts += ["".join(pieces[: n + 1]) for n in range(150, 300)]
    expected = [
        (index + 1, text, None if index < 150 else "T") for index, text in enumerate(texts[1:])
    ]
    assert snapshots[:-1] == expected
    assert snapshots[-1] == (301, "".join(pieces), "T")


def test_an_answer_left_mid_batch_holds_exactly_the_events_handed_out(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    backendapi_server.reply(Reply([{"type": "content", "content": str(i)} for i in range(500)]))

    async def read_async(url: str) -> Answer:
        from backendapi import AsyncBackendApiClient

        async with AsyncBackendApiClient(url, timeout=TEST_TIMEOUT) as client:
            stream = client.create("scripted-1", MESSAGES)
            async for event in stream:
                if event.content == "41":
                    break
            await stream.aclose()
            return stream.answer

    if client_kind == "sync":
        with BackendApiClient(backendapi_server.url, timeout=TEST_TIMEOUT) as client:
            stream = client.create("scripted-1", MESSAGES)
            for event in stream:
                if event.content == "41":
                    break
            stream.close()
            answer = stream.answer
            assert list(stream) == []  # nothing after close
    else:
        answer = asyncio.run(read_async(backendapi_server.url))
    assert answer.events == 42
    assert answer.text == "".join(str(i) for i in range(42))


def test_an_event_type_that_is_no_string_reads_as_one(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    backendapi_server.reply(
        Reply(
            [
                {"type": 7, "value": 1},
                {"type": "content", "content": "a"},
                {"type": None},
                {"type": "content", "content": "b"},
            ]
        )
    )
    types = stream_with_snapshots(
        client_kind, backendapi_server.url, lambda stream, event: event and event.type
    )
    assert types == ["7", "content", "None", "content", None]


def test_loops_and_next_over_one_stream_share_its_position(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    """Leaving a loop keeps the stream open where it was; the next loop goes on from there."""
    backendapi_server.reply(Reply([{"type": "content", "content": str(i)} for i in range(300)]))

    async def read_async(url: str) -> List[Any]:
        from backendapi import AsyncBackendApiClient

        seen: List[Any] = []
        async with AsyncBackendApiClient(url, timeout=TEST_TIMEOUT) as client:
            stream = client.create("scripted-1", MESSAGES)
            async for event in stream:
                seen.append(event.content)
                if len(seen) == 100:
                    break
            seen.append((await stream.__anext__()).content)
            seen.append(stream.closed)
            async for event in stream:
                seen.append(event.content)
            seen.append((stream.closed, stream.answer.events))
        return seen

    if client_kind == "sync":
        seen: List[Any] = []
        with BackendApiClient(backendapi_server.url, timeout=TEST_TIMEOUT) as client:
            stream = client.create("scripted-1", MESSAGES)
            for event in stream:
                seen.append(event.content)
                if len(seen) == 100:
                    break
            seen.append(next(stream).content)
            seen.append(stream.closed)
            seen.extend(event.content for event in stream)
            seen.append((stream.closed, stream.answer.events))
    else:
        seen = asyncio.run(read_async(backendapi_server.url))
    contents = [str(i) for i in range(300)]
    assert seen == [*contents[:101], False, *contents[101:], (True, 300)]


# A stream reading one event per network read takes a plain content event's text into
# the answer at once (StreamCore's batch of contents); an event with urls or audio goes
# one at a time through Answer.add. Either way the answer is what add() makes of each.
ONE_PER_READ_EVENTS: List[Dict[str, Any]] = [
    {"type": "content", "content": "plain "},
    {"type": "content", "content": "with a timestamp ", "sent": 1764755000.5},
    {"type": "content", "content": "an image ", "urls": [IMAGE], "sent": 1.0},
    {"type": "content", "content": "", "urls": AUDIO},
    {"type": "content", "content": "", "data": "data:audio/mpeg;base64,AAAA", "sent": 2.0},
    {"type": "content", "content": 5, "sent": 3.0},
    {"type": "content", "content": None, "note": "x"},
    {"type": "content", "sent": 4.0},
    {"type": "content", "content": "end"},
]


@pytest.mark.parametrize("framing", ["sse", "ndjson"])
def test_an_answer_read_one_event_per_read_is_what_add_makes_of_each(framing: str) -> None:
    core = StreamCore(PreparedRequest("POST", "http://127.0.0.1/"), 1 << 20, ())
    handed: List[Dict[str, Any]] = []
    for data in ONE_PER_READ_EVENTS:
        line = json.dumps(data).encode()
        event = core.absorb(b"data: " + line + b"\n\n" if framing == "sse" else line + b"\n")
        while event is not None:
            handed.append(event.get_dict())
            event = core.next_event()
    assert handed == ONE_PER_READ_EVENTS

    expected = Answer()
    for data in ONE_PER_READ_EVENTS:
        expected.add(RawResponse(**data))
    answer = core.answer
    assert answer.text == expected.text == "plain with a timestamp an image end"
    assert (answer.media, answer.audio, answer.events) == (
        expected.media,
        expected.audio,
        expected.events,
    )
    assert answer.media == [IMAGE, AUDIO]
    assert answer.audio == ["data:audio/mpeg;base64,AAAA"]
