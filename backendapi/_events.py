"""The event type: :class:`RawResponse`, one JSON object from the stream."""

from __future__ import annotations

from typing import Any, Dict, Iterator, Mapping, Optional, Tuple

__all__ = ["RawResponse"]

# Keys whose values a repr never shows, wherever they sit in the event.
_SECRET_KEYS = frozenset({"api_key", "apikey", "authorization", "x-secret", "secret"})
_REPR_STRING_LIMIT = 200


class RawResponse:
    """One event of the stream: the server's JSON object, keys as attributes.

    Compatible with gpt4free's ``RawResponse`` (``RawResponse(**event)``,
    attribute access, ``get_dict()``), and beyond it:

    >>> event = RawResponse(type="content", content="Hello")
    >>> event.type, event.content, event.get("missing", "-")
    ('content', 'Hello', '-')
    >>> event == RawResponse(type="content", content="Hello")
    True
    >>> event
    RawResponse(type='content', content='Hello')

    Every key of the event is kept, whatever its name: keys that are not
    Python identifiers (``"user-agent"``) or that shadow a method
    (``"get_dict"``) are reached with ``event["user-agent"]`` or
    ``event.get("get_dict")``, and never replace the method.
    """

    __slots__ = ("_data",)
    _data: Dict[str, Any]

    def __init__(self, _data: Optional[Mapping[str, Any]] = None, /, **fields: Any) -> None:
        data = dict(_data) if _data is not None else {}
        data.update(fields)
        object.__setattr__(self, "_data", data)

    @classmethod
    def _adopt(cls, data: Dict[str, Any]) -> RawResponse:
        """Wrap ``data`` without copying it; the decoder hands over fresh dicts."""
        event = cls.__new__(cls)
        object.__setattr__(event, "_data", data)
        return event

    @property
    def type(self) -> str:
        """The event type (``"content"``, ``"usage"``, ...); ``""`` if absent."""
        value = self._data.get("type", "")
        return value if isinstance(value, str) else str(value)

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails, so methods and slots win over keys.
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self._data[name]
        except KeyError:
            raise AttributeError(
                f"{type(self).__name__} of type {self.type!r} has no field {name!r}"
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        # gpt4free's events are plain attribute bags; keep assignment working.
        self._data[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self._data[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def get(self, key: str, default: Any = None) -> Any:
        """Return the field ``key``, or ``default`` when the event lacks it."""
        return self._data.get(key, default)

    def keys(self) -> Iterator[str]:
        """Iterate over the event's field names."""
        return iter(self._data)

    def get_dict(self) -> Dict[str, Any]:
        """Return the event as a new ``dict`` (gpt4free's name for it)."""
        return dict(self._data)

    to_dict = get_dict

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RawResponse):
            return self._data == other._data
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, like a dict

    def __repr__(self) -> str:
        named = [
            f"{key}={_repr_value(key, value)}"
            for key, value in self._data.items()
            if key.isidentifier()
        ]
        others = [
            f"{key!r}: {_repr_value(key, value)}"
            for key, value in self._data.items()
            if not key.isidentifier()
        ]
        if others:
            named.append("**{" + ", ".join(others) + "}")
        return f"{type(self).__name__}({', '.join(named)})"

    __str__ = __repr__

    def __reduce__(self) -> Tuple[Any, ...]:
        return (RawResponse, (self._data,))


def _repr_value(key: str, value: Any) -> str:
    if key.lower() in _SECRET_KEYS and value:
        return "'***'"
    if isinstance(value, dict):
        inner = ", ".join(f"{k!r}: {_repr_value(str(k), v)}" for k, v in value.items())
        return "{" + inner + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_repr_value("", item) for item in value) + "]"
    if isinstance(value, str) and len(value) > _REPR_STRING_LIMIT:
        return repr(value[:_REPR_STRING_LIMIT]) + f"...({len(value)} chars)"
    return repr(value)
