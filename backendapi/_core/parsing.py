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
"""

from __future__ import annotations

import json.decoder
import os
from itertools import repeat
from operator import contains, itemgetter
from typing import Any, Callable, Dict, List, Optional, Tuple

__all__ = [
    "msgspec_parse_events",
    "parse_events",
    "scan_once",
    "speedups",
    "stdlib_parse_events",
]

scan_once: Callable[[str, int], Tuple[Any, int]] = json.decoder.JSONDecoder().scan_once  # type: ignore[attr-defined]

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
    if len(found) != len(texts) or list(map(_end, found)) != list(map(len, texts)):
        return None
    objects: List[Dict[str, Any]] = list(map(_value, found))
    if not all(map(contains, objects, repeat("type"))):
        return None
    return objects


def msgspec_parse_events() -> Optional[Parser]:
    """``parse_events`` on msgspec, or None where msgspec is not installed."""
    try:
        import msgspec.json
    except ImportError:
        return None
    decode = msgspec.json.Decoder(dict).decode
    # msgspec's errors are ValueErrors in its recent releases (0.23 here), not in
    # older ones (0.20, the last for Python 3.9 here): there, only MsgspecErrors.
    errors = (ValueError, RecursionError, msgspec.MsgspecError)

    def parse_events(texts: List[str]) -> Optional[List[Dict[str, Any]]]:
        try:
            objects: List[Dict[str, Any]] = list(map(decode, texts))
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
