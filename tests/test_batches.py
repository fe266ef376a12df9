"""The compiled batch steps (``backendapi/_batches.c``) are their Python twins, in C.

``wrap_events(cls, dicts)`` must give exactly what the streams' Python loop
gives (``object.__new__(cls)``, then the dict set as the instance's
``__dict__``) and ``content_pieces(items)`` what ``_python_content_pieces``
gives; neither may keep a reference it should not, and arguments they cannot
handle get a TypeError instead of a crash. Streams over both are compared in
tests/test_answer.py (the ``compiled_or_python`` fixture) and below.
"""

from __future__ import annotations

import abc
import gc
import os
import subprocess
import sys
import weakref
from typing import Any, ClassVar, Dict, Iterator, List, Type

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backendapi import BackendApiClient, RawResponse, _events
from backendapi.testing import BackendApiTestServer, Reply

if os.environ.get("BACKENDAPI_NO_EXTENSIONS", "").strip() not in ("", "0"):
    pytest.skip("installed with BACKENDAPI_NO_EXTENSIONS: none built", allow_module_level=True)

from backendapi._base import _python_content_pieces
from backendapi._batches import content_pieces, wrap_events


def python_wrap_events(cls: Type[Any], dicts: Iterator[Dict[str, Any]]) -> Iterator[Any]:
    """The loop the streams run when the C one is not built."""
    for data in dicts:
        event = object.__new__(cls)
        object.__setattr__(event, "__dict__", data)
        yield event


class Plain:
    """A class like RawResponse: a __dict__, object's __new__, an __init__ never to be run."""

    __slots__ = ("__dict__",)

    def __init__(self) -> None:
        raise AssertionError("__init__ must not be called")


class Inherited(Plain):
    """Its __dict__ slot comes from the base class."""


def test_the_compiled_steps_are_built_and_used_by_the_streams() -> None:
    from backendapi import _async_client, _base, _sync_client

    assert _events._wrap_events is wrap_events
    assert _sync_client._wrap_events is _async_client._wrap_events is wrap_events
    assert _base._content_pieces is content_pieces


@pytest.mark.parametrize("cls", [RawResponse, Plain, Inherited])
@pytest.mark.parametrize("wrap", [wrap_events, python_wrap_events], ids=["c", "python"])
def test_each_dict_becomes_the_fields_of_a_new_instance(cls: Type[Any], wrap: Any) -> None:
    dicts: List[Dict[str, Any]] = [
        {"type": "content", "content": "a"},
        {},
        {"type": "usage", "usage": {"total_tokens": 3}, "user-agent": "x"},
    ]
    events = list(wrap(cls, iter(dicts)))
    assert [type(event) for event in events] == [cls] * 3
    assert all(event.__dict__ is data for event, data in zip(events, dicts))  # no copy
    assert len({id(event) for event in events}) == 3
    if cls is RawResponse:
        assert events[0] == RawResponse(type="content", content="a")
        assert events[0].content == "a" and events[1].type == ""
        assert events[2]["user-agent"] == "x"


def test_it_takes_an_item_only_when_asked_and_shares_the_iterator() -> None:
    """The stream counts handed-out events from its own list iterator's length hint."""
    dicts = [{"n": i} for i in range(5)]
    source = iter(dicts)
    events = wrap_events(Plain, source)
    assert source.__length_hint__() == 5  # type: ignore[attr-defined]
    assert next(events).n == 0
    assert source.__length_hint__() == 4  # type: ignore[attr-defined]
    assert next(source) == {"n": 1}  # taken past the wrapper
    assert [event.n for event in events] == [2, 3, 4]
    assert list(events) == []
    with pytest.raises(StopIteration):
        next(events)
    assert iter(events) is events


def test_an_iterator_that_is_cleared_gives_nothing_more() -> None:
    """Closing a stream clears its batch in place; a loop holding the wrapper then stops."""
    dicts = [{"n": i} for i in range(4)]
    events = wrap_events(Plain, iter(dicts))
    assert next(events).n == 0
    dicts.clear()
    assert list(events) == []


def test_the_iterators_own_error_goes_through() -> None:
    def source() -> Iterator[Dict[str, Any]]:
        yield {"n": 1}
        raise ValueError("from the source")

    events = wrap_events(Plain, source())
    assert next(events).n == 1
    with pytest.raises(ValueError, match="from the source"):
        next(events)


@pytest.mark.parametrize("item", [5, None, [("a", 1)], "text"])
def test_an_item_that_is_no_dict_raises_what_the_python_loop_raises(item: Any) -> None:
    with pytest.raises(TypeError) as python_error:
        next(python_wrap_events(Plain, iter([item])))
    with pytest.raises(TypeError) as c_error:
        next(wrap_events(Plain, iter([item])))
    assert str(c_error.value) == str(python_error.value)


class Slotted:
    __slots__ = ("a",)


class OwnNew:
    def __new__(cls) -> OwnNew:
        return super().__new__(cls)


class Abstract(abc.ABC):
    @abc.abstractmethod
    def method(self) -> None: ...


@pytest.mark.parametrize(
    ("cls", "dicts", "message"),
    [
        (int, iter([]), "needs a concrete class with a __dict__ and object's __new__, not int"),
        (Slotted, iter([]), "not Slotted"),
        (OwnNew, iter([]), "not OwnNew"),
        (Abstract, iter([]), "not Abstract"),
        ("RawResponse", iter([]), "needs a class, not str"),
        (Plain, [{}], "needs an iterator, not list"),
    ],
)
def test_arguments_it_cannot_handle_are_refused(cls: Any, dicts: Any, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        wrap_events(cls, dicts)


@pytest.mark.parametrize("args", [(), (Plain,), (Plain, iter([]), 3)])
def test_it_takes_exactly_two_arguments(args: Any) -> None:
    with pytest.raises(TypeError, match="takes 2 arguments"):
        wrap_events(*args)


def test_no_reference_is_kept_or_lost() -> None:
    data = {"type": "content", "content": "x"}
    dicts = [data] * 1000
    class_refs, data_refs = sys.getrefcount(RawResponse), sys.getrefcount(data)
    for _ in range(20):
        for event in wrap_events(RawResponse, iter(dicts)):
            assert event.__dict__ is data
        del event
    with pytest.raises(TypeError):
        next(wrap_events(RawResponse, iter([5])))  # the half-made instance is freed
    assert (sys.getrefcount(RawResponse), sys.getrefcount(data)) == (class_refs, data_refs)
    events = list(wrap_events(RawResponse, iter(dicts)))
    assert sys.getrefcount(data) == data_refs + 1000
    del events
    assert sys.getrefcount(data) == data_refs


def test_a_cycle_through_the_wrapper_is_collected() -> None:
    class Marker:
        pass

    marker = Marker()
    gone = weakref.ref(marker)
    data: Dict[str, Any] = {"marker": marker}
    events = wrap_events(Plain, iter([data]))
    data["events"] = events  # events -> iterator -> list -> data -> events
    del marker, data, events
    gc.collect()
    assert gone() is None


@pytest.mark.parametrize("setting", ["0", "off"])
def test_backendapi_speedups_0_leaves_the_compiled_steps_unused(setting: str) -> None:
    code = (
        "from backendapi import _base, _events;"
        "print(_events._wrap_events, _base._content_pieces.__name__)"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "BACKENDAPI_SPEEDUPS": setting},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert completed.stdout.strip() == "None _python_content_pieces"


PLAIN = [{"type": "content", "content": str(i)} for i in range(5)]


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        ([], []),
        (PLAIN, [str(i) for i in range(5)]),
        ([{"type": "content", "content": 7}, {"content": None, "type": "content"}], [7, None]),
        ([*PLAIN, {"type": "content", "content": "x", "urls": ["u"]}], None),
        ([*PLAIN, {"type": "content"}], None),
        ([{"type": "content"}, {"type": "content", "content": "a", "urls": "u"}], None),
        ([*PLAIN, {"type": "title", "title": "T"}], None),
        ([{"type": "content", "text": "a"}], None),
        ([{"type": 7, "content": "a"}], None),
        ([{"type": "contents", "content": "a"}], None),
        ([{"type": "content\x00", "content": "a"}], None),
        ([{"type": "Content", "content": "a"}], None),
    ],
)
def test_content_pieces_of_batches(items: List[Dict[str, Any]], expected: Any) -> None:
    assert _python_content_pieces(items) == expected
    assert content_pieces(items) == expected


KEYS = st.sampled_from(["type", "content", "urls", "title", "x"])
VALUES = st.one_of(
    st.sampled_from(["content", "title", "", "contentt"]), st.integers(), st.none(), st.text()
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.dictionaries(KEYS, VALUES, max_size=4).map(lambda d: {"type": "x", **d})))
def test_content_pieces_agrees_with_its_python_twin(items: List[Dict[str, Any]]) -> None:
    assert repr(content_pieces(items)) == repr(_python_content_pieces(items))


def test_content_pieces_keeps_no_reference_and_refuses_what_is_no_list() -> None:
    piece = "a piece"
    items = [{"type": "content", "content": piece}] * 100
    refs = sys.getrefcount(piece)
    for _ in range(50):
        assert content_pieces(items) == [piece] * 100
    assert content_pieces([*items, {"type": "title"}]) is None
    assert sys.getrefcount(piece) == refs
    kept = content_pieces(items)
    assert sys.getrefcount(piece) == refs + 100
    del kept
    assert sys.getrefcount(piece) == refs
    with pytest.raises(TypeError, match="needs a list, not tuple"):
        content_pieces(tuple(items))  # type: ignore[arg-type]


class Sneaky(str):
    """A key equal to "type" whose comparison empties the batch it sits in."""

    batch: ClassVar[List[Any]] = []

    def __eq__(self, other: object) -> bool:
        Sneaky.batch.clear()
        return str.__eq__(self, other)

    __hash__ = str.__hash__


def test_content_pieces_survives_a_batch_changed_during_its_lookups() -> None:
    batch: List[Any] = [{Sneaky("type"): "content", "content": "a"}] + [
        {"type": "content", "content": "b"}
    ] * 3
    Sneaky.batch = batch
    assert content_pieces(batch) is None
    assert batch == []


def test_streams_give_the_same_events_and_answer_with_either_loop(
    compiled_or_python: str, client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    from clients import run_stream

    events = [{"type": "content", "content": str(i)} for i in range(3000)]
    events[1500:1500] = [{"type": "title", "title": "T"}, {"type": 9, "x": [1, {"y": None}]}]
    backendapi_server.reply(Reply(events))
    result = run_stream(client_kind, backendapi_server.url)
    assert result.error is None
    expected = [dict(event, type=str(event["type"])) for event in events]
    assert result.events == expected
    assert all(type(item.event) is RawResponse for item in result.received)
    answer = result.stream.answer
    assert answer.events == len(events)
    assert answer.text == "".join(str(i) for i in range(3000))
    assert answer.title == "T"


def test_a_stream_left_and_resumed_mid_batch_is_the_same_with_either_loop(
    compiled_or_python: str, backendapi_server: BackendApiTestServer
) -> None:
    backendapi_server.reply(Reply([{"type": "content", "content": str(i)} for i in range(400)]))
    with BackendApiClient(backendapi_server.url) as client:
        stream = client.create("m", [{"role": "user", "content": "hi"}])
        first = [event.content for _, event in zip(range(10), stream)]
        second = next(stream).content
        rest = [event.content for event in stream]
    assert [*first, second, *rest] == [str(i) for i in range(400)]
    assert stream.answer.events == 400
