"""The JSON parsing of the decoder's fast path, and the optional ``speedups``.

``scan_once(text, 0)`` is the stdlib's own C scanner (what ``json.loads``
runs underneath), called directly: it returns ``(value, end)``, or raises
``StopIteration`` (or ``ValueError``) when ``text`` does not start with a JSON
value. The fast path takes its value only when it spans the whole text, which
is then exactly what ``json.loads(text)`` returns; every other text goes to
the decoder's per-line path and ``json.loads`` itself, errors included.

``parse_events(texts)`` parses a whole batch of event payloads (the NDJSON
lines or SSE ``data:`` values of one network read) in C-level loops, with no
Python code run per event. It returns the list of dicts only when every text
is one whole JSON object with a ``"type"`` key, and None otherwise (the
decoder then reads the batch line by line, and reports what is wrong exactly
as before).

With the ``speedups`` extra (``pip install 'backendapi[speedups]'``) the batch
is parsed by msgspec, about 2.3 times as fast as the stdlib scanner on a small
event. msgspec was chosen over orjson because it returns exactly what
``json.loads`` returns for every text it accepts, integers of any size
included (orjson turns an integer beyond 64 bits into a float); the texts it
rejects and ``json`` accepts (``NaN``, ``1e400``, a lone surrogate escape)
make ``parse_events`` return None, so ``json`` decides them. Set
``BACKENDAPI_SPEEDUPS=0`` in the environment to leave msgspec unused.

Nesting: one event's JSON may nest :data:`MAX_EVENT_DEPTH` objects and arrays
deep, the same with either parser and whatever the caller's stack. Both
parsers recurse, and stop only at Python's recursion limit, which depends on
how deep the caller already is; so ``parse_events`` refuses a batch holding a
deeper text, and :func:`loads` (the per-line path's parser) raises
:class:`NestingError` for one, or parses a text within the limit without
recursion (:func:`loads_flat`) where the stack is too short for the stdlib's.
"""

from __future__ import annotations

import json.decoder
import os
import re
from itertools import compress, repeat
from operator import contains, itemgetter
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

__all__ = [
    "MAX_EVENT_DEPTH",
    "NestingError",
    "loads",
    "loads_flat",
    "msgspec_parse_events",
    "parse_events",
    "scan_once",
    "speedups",
    "stdlib_parse_events",
    "too_deep",
]

scan_once: Callable[[str, int], Tuple[Any, int]] = json.decoder.JSONDecoder().scan_once  # type: ignore[attr-defined]

MAX_EVENT_DEPTH = 100
"""How deep one event's JSON may nest objects and arrays (the event's own object is level 1).

Deeper JSON is a :class:`~backendapi.DecodeError`. Real events nest a few
levels; 100 leaves a recursive parser room to spare on any stack.
"""

SHALLOW = 2 * MAX_EVENT_DEPTH + 1
"""A JSON text this long or shorter nests no deeper than the limit: a level takes 2 characters."""

_Text = Union[str, bytes, bytearray]
# JSON's whitespace, as its "end()": "*" always matches, so the match is never None.
_Skip = Callable[[str, int], "re.Match[str]"]
_whitespace: _Skip = re.compile(r"[ \t\n\r]*").match  # type: ignore[assignment]
_TOO_DEEP = f"JSON nested deeper than {MAX_EVENT_DEPTH} levels"
_COUNTED = 1 << 16  # characters: a longer text's brackets are looked for, not counted
_TYPED_DEPTH = 6  # levels: how deep msgspec's fast path decodes events as a typed value


class NestingError(ValueError):
    """JSON nested deeper than :data:`MAX_EVENT_DEPTH`."""


def _few_brackets(text: _Text) -> bool:
    """True when ``text`` opens at most ``MAX_EVENT_DEPTH`` objects and arrays, strings included."""
    brackets = ("{", "[") if isinstance(text, str) else (b"{", b"[")
    if len(text) <= _COUNTED:
        return text.count(brackets[0]) + text.count(brackets[1]) <= MAX_EVENT_DEPTH  # type: ignore[arg-type]
    # A long text (an image's data, most likely) is searched, which memchr does fast, and
    # only up to the bracket past the limit.
    found = 0
    for bracket in brackets:
        at = text.find(bracket)  # type: ignore[arg-type]
        while at >= 0:
            found += 1
            if found > MAX_EVENT_DEPTH:
                return False
            at = text.find(bracket, at + 1)  # type: ignore[arg-type]
    return True


def _nests_too_deep(value: Any) -> bool:
    """True when ``value`` (parsed JSON) nests deeper than ``MAX_EVENT_DEPTH``."""
    level = [value]
    for _ in range(MAX_EVENT_DEPTH):
        level = [
            child
            for node in level
            for child in (node.values() if node.__class__ is dict else node)
            if child.__class__ is dict or child.__class__ is list
        ]
        if not level:
            return False
    return True


def too_deep(text: _Text, value: Any) -> bool:
    """True when ``value``, parsed from ``text``, nests deeper than ``MAX_EVENT_DEPTH``.

    Cheap for the usual texts: short ones cannot, and one that opens few
    brackets cannot either; only then is ``value`` walked, level by level.
    """
    return len(text) > SHALLOW and not _few_brackets(text) and _nests_too_deep(value)


def loads(payload: _Text) -> Any:
    """``json.loads(payload)``, with the nesting limited to ``MAX_EVENT_DEPTH`` on any stack.

    Raises :class:`NestingError` when the JSON nests deeper than the limit
    before any syntax error, else ``ValueError`` as ``json.loads`` does. A text
    within the limit is parsed whatever the caller's stack depth: where the
    stdlib's recursive scanner runs out of stack, :func:`loads_flat` takes over.
    """
    try:
        value = json.loads(payload)
    except RecursionError:
        return loads_flat(_decoded(payload))
    except ValueError:
        # Deeper than the limit before the error: a NestingError, as loads_flat (which a
        # shorter stack makes the parser) says, so that the caller's stack changes nothing.
        if not _few_brackets(payload) and _too_deep_before_error(payload):
            raise NestingError(_TOO_DEEP) from None
        raise
    if too_deep(payload, value):
        raise NestingError(_TOO_DEEP)
    return value


def _too_deep_before_error(payload: _Text) -> bool:
    """True when invalid JSON nests deeper than the limit before its first error."""
    try:
        loads_flat(_decoded(payload))
    except NestingError:
        return True
    except ValueError:  # UnicodeDecodeError included
        pass
    return False


def _decoded(payload: _Text) -> str:
    """The text ``json.loads`` reads from ``payload``."""
    if isinstance(payload, str):
        return payload
    return bytes(payload).decode(json.detect_encoding(payload), "surrogatepass")


def loads_flat(text: str) -> Any:
    """``json.loads(text)`` without recursion, or :class:`NestingError` once past the limit.

    The stdlib's C scanner reads every number, string and constant; the
    objects and arrays around them are followed with a list, so the stack
    never grows. Errors are the stdlib's (``json.JSONDecodeError``), at the
    same positions.
    """
    skip = _whitespace
    error = json.JSONDecodeError
    stack: List[List[Any]] = []  # [container, its key waiting for a value (None in a list)]
    at = skip(text, 0).end()
    while True:
        # A value starts at `at`.
        char = text[at : at + 1]
        if char == "{" or char == "[":
            if len(stack) >= MAX_EVENT_DEPTH:
                raise NestingError(_TOO_DEEP)
            at = skip(text, at + 1).end()
            if text[at : at + 1] == ("}" if char == "{" else "]"):
                value: Any = {} if char == "{" else []
                at += 1
            elif char == "[":
                stack.append([[], None])
                continue
            else:
                key, at = _key(text, at)
                stack.append([{}, key])
                continue
        else:
            try:
                value, at = scan_once(text, at)
            except StopIteration as exc:
                raise error("Expecting value", text, exc.value) from None
        # A value ends at `at`: into its container, and out of the containers it closes.
        while True:
            if not stack:
                end = skip(text, at).end()
                if end != len(text):
                    raise error("Extra data", text, end)
                return value
            frame = stack[-1]
            container, key = frame
            if key is None:
                container.append(value)
            else:
                container[key] = value
            at = skip(text, at).end()
            char = text[at : at + 1]
            if char == ",":
                at = skip(text, at + 1).end()
                if key is not None:
                    frame[1], at = _key(text, at)
                break
            if char == ("]" if key is None else "}"):
                at += 1
                value = container
                stack.pop()
                continue
            raise error("Expecting ',' delimiter", text, at)


def _key(text: str, at: int) -> Tuple[str, int]:
    """An object's key at ``at``, and where its value starts (after the ``:``)."""
    error = json.JSONDecodeError
    if text[at : at + 1] != '"':
        raise error("Expecting property name enclosed in double quotes", text, at)
    key, at = scan_once(text, at)
    at = _whitespace(text, at).end()
    if text[at : at + 1] != ":":
        raise error("Expecting ':' delimiter", text, at)
    return key, _whitespace(text, at + 1).end()


Parser = Callable[[List[str]], Optional[List[Dict[str, Any]]]]
"""A batch parser: event texts in; their dicts, or None unless each is one event object."""

_value = itemgetter(0)
_end = itemgetter(1)


def stdlib_parse_events(texts: List[str]) -> Optional[List[Dict[str, Any]]]:
    """``parse_events`` on the stdlib's scanner alone."""
    # A text that starts with "{" and that the scanner reads to its end is one
    # object; map() stops early, silently, if the scanner raises StopIteration,
    # which the length comparison catches.
    if not all(map(str.startswith, texts, repeat("{"))):
        return None
    try:
        found = list(map(scan_once, texts, repeat(0)))
    except (ValueError, RecursionError):
        return None
    lengths = list(map(len, texts))
    if len(found) != len(texts) or list(map(_end, found)) != lengths:
        return None
    objects: List[Dict[str, Any]] = list(map(_value, found))
    if not all(map(contains, objects, repeat("type"))):
        return None
    if max(lengths) > SHALLOW and _any_too_deep(texts, objects):
        return None
    return objects


def _any_too_deep(texts: List[str], objects: List[Any]) -> bool:
    """True when one of ``objects`` (parsed from ``texts``) nests deeper than the limit."""
    long = list(map(SHALLOW.__lt__, map(len, texts)))
    return any(map(too_deep, compress(texts, long), compress(objects, long)))


def msgspec_parse_events() -> Optional[Parser]:
    """``parse_events`` on msgspec, or None where msgspec is not installed."""
    try:
        import msgspec.json
    except ImportError:
        return None
    # The usual events nest a few levels: decoded as a type that nests no deeper than
    # _TYPED_DEPTH, they need no depth check (its cost would show on small events). The
    # type decodes exactly what decoding as Any does (bool, int of any size, float, str,
    # None, list, dict), and refuses anything deeper, where it stops, without recursing.
    value: Any = Union[None, bool, int, float, str]
    for _ in range(_TYPED_DEPTH - 1):
        value = Union[None, bool, int, float, str, List[value], Dict[str, value]]
    decode_shallow = msgspec.json.Decoder(Dict[str, value]).decode
    decode = msgspec.json.Decoder(dict).decode
    # msgspec's errors are ValueErrors in its recent releases (0.23 here), not in
    # older ones (0.20, the last for Python 3.9 here): there, only MsgspecErrors.
    errors = (ValueError, RecursionError, msgspec.MsgspecError)
    deeper = msgspec.ValidationError

    def parse_events(texts: List[str]) -> Optional[List[Dict[str, Any]]]:
        try:
            objects: List[Dict[str, Any]] = list(map(decode_shallow, texts))
        except deeper:
            # Deeper than the type (or a number out of range): decoded as Any, then checked.
            try:
                objects = list(map(decode, texts))
            except errors:
                return None
            if max(map(len, texts)) > SHALLOW and _any_too_deep(texts, objects):
                return None
        except errors:
            return None
        if not all(map(contains, objects, repeat("type"))):
            return None
        return objects

    return parse_events


def _speedups_allowed() -> bool:
    setting = os.environ.get("BACKENDAPI_SPEEDUPS", "").strip().lower()
    return setting not in ("0", "false", "no", "off")


_chosen: Optional[Parser] = None


def _choose() -> Parser:
    # Chosen on first use, not at import: importing msgspec takes ~10 ms.
    global _chosen, parse_events
    if _chosen is None:
        found = msgspec_parse_events() if _speedups_allowed() else None
        _chosen = found if found is not None else stdlib_parse_events
    if parse_events is _parse_events_first:  # unless something else was put there
        parse_events = _chosen
    return _chosen


def speedups() -> Optional[str]:
    """The speedup in use: ``"msgspec"``, or None for the stdlib alone."""
    return None if _choose() is stdlib_parse_events else "msgspec"


def _parse_events_first(texts: List[str]) -> Optional[List[Dict[str, Any]]]:
    return _choose()(texts)


parse_events: Parser = _parse_events_first
"""Parse a batch of event texts into dicts; None unless each is one event object."""
