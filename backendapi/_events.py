"""The event type: :class:`RawResponse`, one JSON object from the stream."""

from __future__ import annotations

from functools import partial
from types import MethodType
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

    # The fields are the instance's __dict__, so event.content is a plain
    # attribute lookup. The methods are made data descriptors below the class,
    # so a field named like one ("get", "keys"...) never hides it.
    __slots__ = ("__dict__",)

    def __init__(self, _data: Optional[Mapping[str, Any]] = None, /, **fields: Any) -> None:
        data = dict(_data) if _data is not None else {}
        data.update(fields)
        object.__setattr__(self, "__dict__", data)

    @classmethod
    def _adopt(cls, data: Dict[str, Any]) -> RawResponse:
        """Wrap ``data`` without copying it; the decoder hands over fresh dicts.

        A ``type`` that is no string is made one (``str()``), so that
        ``event.type`` always is.
        """
        _string_type(data)
        event = _new(cls)
        _set_fields(event, data)
        return event

    @property
    def _data(self) -> Dict[str, Any]:
        """The fields (the instance's ``__dict__``)."""
        return self.__dict__

    # The event type ("content", "usage"...): its "type" field, "" if absent. The
    # field is read straight from __dict__ (no property: this is the attribute
    # every consumer's loop reads); __getattr__ answers "" when it is absent, and
    # the decoder makes a type that is no string one.
    type: str

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup (the class, then the fields) fails.
        if name == "type":
            return ""
        if name.startswith("__"):
            raise AttributeError(name)
        raise AttributeError(f"{type(self).__name__} of type {self.type!r} has no field {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        # gpt4free's events are plain attribute bags; keep assignment working.
        self.__dict__[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self.__dict__[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, key: str) -> Any:
        return self.__dict__[key]

    def __contains__(self, key: object) -> bool:
        return key in self.__dict__

    def get(self, key: str, default: Any = None) -> Any:
        """Return the field ``key``, or ``default`` when the event lacks it."""
        return self.__dict__.get(key, default)

    def keys(self) -> Iterator[str]:
        """Iterate over the event's field names."""
        return iter(self.__dict__)

    def get_dict(self) -> Dict[str, Any]:
        """Return the event as a new ``dict`` (gpt4free's name for it)."""
        return dict(self.__dict__)

    to_dict = get_dict

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RawResponse):
            return self.__dict__ == other.__dict__
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, like a dict

    def __repr__(self) -> str:
        named = [
            f"{key}={_repr_value(key, value)}"
            for key, value in self.__dict__.items()
            if key.isidentifier()
        ]
        others = [
            f"{key!r}: {_repr_value(key, value)}"
            for key, value in self.__dict__.items()
            if not key.isidentifier()
        ]
        if others:
            named.append("**{" + ", ".join(others) + "}")
        return f"{type(self).__name__}({', '.join(named)})"

    __str__ = __repr__

    def __reduce__(self) -> Tuple[Any, ...]:
        return (RawResponse, (self.__dict__,))


_new = object.__new__
# RawResponse's own __dict__ slot, set directly: __setattr__ would add a field.
_set_fields = RawResponse.__dict__["__dict__"].__set__

# Methods as data descriptors (property -> partial -> bound method, all in C):
# they win over the instance's fields, so a field named "get" never hides get().
for _name in ("get", "keys", "get_dict", "to_dict", "__reduce__", "__repr__", "__str__"):
    setattr(RawResponse, _name, property(partial(MethodType, getattr(RawResponse, _name))))
del _name


def _string_type(data: Dict[str, Any]) -> None:
    """Make a ``type`` that is no string one (``str()``), so that ``event.type`` always is."""
    kind = data.get("type", "")
    if kind.__class__ is not str:
        data["type"] = str(kind)


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
