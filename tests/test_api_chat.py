"""Issue 14's chat features over both clients: continue, regenerate, tools, the saved format."""

from __future__ import annotations

import asyncio
import enum
import functools
import json
from pathlib import Path
from typing import Any, Dict, Iterator, List, Literal, Optional, Set, Tuple, Union

import pytest
from test_chat import SYSTEM, Side, assistant, bodies, user

from backendapi import (
    Answer,
    APIStatusError,
    AsyncChat,
    Chat,
    InvalidInputError,
    RawResponse,
    ToolCallError,
    ToolRoundsExceededError,
    function_definition,
)
from backendapi.testing import BackendApiTestServer, Reply

DATA = Path(__file__).resolve().parent / "data"


def weather(city: str) -> str:
    """The weather in a city.

    Args:
        city: the city's name.
    """
    return f"Sunny, 21 C in {city}"


WEATHER_DEFINITION = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "the city's name."}},
            "required": ["city"],
        },
    },
}


def call(call_id: str, name: str, arguments: str) -> Dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def assistant_calls(text: str, calls: List[Dict[str, Any]]) -> Dict[str, Any]:
    return {"role": "assistant", "content": text, "tool_calls": calls}


def tool_message(call_id: str, content: str) -> Dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": content}


@pytest.fixture
def side(client_kind: str, backendapi_server: BackendApiTestServer) -> Iterator[Side]:
    client_side = Side(client_kind, backendapi_server.url)
    try:
        yield client_side
    finally:
        client_side.close()


# -- the saved format ---------------------------------------------------------------------


def test_a_save_of_format_version_1_still_loads_and_continues(
    side: Side, backendapi_server: BackendApiTestServer
) -> None:
    # tests/data/chat-v1.json was written by Chat.save() of format version 1, unedited.
    path = DATA / "chat-v1.json"
    assert json.loads(path.read_text(encoding="utf-8"))["version"] == 1
    chat = side.chat_class.load(path, side.client, api_key="sk-later")
    assert chat.model == "scripted-1"
    assert chat.provider == "ScriptedProvider"
    assert chat.options == {"temperature": 0.2, "web_search": False}
    assert chat.conversation == {
        "ScriptedProvider": {"conversation_id": "c-1", "message_id": "m-2"}
    }
    history = [
        SYSTEM,
        user("What is the capital of France?"),
        assistant("Paris."),
        user([{"type": "text", "text": "How many people live there?"}]),
        assistant("About 2.1 million people."),
    ]
    assert chat.messages == history
    backendapi_server.reply(Reply.answer("Yes."))
    assert side.ask(chat, "Sure?").text == "Yes."
    sent = bodies(backendapi_server)[-1]
    assert sent["messages"] == [*history, user("Sure?")]
    assert sent["conversation"] == {"conversation_id": "c-1", "message_id": "m-2"}
    assert sent["api_key"] == "sk-later"
    assert sent["temperature"] == 0.2


def test_a_save_of_version_2_keeps_tool_messages_and_variants(
    side: Side, backendapi_server: BackendApiTestServer, tmp_path: Path
) -> None:
    backendapi_server.reply(
        Reply.tool_calls([{"name": "weather", "arguments": {"city": "Paris"}}]),
        Reply.answer("Sunny in Paris."),
        Reply.answer("It is sunny."),
    )
    chat = side.chat("m", api_key="sk-secret-key", tools=[weather], temperature=0.5)
    side.ask(chat, "Weather in Paris?")
    side.run(chat.regenerate())
    path = tmp_path / "chat.json"
    chat.save(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert "sk-secret-key" not in path.read_text(encoding="utf-8")
    assert data["version"] == 2
    assert data["messages"] == [user("Weather in Paris?"), assistant("It is sunny.")]
    assert data["variants"] == [
        {
            "index": 1,
            "messages": [
                assistant_calls("", [call("call_0", "weather", '{"city": "Paris"}')]),
                tool_message("call_0", "Sunny, 21 C in Paris"),
                assistant("Sunny in Paris."),
            ],
        }
    ]
    loaded = side.chat_class.load(path, side.client, tools=[weather])
    assert loaded.to_dict() == chat.to_dict()
    assert loaded.tools == [weather]


@pytest.mark.parametrize(
    "variants",
    [{"index": 1}, [{"index": "1", "messages": []}], [{"index": 1, "messages": {}}], ["x"]],
)
def test_bad_variants_in_saved_data_are_rejected(side: Side, variants: Any) -> None:
    data = {"version": 2, "model": "m", "messages": [], "variants": variants}
    with pytest.raises(InvalidInputError, match="variants"):
        side.chat_class.from_dict(data, side.client)


# -- continue and regenerate --------------------------------------------------------------


def test_continue_appends_to_the_last_answer(
    side: Side, backendapi_server: BackendApiTestServer
) -> None:
    backendapi_server.reply(
        Reply.answer("Once upon a", conversation={"id": "c1"}),
        Reply.answer(" time, the end.", conversation={"id": "c2"}),
    )
    chat = side.chat("m", provider="ScriptedProvider", system="Be brief")
    side.ask(chat, "Tell a story")
    answer = side.run(chat.continue_())
    assert answer.text == " time, the end."
    assert chat.messages == [SYSTEM, user("Tell a story"), assistant("Once upon a time, the end.")]
    assert chat.conversation == {"ScriptedProvider": {"id": "c2"}}
    sent = bodies(backendapi_server)[-1]
    assert sent["action"] == "continue"
    # As g4f's web client sends it: the history as it is, ending with the answer to go on with.
    assert sent["messages"] == [SYSTEM, user("Tell a story"), assistant("Once upon a")]
    assert sent["conversation"] == {"id": "c1"}
    assert "tool_calls" not in sent  # g4f adds its continue_tool itself


def test_send_continue_streams_and_changes_the_history_only_at_the_end(
    side: Side, backendapi_server: BackendApiTestServer
) -> None:
    backendapi_server.reply(Reply.answer("Once upon a"), Reply.answer(" time."))
    chat = side.chat("m")
    side.ask(chat, "Tell a story")
    stream = chat.send_continue(temperature=0.9)
    events = side.read(stream, limit=2)
    assert [e.type for e in events] == ["provider", "content"]
    assert chat.messages[-1] == assistant("Once upon a")
    side.read(stream)
    assert chat.messages == [user("Tell a story"), assistant("Once upon a time.")]
    assert bodies(backendapi_server)[-1]["temperature"] == 0.9


def test_regenerate_replaces_the_last_answer_and_keeps_the_old_ones(
    side: Side, backendapi_server: BackendApiTestServer
) -> None:
    backendapi_server.reply(
        Reply.answer("Four."),
        Reply.answer("Red."),
        Reply.answer("Blue."),
        Reply.answer("Green."),
    )
    chat = side.chat("m", system="Be brief")
    side.ask(chat, "2+2?")
    side.ask(chat, "A colour?")
    assert side.run(chat.regenerate()).text == "Blue."
    sent = bodies(backendapi_server)[-1]
    assert sent["action"] == "variant"
    assert sent["messages"] == [SYSTEM, user("2+2?"), assistant("Four."), user("A colour?")]
    assert chat.messages == [
        SYSTEM,
        user("2+2?"),
        assistant("Four."),
        user("A colour?"),
        assistant("Blue."),
    ]
    side.run(chat.regenerate())
    assert chat.messages[-1] == assistant("Green.")
    assert chat.variants == [
        {"index": 4, "messages": [assistant("Red.")]},
        {"index": 4, "messages": [assistant("Blue.")]},
    ]


def test_regenerate_answers_a_question_left_without_answer(
    side: Side, backendapi_server: BackendApiTestServer
) -> None:
    backendapi_server.reply(Reply.answer("Hi."))
    chat = side.chat("m", messages=[user("Hello")])
    assert side.run(chat.regenerate()).text == "Hi."
    assert chat.messages == [user("Hello"), assistant("Hi.")]
    assert chat.variants == []


def test_failed_continue_and_regenerate_leave_the_chat_unchanged(
    side: Side, backendapi_server: BackendApiTestServer
) -> None:
    backendapi_server.reply(
        Reply.answer("Once"),
        Reply.http_error(500, "down"),
        Reply.http_error(500, "down"),
    )
    chat = side.chat("m")
    side.ask(chat, "Story?")
    before = chat.to_dict()
    with pytest.raises(APIStatusError):
        side.run(chat.continue_())
    with pytest.raises(APIStatusError):
        side.run(chat.regenerate())
    assert chat.to_dict() == before


def test_continue_and_regenerate_need_something_to_act_on(
    side: Side, backendapi_server: BackendApiTestServer
) -> None:
    chat = side.chat("m", system="Be brief")
    with pytest.raises(InvalidInputError, match="no answer to continue"):
        side.run(chat.continue_())
    with pytest.raises(InvalidInputError, match="no user message"):
        side.run(chat.regenerate())
    with pytest.raises(InvalidInputError, match="no answer to continue"):
        chat.send_continue()
    chat.messages.append(user("Hi"))
    with pytest.raises(InvalidInputError, match="no answer to continue"):
        side.run(chat.continue_())
    chat.messages.append({"role": "assistant", "content": [{"type": "text", "text": "x"}]})
    with pytest.raises(InvalidInputError, match="content is a str"):
        side.run(chat.continue_())
    assert backendapi_server.requests == []


@pytest.mark.parametrize("action", ["continue", "variant"])
def test_the_history_changing_actions_are_refused_elsewhere(
    side: Side, backendapi_server: BackendApiTestServer, action: str
) -> None:
    chat = side.chat("m", messages=[user("Hi"), assistant("Hello")])
    with pytest.raises(InvalidInputError, match="call chat"):
        chat.send("Go on", action=action)
    with pytest.raises(InvalidInputError, match="call chat"):
        side.chat("m", action=action)
    with pytest.raises(InvalidInputError, match="do not pass action"):
        side.run(chat.continue_(action=action))
    with pytest.raises(InvalidInputError, match="do not pass action"):
        side.run(chat.regenerate(action=action))
    assert backendapi_server.requests == []
    backendapi_server.reply(Reply.answer("Ok"))
    side.ask(chat, "Next", action="next")  # any other action passes through
    assert bodies(backendapi_server)[-1]["action"] == "next"


# -- tools: what a request sends --------------------------------------------------------------


class Unit(enum.Enum):
    CELSIUS = "celsius"
    FAHRENHEIT = "fahrenheit"


def forecast(
    city: str,
    days: int,
    hourly: bool = False,
    unit: Unit = Unit.CELSIUS,
    detail: Literal["short", "long"] = "short",
    threshold: Optional[float] = None,
    tags: List[str] = [],  # noqa: B006 - never mutated
    extra: Dict[str, int] = {},  # noqa: B006
    anything: Any = None,
) -> str:
    """Forecast the weather.

    Several days ahead.

    Args:
        city (str): the city's name,
            as people spell it.
        days: how many days.

    Returns:
        The forecast.
    """
    return f"{city} {days} {hourly} {unit.name} {detail} {threshold} {tags} {extra} {anything}"


def test_a_function_becomes_a_json_schema_from_its_hints_and_docstring() -> None:
    definition = function_definition(forecast)
    assert definition == {
        "type": "function",
        "function": {
            "name": "forecast",
            "description": "Forecast the weather.\n\nSeveral days ahead.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {
                        "type": "string",
                        "description": "the city's name, as people spell it.",
                    },
                    "days": {"type": "integer", "description": "how many days."},
                    "hourly": {"type": "boolean"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                    "detail": {"type": "string", "enum": ["short", "long"]},
                    "threshold": {"type": ["number", "null"]},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "extra": {"type": "object", "additionalProperties": {"type": "integer"}},
                    "anything": {},
                },
                "required": ["city", "days"],
            },
        },
    }


def test_sphinx_docstrings_untyped_defaults_and_unions() -> None:
    def lookup(
        key, limit=10, scale: Union[int, str, None] = None, pair: Tuple[int, str] = (1, "a")
    ):  # type: ignore[no-untyped-def]
        """Look a key up.

        :param str key: what to look up.
        :param limit: at most this many
            results.
        :returns: the values.
        """

    with pytest.raises(InvalidInputError, match="'key' has no type hint"):
        function_definition(lookup)

    def lookup2(
        key: str,
        limit=10,
        scale: Union[int, str, None] = None,
        pair: Tuple[int, str] = (1, "a"),
        ids: Set[int] = frozenset(),
    ) -> None:  # type: ignore[no-untyped-def, assignment]
        """Look a key up.

        :param str key: what to look up.
        :param limit: at most this many
            results.
        :returns: the values.
        """

    function = function_definition(lookup2)["function"]
    assert function["description"] == "Look a key up."
    assert function["parameters"]["properties"] == {
        "key": {"type": "string", "description": "what to look up."},
        "limit": {"type": "integer", "description": "at most this many results."},
        "scale": {"anyOf": [{"type": "integer"}, {"type": "string"}, {"type": "null"}]},
        "pair": {
            "type": "array",
            "prefixItems": [{"type": "integer"}, {"type": "string"}],
            "minItems": 2,
            "maxItems": 2,
        },
        "ids": {"type": "array", "uniqueItems": True, "items": {"type": "integer"}},
    }
    assert function["parameters"]["required"] == ["key"]


def test_create_sends_functions_and_definitions_as_tools(
    side: Side, backendapi_server: BackendApiTestServer
) -> None:
    lookup = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    server_side = [{"function": {"name": "search_tool"}, "type": "function"}]
    side.run(
        side.client.complete(
            "m", [user("Hi")], tools=[weather, lookup], tool_calls=server_side, tool_choice="auto"
        )
    )
    sent = bodies(backendapi_server)[-1]
    assert sent["tools"] == [WEATHER_DEFINITION, lookup]
    # g4f's own request field for server-side tools passes through, untouched.
    assert sent["tool_calls"] == server_side
    assert sent["tool_choice"] == "auto"
    for empty in (None, []):
        side.run(side.client.complete("m", [user("Hi")], tools=empty))
        assert "tools" not in bodies(backendapi_server)[-1]


def not_described(when: "datetime.date") -> str:  # noqa: F821, UP037 - never resolved
    return ""


class Callable_:
    def __call__(self, x: int) -> int:
        return x


def star_args(*cities: str) -> str:
    return ""


def positional_only(city: str, /) -> str:
    return city


def takes_bytes(data: bytes) -> str:
    return ""


def takes_int_keys(data: Dict[int, str]) -> str:
    return ""


def takes_object_literal(data: Literal[b"x"]) -> str:
    return ""


@pytest.mark.parametrize(
    ("tools", "message"),
    [
        (weather, "tools must be a list"),
        ({"type": "function"}, "tools must be a list"),
        ([42], r"tools\[0\] is a int"),
        ([weather, "weather"], r"tools\[1\] is a str"),
        ([lambda city: city], "tools\\[0\\] \\(<lambda>\\) has no usable name"),
        ([functools.partial(weather, "Paris")], "has no usable name"),
        ([Unit], "is the class Unit"),
        ([Callable_()], "has no usable name"),
        ([not_described], "cannot be resolved"),
        ([star_args], r"\*args and \*\*kwargs"),
        ([positional_only], "positional-only"),
        ([takes_bytes], "<class 'bytes'> has no JSON form"),
        ([takes_int_keys], "JSON object keys are str"),
        ([takes_object_literal], "has no JSON form"),
        ([weather, weather], r"tools\[1\]: a tool named 'weather' is already tools\[0\]"),
        ([{"name": "weather"}], r"tools\[0\] has no 'type'"),
        ([{"type": "function", "function": {"name": "a b"}}], "must be 1 to 64 letters"),
        ([{"type": "function", "function": {"name": "f", "parameters": []}}], "JSON Schema object"),
        ([{"type": "function", "function": {"name": "f", "description": 3}}], "'description'"),
        ([{"type": "function", "function": "f"}], r"\['function'\] must be a dict"),
        (
            [{"type": "function", "function": {"name": "f", "x": float("nan")}}],
            "cannot be sent as JSON",
        ),
    ],
)
def test_a_tool_that_cannot_be_described_is_refused_before_any_request(
    side: Side, backendapi_server: BackendApiTestServer, tools: Any, message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        side.client.create("m", [user("Hi")], tools=tools)
    with pytest.raises(InvalidInputError, match=message):
        side.chat("m", tools=tools)
    chat = side.chat("m")
    with pytest.raises(InvalidInputError, match=message):
        chat.send("Hi", tools=tools)
    assert backendapi_server.requests == []


# -- tools: what an answer gathers --------------------------------------------------------------


@pytest.mark.parametrize("pieces", [False, True])
def test_answer_gathers_tool_calls_whole_or_in_pieces(
    side: Side, backendapi_server: BackendApiTestServer, pieces: bool
) -> None:
    calls = [
        {"name": "weather", "arguments": {"city": "Paris"}, "id": "call_a"},
        {"name": "weather", "arguments": {"city": 'Zürich, "CH"'}},
    ]
    backendapi_server.reply(Reply.tool_calls(calls, text="Checking.", pieces=pieces))
    answer = side.run(side.client.complete("m", [user("Weather?")], tools=[weather]))
    assert answer.text == "Checking."
    assert answer.finish_reason == "tool_calls"
    assert answer.tool_calls == [
        call("call_a", "weather", '{"city": "Paris"}'),
        call("call_1", "weather", '{"city": "Z\\u00fcrich, \\"CH\\""}'),
    ]
    answer.tool_calls.clear()  # a copy
    assert len(answer.tool_calls) == 2


def test_tool_call_pieces_are_joined_by_index_and_a_new_id_starts_a_call() -> None:
    answer = Answer()
    for pieces in (
        [{"index": 0, "id": "a", "type": "function", "function": {"name": "f", "arguments": ""}}],
        [{"index": 1, "id": "b", "type": "function", "function": {"name": "g", "arguments": "{"}}],
        [{"index": 0, "function": {"arguments": '{"x": '}}],
        [
            {"index": 1, "function": {"arguments": "}"}},
            {"index": 0, "function": {"arguments": "1}"}},
        ],
        {"index": 0, "id": "c", "function": {"name": "h", "arguments": {"y": 2}}},
        [{"id": "d", "function": {"name": "i"}}, "junk", {"function": "junk"}],
        "not a list",
    ):
        answer.add(RawResponse(type="tool_calls", tool_calls=pieces))
    assert answer.tool_calls == [
        call("a", "f", '{"x": 1}'),
        call("b", "g", "{}"),
        call("c", "h", '{"y": 2}'),
        call("d", "i", ""),
        call("", "", ""),
    ]


# -- tools: the loop ------------------------------------------------------------------------------


def test_ask_runs_the_tool_loop_and_sends_results_after_the_message_that_asked(
    side: Side, backendapi_server: BackendApiTestServer
) -> None:
    backendapi_server.reply(
        Reply.tool_calls(
            [
                {"name": "weather", "arguments": {"city": "Paris"}, "id": "c1"},
                {
                    "name": "forecast",
                    "arguments": {"city": "Rome", "days": 2, "unit": "fahrenheit"},
                    "id": "c2",
                },
            ],
            text="Let me look.",
            pieces=True,
            conversation={"id": "s1"},
        ),
        Reply.answer("Sunny in both.", conversation={"id": "s2"}),
    )
    chat = side.chat("m", provider="ScriptedProvider", system="Be brief")
    answer = side.ask(chat, "Weather?", tools=[weather, forecast], temperature=0.1)
    assert answer.text == "Sunny in both."
    asked = assistant_calls(
        "Let me look.",
        [
            call("c1", "weather", '{"city": "Paris"}'),
            call("c2", "forecast", '{"city": "Rome", "days": 2, "unit": "fahrenheit"}'),
        ],
    )
    results = [
        tool_message("c1", "Sunny, 21 C in Paris"),
        tool_message("c2", "Rome 2 False FAHRENHEIT short None [] {} None"),
    ]
    assert chat.messages == [SYSTEM, user("Weather?"), asked, *results, assistant("Sunny in both.")]
    first, second = bodies(backendapi_server)
    assert second["messages"] == [SYSTEM, user("Weather?"), asked, *results]
    for body in (first, second):
        assert [tool["function"]["name"] for tool in body["tools"]] == ["weather", "forecast"]
        assert body["temperature"] == 0.1
        assert "action" not in body
    assert second["conversation"] == {"id": "s1"}
    assert chat.conversation == {"ScriptedProvider": {"id": "s2"}}


def test_results_that_are_not_text_are_sent_as_json(
    side: Side, backendapi_server: BackendApiTestServer
) -> None:
    def stats(city: str) -> Dict[str, Any]:
        return {"city": city, "unit": Unit.CELSIUS, "values": [1.5, None]}

    def nothing() -> None:
        return None

    backendapi_server.reply(
        Reply.tool_calls(
            [{"name": "stats", "arguments": {"city": "Oslo"}}, {"name": "nothing", "arguments": ""}]
        ),
        Reply.answer("Done."),
    )
    chat = side.chat("m", tools=[stats, nothing])
    side.ask(chat, "Stats?")
    assert chat.messages[2:4] == [
        tool_message("call_0", '{"city": "Oslo", "unit": "celsius", "values": [1.5, null]}'),
        tool_message("call_1", ""),
    ]


def test_async_tools_are_awaited_by_the_async_chat_and_refused_by_the_blocking_one(
    side: Side, backendapi_server: BackendApiTestServer
) -> None:
    async def slow_weather(city: str) -> str:
        await asyncio.sleep(0)
        return f"Rainy in {city}"

    if side.kind == "sync":
        with pytest.raises(InvalidInputError, match=r"slow_weather\) is an async function"):
            side.chat("m", tools=[slow_weather])
        with pytest.raises(InvalidInputError, match="async function"):
            side.ask(side.chat("m"), "Weather?", tools=[slow_weather])
        assert backendapi_server.requests == []
        return
    backendapi_server.reply(
        Reply.tool_calls([{"name": "slow_weather", "arguments": {"city": "Bergen"}}]),
        Reply.answer("Rainy."),
    )
    chat = side.chat("m", tools=[slow_weather])
    assert side.ask(chat, "Weather?").text == "Rainy."
    assert chat.messages[2] == tool_message("call_0", "Rainy in Bergen")


def test_a_plain_function_returning_an_awaitable_is_refused_by_the_blocking_chat(
    side: Side, backendapi_server: BackendApiTestServer
) -> None:
    async def later() -> str:
        return "x"

    def sneaky(city: str) -> Any:
        return later()

    backendapi_server.reply(
        Reply.tool_calls([{"name": "sneaky", "arguments": {"city": "Oslo"}}]), Reply.answer("Ok.")
    )
    chat = side.chat("m", tools=[sneaky])
    if side.kind == "sync":
        with pytest.raises(InvalidInputError, match="returned an awaitable"):
            side.ask(chat, "Go")
        assert len(bodies(backendapi_server)) == 1
    else:
        side.ask(chat, "Go")
        assert chat.messages[2] == tool_message("call_0", "x")


def test_the_loop_stops_after_max_tool_rounds_and_run_tools_goes_on(
    side: Side, backendapi_server: BackendApiTestServer
) -> None:
    again = Reply.tool_calls([{"name": "weather", "arguments": {"city": "Paris"}}])
    backendapi_server.reply(again, again, again, Reply.answer("Finally."))
    chat = side.chat("m", tools=[weather])
    with pytest.raises(
        ToolRoundsExceededError, match=r"still asks for tools \(weather\) after 2 rounds"
    ) as raised:
        side.ask(chat, "Weather?", max_tool_rounds=2)
    assert raised.value.rounds == 2
    assert len(bodies(backendapi_server)) == 3
    # Every round is in the history; the last calls wait for their results.
    assert [m["role"] for m in chat.messages] == [
        "user",
        "assistant",
        "tool",
        "assistant",
        "tool",
        "assistant",
    ]
    assert side.run(chat.run_tools()).text == "Finally."
    assert chat.messages[-2:] == [
        tool_message("call_0", "Sunny, 21 C in Paris"),
        assistant("Finally."),
    ]


@pytest.mark.parametrize("rounds", [0, -1, True, 1.5, "2"])
def test_max_tool_rounds_is_checked_before_any_request(
    side: Side, backendapi_server: BackendApiTestServer, rounds: Any
) -> None:
    chat = side.chat("m", tools=[weather])
    with pytest.raises(InvalidInputError, match="max_tool_rounds"):
        side.ask(chat, "Hi", max_tool_rounds=rounds)
    assert backendapi_server.requests == []


def test_a_tool_that_raises_leaves_the_question_asked_and_run_tools_retries(
    side: Side, backendapi_server: BackendApiTestServer
) -> None:
    failures = [RuntimeError("weather service down")]

    def flaky(city: str) -> str:
        if failures:
            raise failures.pop()
        return f"Snow in {city}"

    backendapi_server.reply(
        Reply.tool_calls([{"name": "flaky", "arguments": {"city": "Oslo"}}]), Reply.answer("Snow.")
    )
    chat = side.chat("m")
    with pytest.raises(RuntimeError, match="weather service down"):
        side.ask(chat, "Weather?", tools=[flaky])
    assert chat.messages == [
        user("Weather?"),
        assistant_calls("", [call("call_0", "flaky", '{"city": "Oslo"}')]),
    ]
    assert side.run(chat.run_tools(tools=[flaky])).text == "Snow."
    assert chat.messages[-2:] == [tool_message("call_0", "Snow in Oslo"), assistant("Snow.")]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ("{not json", "are not JSON"),
        ("[1, 2]", "are not a JSON object"),
        ('{"town": "Oslo"}', "does not fit its parameters"),
        ("{}", "does not fit its parameters"),
    ],
)
def test_arguments_that_do_not_fit_are_a_tool_call_error(
    side: Side, backendapi_server: BackendApiTestServer, arguments: str, message: str
) -> None:
    backendapi_server.reply(Reply.tool_calls([{"name": "weather", "arguments": arguments}]))
    chat = side.chat("m", tools=[weather])
    with pytest.raises(ToolCallError, match=message):
        side.ask(chat, "Weather?")
    assert chat.messages[-1]["tool_calls"][0]["function"]["arguments"] == arguments


def test_an_unknown_enum_value_is_a_tool_call_error(
    side: Side, backendapi_server: BackendApiTestServer
) -> None:
    backendapi_server.reply(
        Reply.tool_calls(
            [{"name": "forecast", "arguments": {"city": "A", "days": 1, "unit": "kelvin"}}]
        )
    )
    with pytest.raises(ToolCallError, match="'kelvin' is no Unit for 'unit'"):
        side.ask(side.chat("m", tools=[forecast]), "Forecast?")


def test_a_result_with_no_json_form_is_a_tool_call_error(
    side: Side, backendapi_server: BackendApiTestServer
) -> None:
    def opaque(city: str) -> Any:
        return object()

    backendapi_server.reply(Reply.tool_calls([{"name": "opaque", "arguments": {"city": "A"}}]))
    with pytest.raises(ToolCallError, match="opaque returned a object, which has no JSON form"):
        side.ask(side.chat("m", tools=[opaque]), "Go")


def test_calls_to_tools_given_as_definitions_end_the_loop_for_the_caller_to_answer(
    side: Side, backendapi_server: BackendApiTestServer
) -> None:
    lookup = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    backendapi_server.reply(
        Reply.tool_calls([{"name": "lookup", "arguments": {"q": "x"}, "id": "L1"}]),
        Reply.answer("Found it."),
    )
    chat = side.chat("m", tools=[weather, lookup])
    answer = side.ask(chat, "Find x")
    assert answer.tool_calls == [call("L1", "lookup", '{"q": "x"}')]
    with pytest.raises(InvalidInputError, match="no Python function among the tools for lookup"):
        side.run(chat.run_tools())
    with pytest.raises(InvalidInputError, match=r"no tool call 'nope' waits .*'L1'"):
        chat.add_tool_result("nope", "x")
    chat.add_tool_result("L1", {"hits": 1})
    with pytest.raises(InvalidInputError, match=r"waiting: none"):
        chat.add_tool_result("L1", "again")
    assert side.run(chat.run_tools()).text == "Found it."
    assert bodies(backendapi_server)[-1]["messages"][-1] == tool_message("L1", '{"hits": 1}')
    with pytest.raises(InvalidInputError, match="no tool calls to answer"):
        side.run(chat.run_tools())
    assert len(bodies(backendapi_server)) == 2


def test_send_runs_no_tools_and_run_tools_takes_over(
    side: Side, backendapi_server: BackendApiTestServer
) -> None:
    backendapi_server.reply(
        Reply.tool_calls([{"name": "weather", "arguments": {"city": "Lima"}}]),
        Reply.answer("Warm."),
    )
    chat = side.chat("m", tools=[weather])
    side.read(chat.send("Weather?"))
    assert chat.messages[-1] == assistant_calls("", [call("call_0", "weather", '{"city": "Lima"}')])
    assert side.run(chat.run_tools()).text == "Warm."


def test_regenerate_replaces_every_tool_round_of_the_last_question(
    side: Side, backendapi_server: BackendApiTestServer
) -> None:
    backendapi_server.reply(
        Reply.tool_calls([{"name": "weather", "arguments": {"city": "Lima"}}]),
        Reply.answer("Warm."),
        Reply.answer("Warm, I guess."),
    )
    chat = side.chat("m", tools=[weather])
    side.ask(chat, "Weather?")
    side.run(chat.regenerate())
    assert bodies(backendapi_server)[-1]["messages"] == [user("Weather?")]
    assert chat.messages == [user("Weather?"), assistant("Warm, I guess.")]
    assert [m["role"] for m in chat.variants[0]["messages"]] == ["assistant", "tool", "assistant"]


def test_chat_types_are_exported() -> None:
    assert Chat.run_tools.__doc__ and AsyncChat.continue_.__doc__


def test_regenerate_sends_media_only_when_given_again(
    side: Side, backendapi_server: BackendApiTestServer
) -> None:
    image = "data:image/png;base64,iVBORw0KGgo="
    backendapi_server.reply(Reply.answer("A cat."), Reply.answer("A dog."), Reply.answer("A fox."))
    chat = side.chat("m")
    side.ask(chat, "What is it?", [image])
    side.run(chat.regenerate())
    side.run(chat.regenerate([image]))
    media = [body["media"] for body in bodies(backendapi_server)]
    assert media[1] is None
    assert media[0] == media[2] and media[0]
