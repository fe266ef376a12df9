"""Structured answers: an answer's text as JSON, or as an instance of a caller's class.

No I/O and no dependency: pydantic models are recognised by their methods
(``model_validate``, else ``parse_obj``), dataclasses by :mod:`dataclasses`.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
import typing
from typing import Any, Dict, Optional, Tuple, Type, TypeVar

from ._errors import AnswerParseError, InvalidInputError, excerpt

__all__ = ["parse_json", "parse_model"]

M = TypeVar("M")

# A fenced code block: an opening fence of three or more backticks at the start of a line,
# an optional info string (its first word is the language), the body, and a closing fence
# of at least as many backticks on a line of its own (or the end of the text: a stream
# cut short still parses).
_FENCE = re.compile(
    r"^[ \t]*(?P<fence>`{3,})[ \t]*(?P<lang>[^\s`]*)[^\n`]*\n(?P<body>.*?)"
    r"(?:^[ \t]*(?P=fence)`*[ \t]*$|\Z)",
    re.MULTILINE | re.DOTALL,
)
_JSON_LANGS = ("json", "jsonc", "json5")
_EXCERPT_BEFORE = 40
_EXCERPT_AFTER = 40


def _code_block(text: str) -> Optional[Tuple[int, str, str]]:
    """``(offset, language, body)`` of the block to parse: the first labelled ``json``,
    else the first with no label; None when there is neither."""
    unlabelled: Optional[Tuple[int, str, str]] = None
    for match in _FENCE.finditer(text):
        lang = match.group("lang").lower()
        block = (match.start("body"), lang, match.group("body"))
        if lang in _JSON_LANGS:
            return block
        if not lang and unlabelled is None:
            unlabelled = block
    return unlabelled


def _where(text: str, pos: int) -> Tuple[int, int]:
    """The line and column (both from 1) of ``text[pos]``."""
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return line, column


def _failure(text: str, error: json.JSONDecodeError, offset: int, block: str) -> AnswerParseError:
    pos = offset + error.pos
    line, column = _where(text, pos)
    near = text[max(0, pos - _EXCERPT_BEFORE) : pos + _EXCERPT_AFTER]
    source = "the answer's text" if not block else f"the answer's {block} (parsed as JSON)"
    message = (
        f"the answer is no JSON: {error.msg} at line {line}, column {column} (char {pos}) of "
        f"{source}, near {excerpt(near)}"
    )
    return AnswerParseError(message, lineno=line, colno=column, pos=pos)


def parse_json(text: str) -> Any:
    """``text`` parsed as JSON, or the first JSON fenced code block in it (see ``Answer.json``)."""
    if not text.strip():
        raise AnswerParseError("the answer is no JSON: its text is empty", pos=0)
    try:
        return json.loads(text)
    except RecursionError:
        raise AnswerParseError(
            "the answer is no JSON this parser can read: nested too deeply"
        ) from None
    except json.JSONDecodeError as whole:
        found = _code_block(text)
        if found is None:
            raise _failure(text, whole, 0, "") from whole
        offset, lang, body = found
        name = f"```{lang} code block" if lang else "fenced code block"
        line = _where(text, offset)[0]
        try:
            return json.loads(body)
        except RecursionError:
            raise AnswerParseError(
                f"the answer's {name} is no JSON this parser can read: nested too deeply"
            ) from None
        except json.JSONDecodeError as error:
            raise _failure(text, error, offset, f"{name} (from line {line})") from error


def parse_model(text: str, model: Type[M]) -> M:
    """``text``'s JSON as an instance of ``model`` (see ``Answer.parse``)."""
    if not isinstance(model, type):
        raise InvalidInputError(
            f"parse() takes a class (a pydantic model or a dataclass), not {model!r}"
        )
    validate = getattr(model, "model_validate", None) or getattr(model, "parse_obj", None)
    if validate is None and not dataclasses.is_dataclass(model):
        raise InvalidInputError(
            f"parse() takes a pydantic model (model_validate or parse_obj) or a dataclass, "
            f"not {model.__qualname__}"
        )
    data = parse_json(text)
    if validate is not None:
        try:
            result: M = validate(data)
        except (ValueError, TypeError) as error:  # pydantic's ValidationError is a ValueError
            raise AnswerParseError(
                f"the answer's JSON does not fit {model.__qualname__}: {error}",
                model=model.__qualname__,
            ) from error
        return result
    return typing.cast(M, _build(model, data, model.__qualname__, model.__qualname__))


# -- dataclasses ---------------------------------------------------------------------------


def _hints(cls: type) -> Dict[str, Any]:
    """The field types of dataclass ``cls``, string annotations resolved where they can be."""
    try:
        module = sys.modules.get(cls.__module__)
        return typing.get_type_hints(cls, vars(module) if module else None)
    except Exception:  # a name only the defining function knew: the raw annotations
        return {field.name: field.type for field in dataclasses.fields(cls)}


def _build(cls: type, data: Any, path: str, top: str) -> Any:
    """An instance of dataclass ``cls`` from the JSON object ``data`` (at ``path`` in the
    class ``top`` the caller asked for)."""
    if not isinstance(data, dict):
        raise AnswerParseError(
            f"the answer's JSON does not fit {top}: {path} should be an object, "
            f"not {_json_type(data)}",
            model=top,
        )
    hints = _hints(cls)
    values: Dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        if not field.init:
            continue
        at = f"{path}.{field.name}"
        if field.name not in data:
            required = (
                field.default is dataclasses.MISSING
                and field.default_factory is dataclasses.MISSING
            )
            if required:
                raise AnswerParseError(
                    f"the answer's JSON does not fit {top}: {at} is missing", model=top
                )
            continue
        values[field.name] = _convert(hints.get(field.name), data[field.name], at, top)
    try:
        return cls(**values)
    except (TypeError, ValueError) as error:  # a __post_init__ that refused the values
        raise AnswerParseError(
            f"the answer's JSON does not fit {top}: {path}: {error}", model=top
        ) from error


def _convert(hint: Any, value: Any, path: str, top: str) -> Any:
    """``value`` with the dataclasses ``hint`` names (in lists, dicts, Optional) built."""
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _build(hint, value, path, top)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or (sys.version_info >= (3, 10) and _is_union_type(origin)):
        if value is None:
            return None
        classes = [arg for arg in args if isinstance(arg, type) and dataclasses.is_dataclass(arg)]
        if len(classes) == 1 and isinstance(value, dict):
            return _build(classes[0], value, path, top)
        return value
    if origin is list and args and isinstance(value, list):
        return [
            _convert(args[0], item, f"{path}[{index}]", top) for index, item in enumerate(value)
        ]
    if origin is tuple and args and isinstance(value, list):
        if len(args) == 2 and args[1] is Ellipsis:
            args = (args[0],) * len(value)
        if len(args) == len(value):
            return tuple(
                _convert(arg, item, f"{path}[{index}]", top)
                for index, (arg, item) in enumerate(zip(args, value))
            )
        return tuple(value)
    if origin is dict and len(args) == 2 and isinstance(value, dict):
        return {
            key: _convert(args[1], item, f"{path}[{key!r}]", top) for key, item in value.items()
        }
    return value


def _is_union_type(origin: Any) -> bool:
    import types

    return origin is getattr(types, "UnionType", None)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__
