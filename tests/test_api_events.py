"""Every event g4f 8.8.6 sends, gathered by `Answer`; debug events kept only when asked for.

`G4F_EVENTS` holds one event of each shape g4f 8.8.6's conversation route sends, built as
its ``Api._format_json(type, content, **kwargs)`` builds them
(``{"type": type, type: content, **kwargs}``), one for each call in
``Api._create_response_stream`` and the response classes behind them
(``g4f/providers/response.py``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Dict, List

import pytest
from clients import run_stream
from test_answer import stream_with_snapshots

from backendapi import Answer, BackendApiClient, InvalidInputError, RawResponse
from backendapi.testing import BackendApiTestServer, Reply

KEY = "sk-events-5f3a9c1e7b2d"
README = Path(__file__).parent.parent / "README.md"

PROVIDER = {"name": "OpenaiChat", "url": "https://chatgpt.com", "label": "OpenAI", "model": "o3"}
PARAMETERS = {"model": "o3", "temperature": 0.5, "api_key": KEY}
SYNTHESIZE = {"provider": "OpenaiChat", "data": {"conversation_id": "c1", "message_id": "m1"}}

G4F_EVENTS: List[Dict[str, Any]] = [
    # handle_provider(), then provider_handler.get_parameters(as_json=True)
    {"type": "provider", "provider": PROVIDER},
    {"type": "parameters", "parameters": PARAMETERS},
    # RequestLogin and PreviewResponse: to_string(); ImagePreview: with urls and alt
    {"type": "preview", "preview": "[Login to OpenAI](https://chatgpt.com/login)\n\n"},
    {
        "type": "preview",
        "preview": "![a cat](/media/cat-small.jpg)",
        "urls": ["/media/cat-small.jpg"],
        "alt": "a cat",
    },
    # Reasoning.get_dict(): its four shapes
    {"type": "reasoning", "token": "Let me think"},
    {"type": "reasoning", "token": " more", "status": "Thinking"},
    {"type": "reasoning", "label": "Searching the web", "status": "3 results"},
    {"type": "reasoning", "token": "", "status": "Done", "is_thinking": "</think>"},
    # JsonConversation, under the provider's name
    {"type": "conversation", "conversation": {"OpenaiChat": {"conversation_id": "c1"}}},
    # an Exception the provider yielded, not raised: a warning
    {
        "type": "message",
        "message": f"RateLimitError: retrying with key {KEY}",
        "error": "RateLimitError",
    },
    # plain text, a MediaResponse (urls, alt) and an AudioResponse (data)
    {"type": "content", "content": "Here you are"},
    {
        "type": "content",
        "content": "\n![a cat](/media/cat.jpg)",
        "urls": ["/media/cat.jpg"],
        "alt": "a cat",
    },
    {
        "type": "content",
        "content": '<audio controls src="/media/hi.mp3"></audio>',
        "data": "/media/hi.mp3",
    },
    {"type": "synthesize", "synthesize": SYNTHESIZE},
    {"type": "title", "title": "Cats"},
    {"type": "parameters", "parameters": {"temperature": 0.7, "max_tokens": 100}},
    {"type": "finish", "finish": {"reason": "stop"}},
    {
        "type": "usage",
        "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
        "model": "o3",
        "provider": "OpenaiChat",
    },
    {"type": "suggestions", "suggestions": ["More cats?"]},
    # DebugResponse, and debug.logs at the end
    {"type": "log", "log": f"Read key {KEY} from the environment"},
    {"type": "continue", "continue": "…and then"},
    {"type": "variant", "variant": "![a dog](/media/dog.jpg)"},
    # a RawResponse chunk: any type, its fields as they are
    {"type": "sources", "sources": [{"url": "https://example.com", "title": "Example"}]},
    # JsonRequest, JsonResponse / PlainTextResponse, HeadersResponse: the provider's own HTTP
    {"type": "request", "request": {"model": "o3", "headers": {"Authorization": f"Bearer {KEY}"}}},
    {"type": "response", "response": {"id": "chatcmpl-1", "echo": KEY}},
    {"type": "response", "response": "data: [DONE]"},
    {"type": "headers", "headers": {"set-cookie": f"session={KEY}", "x-ratelimit-remaining": "9"}},
]

# Every event type g4f 8.8.6 emits on the conversation route (checked against
# g4f/gui/server/api.py, _create_response_stream and _format_json's callers).
G4F_EVENT_TYPES = [
    "provider",
    "parameters",
    "conversation",
    "message",
    "preview",
    "content",
    "synthesize",
    "title",
    "finish",
    "usage",
    "reasoning",
    "suggestions",
    "log",
    "continue",
    "variant",
    "tool_calls",
    "request",
    "response",
    "headers",
    "error",
    "auth",
]


def events() -> List[RawResponse]:
    return [RawResponse(event) for event in G4F_EVENTS]


def gathered(answer: Answer) -> Dict[str, Any]:
    """Every field of the answer, as plain values."""
    return {
        "text": answer.text,
        "reasoning": answer.reasoning,
        "reasoning_status": answer.reasoning_status,
        "reasoning_label": answer.reasoning_label,
        "provider": answer.provider,
        "parameters": answer.parameters,
        "previews": answer.previews,
        "preview_urls": answer.preview_urls,
        "media": answer.media,
        "audio": answer.audio,
        "synthesize": answer.synthesize,
        "warnings": answer.warnings,
        "logs": answer.logs,
        "title": answer.title,
        "finish_reason": answer.finish_reason,
        "usage": answer.usage,
        "model": answer.model,
        "suggestions": answer.suggestions,
        "conversation": answer.conversation,
        "continuation": answer.continuation,
        "variant": answer.variant,
        "other": [event.get_dict() for event in answer.other],
        "debug_events": [event.get_dict() for event in answer.debug_events],
        "events": answer.events,
    }


def expected(*, redacted: bool, debug: bool) -> Dict[str, Any]:
    def hide(value: Any) -> Any:
        return json.loads(json.dumps(value).replace(KEY, "***")) if redacted else value

    debug_events = [
        event for event in G4F_EVENTS if event["type"] in {"request", "response", "headers"}
    ]
    return {
        "text": (
            'Here you are\n![a cat](/media/cat.jpg)<audio controls src="/media/hi.mp3"></audio>'
        ),
        "reasoning": "Let me think more",
        "reasoning_status": "Done",
        "reasoning_label": "Searching the web",
        "provider": PROVIDER,
        "parameters": hide({**PARAMETERS, "temperature": 0.7, "max_tokens": 100}),
        "previews": [
            "[Login to OpenAI](https://chatgpt.com/login)\n\n",
            "![a cat](/media/cat-small.jpg)",
        ],
        "preview_urls": ["/media/cat-small.jpg"],
        "media": ["/media/cat.jpg"],
        "audio": ["/media/hi.mp3"],
        "synthesize": SYNTHESIZE,
        "warnings": hide(
            [{"message": f"RateLimitError: retrying with key {KEY}", "error": "RateLimitError"}]
        ),
        "logs": hide([f"Read key {KEY} from the environment"]),
        "title": "Cats",
        "finish_reason": "stop",
        "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
        "model": "o3",
        "suggestions": ["More cats?"],
        "conversation": {"OpenaiChat": {"conversation_id": "c1"}},
        "continuation": {"type": "continue", "continue": "…and then"},
        "variant": "![a dog](/media/dog.jpg)",
        "other": [
            {"type": "sources", "sources": [{"url": "https://example.com", "title": "Example"}]}
        ],
        "debug_events": hide(debug_events) if debug else [],
        "events": len(G4F_EVENTS),
    }


# -- Answer alone ----------------------------------------------------------------------------


def test_answer_gathers_every_event_g4f_sends() -> None:
    answer = Answer()
    for event in events():
        answer.add(event)
    assert gathered(answer) == expected(redacted=False, debug=False)


def test_debug_events_are_kept_only_when_asked_for() -> None:
    answer = Answer(keep_debug_events=True)
    for event in events():
        answer.add(event)
    assert gathered(answer) == expected(redacted=False, debug=True)


def test_an_unknown_event_is_kept_whole_and_in_order() -> None:
    answer = Answer()
    odd = [
        RawResponse({"type": "brand-new", "x": [1, {"y": 2}]}),
        RawResponse({"content": "no type at all"}),
        RawResponse({"type": "sources", "sources": []}),
        RawResponse({"type": ["not", "hashable"]}),
    ]
    for event in odd:
        answer.add(event)
    assert [event.get_dict() for event in answer.other] == [event.get_dict() for event in odd]
    assert (answer.text, answer.events) == ("", 4)


def test_a_content_event_without_text_still_gives_its_media_and_audio() -> None:
    answer = Answer()
    answer.add(RawResponse({"type": "content", "urls": "/media/a.png"}))
    answer.add(
        RawResponse({"type": "content", "content": None, "data": "data:audio/mpeg;base64,AA=="})
    )
    assert (answer.text, answer.media, answer.audio) == (
        "",
        ["/media/a.png"],
        ["data:audio/mpeg;base64,AA=="],
    )


def test_keep_debug_events_must_be_a_bool() -> None:
    with pytest.raises(InvalidInputError, match="keep_debug_events"):
        BackendApiClient("http://localhost:1", keep_debug_events="yes")  # type: ignore[arg-type]


# -- through both clients, from a real stream ---------------------------------------------


@pytest.mark.parametrize("keep", [False, True])
@pytest.mark.parametrize("framing", ["sse", "ndjson"])
def test_a_stream_gathers_every_event_with_the_key_hidden(
    client_kind: str, backendapi_server: BackendApiTestServer, keep: bool, framing: str
) -> None:
    backendapi_server.add_provider("OpenaiChat", ["o3"])
    backendapi_server.reply(Reply(G4F_EVENTS, framing=framing))
    result = run_stream(
        client_kind,
        backendapi_server.url,
        "o3",
        provider="OpenaiChat",
        client_options={"api_key": KEY, "keep_debug_events": keep},
    )
    assert result.error is None
    # The stream yields every event as the server sent it...
    assert result.events == G4F_EVENTS
    # ...and the answer keeps each where it belongs, the key hidden in the server's words.
    answer = result.stream.answer
    want = expected(redacted=True, debug=keep)
    # The media paths, given absolute against the client's base URL.
    for field in ("media", "preview_urls", "audio"):
        want[field] = [backendapi_server.url + path for path in want[field]]
    assert gathered(answer) == want
    assert KEY not in repr(gathered(answer))


def test_an_answer_read_mid_stream_holds_every_event_so_far(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    backendapi_server.reply(Reply(G4F_EVENTS, write_size=7))

    def snapshot(stream: Any, event: Any) -> Any:
        answer = stream.answer
        return (answer.events, len(answer.logs), len(answer.warnings), len(answer.other))

    seen = stream_with_snapshots(client_kind, backendapi_server.url, snapshot)
    want = []
    logs = warnings = other = 0
    for index, event in enumerate(G4F_EVENTS):
        logs += event["type"] == "log"
        warnings += event["type"] == "message"
        other += event["type"] == "sources"
        want.append((index + 1, logs, warnings, other))
    assert seen == [*want, want[-1]]


# -- the README ------------------------------------------------------------------------------


def test_the_readme_event_table_lists_every_type_g4f_emits() -> None:
    text = README.read_text("utf-8")
    section = text[text.index("## Events") :]
    section = section[: section.index("\n## ", 1)]
    rows = re.findall(r"^\| (.+?) \|", section, re.MULTILINE)
    listed = {name for row in rows for name in re.findall(r"`([a-z_]+)`", row)}
    assert set(G4F_EVENT_TYPES) <= listed, set(G4F_EVENT_TYPES) - listed
