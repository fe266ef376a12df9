"""RawResponse: one event of the stream, the server's JSON object with keys as attributes."""

from __future__ import annotations

import copy
import pickle
from typing import Any, Dict

import pytest

from backendapi import RawResponse, decode

CONTENT: Dict[str, Any] = {"type": "content", "content": "Hi", "urls": ["https://x/a.png"]}


def test_keys_are_attributes() -> None:
    event = RawResponse(**CONTENT)
    assert event.type == "content"
    assert event.content == "Hi"
    assert event.urls == ["https://x/a.png"]


def test_a_mapping_can_be_passed_positionally() -> None:
    assert RawResponse(CONTENT).get_dict() == CONTENT
    assert RawResponse(CONTENT, content="Bye").content == "Bye"


def test_type_is_empty_when_absent() -> None:
    event = RawResponse(content="x")
    assert event.type == ""
    assert "type" not in event
    assert "content" in repr(event)


def test_get_with_and_without_default() -> None:
    event = RawResponse(**CONTENT)
    assert event.get("content") == "Hi"
    assert event.get("missing") is None
    assert event.get("missing", "-") == "-"
    assert RawResponse(type="x", value=None).get("value", "-") is None


def test_item_access() -> None:
    event = RawResponse(**CONTENT)
    assert event["content"] == "Hi"
    assert event["type"] == "content"
    with pytest.raises(KeyError):
        event["missing"]


def test_membership() -> None:
    event = RawResponse(**CONTENT)
    assert "content" in event
    assert "urls" in event
    assert "missing" not in event


def test_get_dict_returns_a_new_dict() -> None:
    event = RawResponse(**CONTENT)
    first = event.get_dict()
    assert first == CONTENT
    first["content"] = "changed"
    first["added"] = 1
    del first["type"]
    assert event.get_dict() == CONTENT
    assert event.get_dict() is not event.get_dict()
    assert event.content == "Hi"


def test_equality_compares_the_fields() -> None:
    assert RawResponse(**CONTENT) == RawResponse(**CONTENT)
    assert RawResponse(**CONTENT) == RawResponse(dict(reversed(list(CONTENT.items()))))
    assert RawResponse(**CONTENT) != RawResponse(**{**CONTENT, "content": "Ho"})
    assert RawResponse(**CONTENT) != RawResponse(type="content", content="Hi")
    assert RawResponse(type="a") != RawResponse(type="b")
    assert (RawResponse(type="a") != RawResponse(type="a")) is False


def test_not_hashable() -> None:
    event = RawResponse(type="content", content="Hi")
    with pytest.raises(TypeError):
        hash(event)
    with pytest.raises(TypeError):
        {event}  # noqa: B018


def test_repr_is_readable() -> None:
    assert repr(RawResponse(type="content", content="Hi")) == (
        "RawResponse(type='content', content='Hi')"
    )
    assert repr(RawResponse(type="usage", usage={"total_tokens": 11})) == (
        "RawResponse(type='usage', usage={'total_tokens': 11})"
    )


def test_repr_truncates_long_strings() -> None:
    long_text = "A" * 10_000
    for event in (
        RawResponse(type="content", content=long_text),
        RawResponse(type="preview", urls=[long_text]),
        RawResponse(type="audio", data={"b64": long_text}),
    ):
        shown = repr(event)
        assert len(shown) < 600
        assert "10000" in shown
        assert "AAAA" in shown


def test_str_works_and_names_the_type() -> None:
    text = str(RawResponse(type="reasoning", token="thinking"))
    assert "reasoning" in text
    assert "thinking" in text


def test_keys_that_clash_with_methods_or_are_not_identifiers() -> None:
    fields = {
        "type": "headers",
        "get_dict": 1,
        "get": 2,
        "keys": 3,
        "user-agent": "x",
        "self": 4,
        "_data": 5,
        "__class__": 6,
        "__init__": 7,
    }
    event = RawResponse(**fields)
    assert event.get_dict() == fields
    assert event["user-agent"] == "x"
    assert event["get_dict"] == 1
    assert event.get("get") == 2
    assert event["self"] == 4
    assert event["_data"] == 5
    assert event["__class__"] == 6
    assert event.__class__ is RawResponse
    assert isinstance(event, RawResponse)
    assert sorted(event.keys()) == sorted(fields)
    assert "user-agent" in repr(event)
    assert event == RawResponse(fields)


def test_clashing_keys_from_the_decoder() -> None:
    (event,) = decode(b'{"type": "t", "get_dict": 1, "user-agent": "x", "_data": null}\n')
    assert event.get_dict() == {"type": "t", "get_dict": 1, "user-agent": "x", "_data": None}
    assert event["user-agent"] == "x"


def test_missing_attribute_names_the_field() -> None:
    event = RawResponse(type="content", content="Hi")
    with pytest.raises(AttributeError) as caught:
        event.usage  # noqa: B018
    assert "usage" in str(caught.value)
    assert getattr(event, "usage", "default") == "default"
    assert not hasattr(event, "usage")


def test_pickle_round_trip() -> None:
    event = RawResponse(type="conversation", conversation={"P": {"id": "c-1"}}, **{"a-b": [1]})
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        restored = pickle.loads(pickle.dumps(event, protocol=protocol))
        assert type(restored) is RawResponse
        assert restored == event
        assert restored.get_dict() == event.get_dict()


def test_deepcopy_is_independent() -> None:
    event = RawResponse(type="conversation", conversation={"P": {"id": "c-1"}})
    twin = copy.deepcopy(event)
    twin.conversation["P"]["id"] = "c-2"
    assert event.conversation == {"P": {"id": "c-1"}}


@pytest.mark.parametrize(
    "fields",
    [
        {"type": "request", "api_key": "sk-top-secret-1234"},
        {"type": "request", "API_KEY": "sk-top-secret-1234"},
        {"type": "parameters", "parameters": {"model": "m", "api_key": "sk-top-secret-1234"}},
        {"type": "request", "providers": [{"name": "P", "api_key": "sk-top-secret-1234"}]},
        {"type": "request", "a": {"b": {"c": {"api_key": "sk-top-secret-1234"}}}},
        {"type": "headers", "headers": {"Authorization": "Bearer sk-top-secret-1234"}},
    ],
)
def test_repr_never_shows_an_api_key(fields: Dict[str, Any]) -> None:
    event = RawResponse(**fields)
    assert "sk-top-secret-1234" not in repr(event)
    assert "sk-top-secret-1234" not in str(event)
    assert "***" in repr(event)
    # The value is still there for the caller.
    assert "sk-top-secret-1234" in str(event.get_dict())


def test_decoded_event_types_are_always_strings() -> None:
    events = decode(b'{"type": 5}\n{"type": ["a"]}\ndata: {"type": null}\n\n')
    assert [event.type for event in events] == ["5", "['a']", "None"]
    assert [event["type"] for event in events] == ["5", "['a']", "None"]
