"""Tools the model may call, with no I/O: definitions from Python functions, calls gathered.

``create(..., tools=[...])`` takes OpenAI-style definitions
(``{"type": "function", "function": {"name", "description", "parameters"}}``)
and plain Python functions, whose definition is made here from the signature,
the type hints and the docstring. Everything is checked before any request:
a tool that is neither, or whose parameters have no JSON form, is an
:class:`InvalidInputError` naming it.

The answer's ``tool_calls`` events may bring a call in pieces (OpenAI-style
deltas: the first piece has the ``id`` and the name, the next ones more of the
``arguments`` text, all with the same ``index``); :class:`ToolCallGatherer`
puts them back together.
"""

from __future__ import annotations

import copy
import enum
import inspect
import json
import re
import sys
import typing
from collections import abc
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from .._errors import InvalidInputError, ToolCallError

__all__ = [
    "ToolCallGatherer",
    "ToolSpec",
    "function_definition",
    "parse_docstring",
    "prepare_tools",
    "tool_arguments",
    "tool_definitions",
    "tool_result_content",
]

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""What OpenAI (and the providers behind g4f that check) accepts as a function name."""

_SIMPLE: Dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}
_ARRAYS = (list, tuple, set, frozenset, abc.Sequence, abc.MutableSequence, abc.Set, abc.MutableSet)
_OBJECTS = (dict, abc.Mapping, abc.MutableMapping)
_UNION_TYPES: Tuple[Any, ...] = (typing.Union,)
if sys.version_info >= (3, 10):  # pragma: no cover - depends on the Python running
    import types

    _UNION_TYPES += (types.UnionType,)


class _NoJsonForm(Exception):
    """A type hint with no JSON Schema: the message says which."""


class ToolSpec:
    """One tool as a request sends it: its definition, and the Python function behind it.

    Attributes:
        name: the function's name (None for a definition of another ``type``).
        definition: the OpenAI-style definition sent in ``tools``.
        function: the Python function to call, or None for a definition given as a dict.
    """

    __slots__ = ("definition", "function", "name")

    def __init__(
        self,
        name: Optional[str],
        definition: Dict[str, Any],
        function: Optional[Callable[..., Any]] = None,
    ) -> None:
        self.name = name
        self.definition = definition
        self.function = function

    def __repr__(self) -> str:
        kind = "function" if self.function is not None else "definition"
        return f"ToolSpec({self.name!r}, {kind})"


def prepare_tools(tools: object) -> List[ToolSpec]:
    """Check ``tools`` and make each one's definition; raise InvalidInputError naming a bad one.

    ``tools`` is a list (or tuple) of Python functions and OpenAI-style
    definition dicts. Two tools of the same name are an error.
    """
    if isinstance(tools, (str, bytes, abc.Mapping)) or not isinstance(tools, (list, tuple)):
        raise InvalidInputError(
            f"tools must be a list of functions or tool definitions, not {type(tools).__name__}"
        )
    specs: List[ToolSpec] = []
    seen: Dict[str, int] = {}
    for index, tool in enumerate(tools):
        where = f"tools[{index}]"
        if isinstance(tool, abc.Mapping):
            spec = _definition_spec(tool, where)
        elif callable(tool):
            spec = ToolSpec(*_function_spec(tool, where))
        else:
            raise InvalidInputError(
                f"{where} is a {type(tool).__name__}, not a function or a tool definition "
                "({'type': 'function', 'function': {'name': ..., 'parameters': ...}})"
            )
        if spec.name is not None:
            if spec.name in seen:
                raise InvalidInputError(
                    f"{where}: a tool named {spec.name!r} is already tools[{seen[spec.name]}]"
                )
            seen[spec.name] = index
        specs.append(spec)
    return specs


def function_definition(function: Callable[..., Any]) -> Dict[str, Any]:
    """The OpenAI-style tool definition ``create(tools=[function])`` sends for ``function``.

    Its ``name`` is the function's; its ``description`` the docstring's text
    before any section (``Args:``, ``:param ...:``, ``Returns:``...); its
    ``parameters`` a JSON Schema object with a property per parameter, from
    the type hints (``str``, ``int``, ``float``, ``bool``, ``list[...]``,
    ``tuple[...]``, ``set[...]``, ``dict[str, ...]``, ``Optional``/``Union``,
    ``Literal``, ``Enum`` subclasses, ``Any``, ``None``), each described by
    its entry in a Google-style ``Args:`` section or a Sphinx-style
    ``:param name:`` line. Parameters without a default are ``required``. A
    parameter with no type hint takes the type of its default (a str, int,
    float or bool); otherwise it is an error.

    >>> def weather(city: str, unit: str = "celsius") -> str:
    ...     '''The weather in a city.
    ...
    ...     Args:
    ...         city: the city's name.
    ...     '''
    >>> function_definition(weather)["function"]["parameters"]["required"]
    ['city']
    """
    return _function_spec(function, "the function")[1]


def _function_spec(
    function: Callable[..., Any], where: str
) -> Tuple[str, Dict[str, Any], Callable[..., Any]]:
    if isinstance(function, type):
        raise InvalidInputError(
            f"{where} is the class {function.__name__}, not a function: pass a function "
            "(or a tool definition dict)"
        )
    name = getattr(function, "__name__", None)
    shown = f"{where} ({name})" if isinstance(name, str) else where
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidInputError(
            f"{shown} has no usable name ({name!r}): a tool's name is 1 to 64 letters, "
            "digits, '_' or '-'; wrap it in a def (lambdas and partials have none)"
        )
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{shown}: its signature cannot be read: {exc}") from None
    try:
        hints = typing.get_type_hints(function)
    except Exception as exc:  # a forward reference that does not resolve, say
        raise InvalidInputError(f"{shown}: its type hints cannot be resolved: {exc}") from None
    summary, described = parse_docstring(inspect.getdoc(function) or "")
    properties: Dict[str, Any] = {}
    required: List[str] = []
    for parameter in signature.parameters.values():
        label = f"{shown}, parameter {parameter.name!r}"
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise InvalidInputError(
                f"{label}: *args and **kwargs have no JSON form; name each parameter"
            )
        if parameter.kind is parameter.POSITIONAL_ONLY:
            raise InvalidInputError(f"{label} is positional-only; a tool is called by name")
        has_default = parameter.default is not parameter.empty
        if parameter.name in hints:
            annotation = hints[parameter.name]
        elif has_default and type(parameter.default) in _SIMPLE:
            annotation = type(parameter.default)
        else:
            raise InvalidInputError(
                f"{label} has no type hint: add one (typing.Any for any JSON value)"
            )
        try:
            schema = _schema(annotation)
        except _NoJsonForm as exc:
            raise InvalidInputError(f"{label}: {exc}") from None
        if parameter.name in described:
            schema = {**schema, "description": described[parameter.name]}
        properties[parameter.name] = schema
        if not has_default:
            required.append(parameter.name)
    parameters: Dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        parameters["required"] = required
    body: Dict[str, Any] = {"name": name, "description": summary, "parameters": parameters}
    return name, {"type": "function", "function": body}, function


def _definition_spec(tool: Mapping[str, Any], where: str) -> ToolSpec:
    kind = tool.get("type")
    if not isinstance(kind, str) or not kind:
        raise InvalidInputError(
            f"{where} has no 'type': a tool definition is "
            "{'type': 'function', 'function': {'name': ..., 'parameters': ...}}"
        )
    try:
        definition = json.loads(json.dumps(tool, allow_nan=False))  # a deep copy, and a check
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{where} cannot be sent as JSON: {exc}") from None
    if not isinstance(definition, dict) or any(not isinstance(key, str) for key in tool):
        raise InvalidInputError(f"{where} must have str keys")
    if kind != "function":
        return ToolSpec(None, definition)
    function = definition.get("function")
    if not isinstance(function, dict):
        raise InvalidInputError(f"{where}['function'] must be a dict with a 'name'")
    name = function.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidInputError(
            f"{where}['function']['name'] must be 1 to 64 letters, digits, '_' or '-', got {name!r}"
        )
    parameters = function.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise InvalidInputError(
            f"{where} ({name}): 'parameters' must be a JSON Schema object, "
            f"not {type(parameters).__name__}"
        )
    description = function.get("description")
    if description is not None and not isinstance(description, str):
        raise InvalidInputError(f"{where} ({name}): 'description' must be a str")
    return ToolSpec(name, definition)


# -- type hints to JSON Schema ---------------------------------------------------------------


def _schema(annotation: Any) -> Dict[str, Any]:
    if annotation is Any:
        return {}
    if annotation is None or annotation is type(None):
        return {"type": "null"}
    if annotation in _SIMPLE:
        return {"type": _SIMPLE[annotation]}
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return _enum_schema([member.value for member in annotation], annotation.__name__)
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin is typing.Literal:
        return _enum_schema(list(arguments), repr(annotation))
    if origin in _UNION_TYPES or isinstance(annotation, _UNION_TYPES[1:]):
        return _union_schema(arguments)
    if annotation in _ARRAYS or origin in _ARRAYS:
        return _array_schema(origin or annotation, arguments)
    if annotation in _OBJECTS or origin in _OBJECTS:
        if not arguments:
            return {"type": "object"}
        key, value = arguments
        if key is not str:
            raise _NoJsonForm(f"{annotation!r}: JSON object keys are str")
        return {"type": "object", "additionalProperties": _schema(value)}
    raise _NoJsonForm(
        f"{annotation!r} has no JSON form (use str, int, float, bool, list, dict, "
        "Optional, Literal, an Enum or Any)"
    )


def _enum_schema(values: List[Any], shown: str) -> Dict[str, Any]:
    kinds = set()
    for value in values:
        if value is None:
            kinds.add("null")
        elif type(value) in _SIMPLE:
            kinds.add(_SIMPLE[type(value)])
        else:
            raise _NoJsonForm(f"{shown}: the value {value!r} has no JSON form")
    schema: Dict[str, Any] = {"enum": values}
    if len(kinds) == 1:
        schema = {"type": kinds.pop(), **schema}
    return schema


def _union_schema(arguments: Sequence[Any]) -> Dict[str, Any]:
    others = [argument for argument in arguments if argument is not type(None)]
    nullable = len(others) < len(arguments)
    if len(others) == 1:
        schema = _schema(others[0])
    else:
        schema = {"anyOf": [_schema(argument) for argument in others]}
    if not nullable:
        return schema
    kind = schema.get("type")
    if isinstance(kind, str) and "enum" not in schema:
        return {**schema, "type": [kind, "null"]}
    if "anyOf" in schema and len(schema) == 1:
        return {"anyOf": [*schema["anyOf"], {"type": "null"}]}
    return {"anyOf": [schema, {"type": "null"}]}


def _array_schema(container: Any, arguments: Sequence[Any]) -> Dict[str, Any]:
    schema: Dict[str, Any] = {"type": "array"}
    if container in (set, frozenset, abc.Set, abc.MutableSet):
        schema["uniqueItems"] = True
    if container is tuple and arguments and not (len(arguments) == 2 and arguments[1] is ...):
        items = [_schema(argument) for argument in arguments]
        return {**schema, "prefixItems": items, "minItems": len(items), "maxItems": len(items)}
    if arguments:
        schema["items"] = _schema(arguments[0])
    return schema


# -- docstrings ----------------------------------------------------------------------------

_GOOGLE_PARAMETERS = re.compile(
    r"(Args|Arguments|Parameters|Params|Keyword Args|Keyword Arguments|Other Parameters):"
)
_GOOGLE_SECTION = re.compile(
    r"(Args|Arguments|Parameters|Params|Keyword Args|Keyword Arguments|Other Parameters|"
    r"Returns?|Yields?|Raises|Examples?|Notes?|Warnings?|Attributes|See Also|Todo|References):"
)
_GOOGLE_ENTRY = re.compile(r"\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)")
_SPHINX_FIELD = re.compile(r":(\w+)(?:\s+([^:]*?))?:\s*(.*)")


def parse_docstring(doc: str) -> Tuple[str, Dict[str, str]]:
    """A docstring's description, and its parameters' descriptions by name.

    Reads Google style (an ``Args:`` section of ``name (type): text`` entries)
    and Sphinx style (``:param name: text``, ``:param type name: text``);
    an entry's indented lines continue it.

    >>> parse_docstring("Add.\\n\\n:param a: the first.\\n:param int b: the second.")
    ('Add.', {'a': 'the first.', 'b': 'the second.'})
    """
    lines = inspect.cleandoc(doc).splitlines() if doc else []
    description: List[str] = []
    parameters: Dict[str, str] = {}
    index = 0
    in_description = True
    while index < len(lines):
        line = lines[index]
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        sphinx = _SPHINX_FIELD.fullmatch(stripped)
        if sphinx is not None:
            in_description = False
            index, text = _continued(lines, index, indent, sphinx.group(3))
            field, target = sphinx.group(1), (sphinx.group(2) or "").split()
            if field in ("param", "parameter", "arg", "argument", "key", "keyword") and target:
                parameters[target[-1]] = text
            continue
        if _GOOGLE_SECTION.fullmatch(stripped):
            in_description = False
            is_parameters = _GOOGLE_PARAMETERS.fullmatch(stripped) is not None
            index += 1
            while index < len(lines):
                entry_line = lines[index]
                entry_indent = len(entry_line) - len(entry_line.lstrip())
                if entry_line.strip() and entry_indent <= indent:
                    break
                entry = _GOOGLE_ENTRY.fullmatch(entry_line.strip())
                if is_parameters and entry is not None:
                    index, text = _continued(lines, index, entry_indent, entry.group(2))
                    parameters[entry.group(1)] = text
                else:
                    index += 1
            continue
        if in_description:
            description.append(line)
        index += 1
    return "\n".join(description).strip(), parameters


def _continued(lines: List[str], index: int, indent: int, first: str) -> Tuple[int, str]:
    """The text of the entry on ``lines[index]`` with its more-indented lines; the next index."""
    parts = [first.strip()] if first.strip() else []
    index += 1
    while index < len(lines):
        line = lines[index]
        if line.strip() and len(line) - len(line.lstrip()) <= indent:
            break
        if not line.strip():
            # A blank line inside an entry is kept only if the entry goes on after it.
            following = next((later for later in lines[index + 1 :] if later.strip()), "")
            if len(following) - len(following.lstrip()) <= indent:
                break
        elif line.strip():
            parts.append(line.strip())
        index += 1
    return index, " ".join(parts)


# -- calls ---------------------------------------------------------------------------------


class ToolCallGatherer:
    """The tool calls of one answer, put together from the ``tool_calls`` events' pieces.

    g4f 8.8.6 sends a provider's tool calls as it gets them: whole calls, or
    OpenAI-style deltas whose first piece has the ``id``, the ``type`` and the
    function's name and whose next pieces (same ``index``, no name) carry
    more of the ``arguments`` text. Pieces with the same ``index`` belong to
    one call, unless a piece brings another ``id`` (a new call).
    """

    __slots__ = ("_by_index", "calls")

    def __init__(self) -> None:
        self.calls: List[Dict[str, Any]] = []
        """The calls so far: ``{"id", "type", "function": {"name", "arguments"}}`` each."""
        self._by_index: Dict[int, Dict[str, Any]] = {}

    def add(self, pieces: Any) -> None:
        """Take one ``tool_calls`` event's list (a dict is taken as a list of one)."""
        if isinstance(pieces, dict):
            pieces = [pieces]
        if not isinstance(pieces, list):
            return
        for piece in pieces:
            if isinstance(piece, dict):
                self._add_piece(piece)

    def _add_piece(self, piece: Dict[str, Any]) -> None:
        function = piece.get("function")
        if not isinstance(function, dict):
            function = {}
        name = function.get("name")
        arguments = function.get("arguments")
        if arguments is None:
            arguments = ""
        elif not isinstance(arguments, str):
            try:
                arguments = json.dumps(arguments, ensure_ascii=False)
            except (TypeError, ValueError):
                arguments = ""
        call_id = piece.get("id")
        index = piece.get("index")
        key = index if isinstance(index, int) and not isinstance(index, bool) else None
        call = self._by_index.get(key) if key is not None else None
        if call is None or (
            isinstance(call_id, str) and call_id and call["id"] not in ("", call_id)
        ):
            call = {
                "id": call_id if isinstance(call_id, str) else "",
                "type": piece.get("type") if isinstance(piece.get("type"), str) else "function",
                "function": {"name": name if isinstance(name, str) else "", "arguments": arguments},
            }
            self.calls.append(call)
            if key is not None:
                self._by_index[key] = call
            return
        if isinstance(call_id, str) and call_id and not call["id"]:
            call["id"] = call_id
        if isinstance(name, str) and name and not call["function"]["name"]:
            call["function"]["name"] = name
        call["function"]["arguments"] += arguments


# -- running a call --------------------------------------------------------------------------


def tool_arguments(call: Mapping[str, Any], function: Callable[..., Any]) -> Dict[str, Any]:
    """The keyword arguments ``function`` gets for ``call``; ToolCallError if they do not fit.

    The call's ``arguments`` text must be a JSON object (empty text is
    ``{}``) that binds to the function's parameters; a value for an ``Enum``
    parameter becomes the member with that value.
    """
    name = call.get("function", {}).get("name")
    text = call.get("function", {}).get("arguments") or "{}"
    try:
        arguments = json.loads(text) if isinstance(text, str) else text
    except ValueError as exc:
        raise ToolCallError(
            f"the arguments of the call to {name} ({call.get('id')}) are not JSON: {exc}"
        ) from None
    if not isinstance(arguments, dict):
        raise ToolCallError(
            f"the arguments of the call to {name} ({call.get('id')}) are not a JSON object"
        )
    signature = inspect.signature(function)
    try:
        signature.bind(**arguments)
    except TypeError as exc:
        raise ToolCallError(
            f"the call to {name} ({call.get('id')}) does not fit its parameters: {exc}"
        ) from None
    try:
        hints = typing.get_type_hints(function)
    except Exception:  # checked when the tool was prepared; a changed function keeps its values
        hints = {}
    converted = dict(arguments)
    for key, value in arguments.items():
        member_type = _enum_type(hints.get(key))
        if member_type is not None and value is not None and not isinstance(value, member_type):
            try:
                converted[key] = member_type(value)
            except ValueError:
                raise ToolCallError(
                    f"the call to {name} ({call.get('id')}): {value!r} is no "
                    f"{member_type.__name__} for {key!r}"
                ) from None
    return converted


def _enum_type(annotation: Any) -> Optional[type]:
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return annotation
    if typing.get_origin(annotation) in _UNION_TYPES or isinstance(annotation, _UNION_TYPES[1:]):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return _enum_type(members[0])
    return None


def tool_result_content(name: str, result: Any) -> str:
    """What a function's return value sends as the ``tool`` message's content.

    A str as it is; None as ``""``; anything else as JSON (an ``Enum`` by its
    value). A value with no JSON form is a :class:`ToolCallError`.
    """
    if isinstance(result, str):
        return result
    if result is None:
        return ""
    try:
        return json.dumps(result, ensure_ascii=False, allow_nan=False, default=_enum_value)
    except (TypeError, ValueError) as exc:
        raise ToolCallError(
            f"the tool {name} returned a {type(result).__name__}, which has no JSON form "
            f"({exc}): return a str, or JSON data"
        ) from None


def _enum_value(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def tool_definitions(specs: Sequence[ToolSpec]) -> List[Dict[str, Any]]:
    """The ``tools`` a request sends for ``specs`` (copies)."""
    return [copy.deepcopy(spec.definition) for spec in specs]
