"""What a multi-turn chat keeps, with no I/O: :class:`BaseChat`.

``AsyncChat`` (``backendapi/_async/chat.py``) and the ``Chat`` generated
from it add only how a turn is sent.

A chat keeps what a Backend API server needs to continue a conversation: the
message history, the provider, and the provider state the server handed out
in ``conversation`` events. Each turn sends all of it again, as
``PROTOCOL.md`` ("Continuing a conversation") describes::

    with BackendApiClient("http://localhost:8080") as client:
        chat = Chat(client, "gpt-4o", provider="OpenaiChat", system="Be brief")
        print(chat.ask("Hello").text)
        print(chat.ask("And then?").text)     # carries the history and the state
        chat.save("chat.json")                # continue later with Chat.load(...)

It also continues a cut-off answer (``continue_()``, g4f's ``action:
"continue"``), asks for another answer in place of the last one
(``regenerate()``, ``action: "variant"``), and runs the tool loop: the
model asks for Python functions given as ``tools=``, the chat calls them and
sends their results back until the model answers (``ask(..., tools=[f])``,
``run_tools()``).
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
import os
import sys
import tempfile
import time
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Generic,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Type,
    TypeVar,
    Union,
)

from .._answer import Answer
from .._errors import BackendApiError, InvalidInputError, ToolRoundsExceededError
from .request import validate_messages
from .stream import StreamCore
from .tools import ToolSpec, prepare_tools, tool_arguments, tool_definitions, tool_result_content

if TYPE_CHECKING:
    from .._store import ConversationStore

__all__ = ["ANY_PROVIDER", "BaseChat", "CHAT_FORMAT_VERSION", "DEFAULT_MAX_TOOL_ROUNDS"]

CHAT_FORMAT_VERSION = 2
"""The ``version`` written by :meth:`Chat.to_dict`.

Version 2 added ``variants`` (the answers :meth:`regenerate` replaced) and
may hold tool messages; :meth:`Chat.from_dict` reads versions 1 and 2.
"""
READABLE_VERSIONS = (1, 2)
DEFAULT_MAX_TOOL_ROUNDS = 8
"""How many rounds of tool results a chat sends for one question, unless told otherwise."""
logger = logging.getLogger("backendapi")
_MANAGED_ACTIONS = {"continue": "continue_()", "variant": "regenerate()"}
ANY_PROVIDER = "AnyProvider"
"""g4f's meta provider: a chat using it (or none) sends back all the state it holds."""

_ClientT = TypeVar("_ClientT")
_ChatT = TypeVar("_ChatT", bound="BaseChat[Any]")

PathType = Union[str, "os.PathLike[str]"]
"""A file path: a str or a :class:`pathlib.Path`."""

# The constructor's own arguments: saved options must not collide with them.
_CONSTRUCTOR_ARGUMENTS = frozenset(
    {
        "client",
        "model",
        "provider",
        "system",
        "messages",
        "conversation",
        "api_key",
        "media",
        "tools",
        "variants",
        "store",
        "conversation_id",
    }
)


class BaseChat(Generic[_ClientT]):
    """What :class:`Chat` and :class:`AsyncChat` share: history, state, options, persistence.

    Only sending (``send``, ``ask``, ``continue_``, ``regenerate``,
    ``run_tools``...) differs between the two; everything else, including
    what a turn sends and how its answer enters the history, is decided here.

    Attributes:
        client: the client the turns are sent with.
        model: the model id sent with every turn.
        provider: the provider name sent with every turn, or None (the server picks).
        options: extra body fields sent with every turn (``temperature``,
            ``web_search``...); a turn's own keyword arguments override them.
        messages: the history, ``[{"role", "content"}, ...]``, system message
            first if there is one: what the next turn sends. Only completed
            turns are in it. An answer that asked for tools is an assistant
            message with ``tool_calls``, followed by one ``{"role": "tool",
            "tool_call_id", "content"}`` message per call once they ran. It is
            the chat's own list: edit it (say, to drop old turns) if you want to.
        conversation: the provider state from the server's ``conversation``
            events, merged: ``{ProviderName: state}``.
        variants: the answers :meth:`regenerate` replaced, oldest first, so
            that nothing is lost: ``{"index": i, "messages": [...]}`` each,
            ``messages`` being what followed the last user message then (the
            assistant message, and any tool rounds) and ``i`` the position the
            first of them had in :attr:`messages`.
        tools: the tools every turn offers (Python functions and OpenAI-style
            definitions); a turn's ``tools=`` overrides them. Not saved.
        store: the :class:`~backendapi.ConversationStore` every turn is
            recorded in, or None (see :meth:`attach`).
        conversation_id: this chat's id in :attr:`store`, or None without one.
    """

    def __init__(
        self,
        client: _ClientT,
        model: str = "",
        *,
        provider: Optional[str] = None,
        system: Optional[str] = None,
        messages: Optional[Sequence[Mapping[str, Any]]] = None,
        conversation: Optional[Mapping[str, Any]] = None,
        api_key: Optional[str] = None,
        tools: Optional[Sequence[Any]] = None,
        store: Optional[ConversationStore] = None,
        conversation_id: Optional[str] = None,
        **options: Any,
    ) -> None:
        """Start a chat.

        Args:
            client: the client to send the turns with.
            model: the model id ("" lets the server pick).
            provider: the provider name, e.g. ``"OpenaiChat"``; None lets the server pick.
            system: a system message, put first in the history.
            messages: an earlier history to continue from (copied; after the system message).
            conversation: provider state to continue from, ``{ProviderName: state}`` (copied).
            api_key: the provider's key, sent with every turn; never saved by :meth:`save`.
            tools: Python functions and tool definitions every turn offers the
                model (see ``ask``); never saved by :meth:`save`.
            store: a :class:`~backendapi.ConversationStore` to record every turn
                in (see :meth:`attach`).
            conversation_id: the conversation's id in ``store`` (default: a new one).
            **options: extra body fields for every turn (``temperature=0.2``...).
        """
        self._check_client(client)
        if not isinstance(model, str):
            raise InvalidInputError(f"model must be a str, not {type(model).__name__}")
        if provider is not None and not isinstance(provider, str):
            raise InvalidInputError(
                f"provider must be a str or None, not {type(provider).__name__}"
            )
        if system is not None and not isinstance(system, str):
            raise InvalidInputError(f"system must be a str or None, not {type(system).__name__}")
        if api_key is not None and not isinstance(api_key, str):
            raise InvalidInputError(f"api_key must be a str or None, not {type(api_key).__name__}")
        if "media" in options:
            raise InvalidInputError("media cannot be a chat option: pass media to send()")
        self._check_action(options)
        if tools is not None:
            self._tool_specs(tools)  # checked now, not at the first turn
        self.client: _ClientT = client
        """The client the turns are sent with."""
        self.model = model
        """The model id sent with every turn."""
        self.provider = provider
        """The provider name sent with every turn, or None."""
        self.options: Dict[str, Any] = dict(options)
        """Extra body fields sent with every turn."""
        self.tools: List[Any] = list(tools) if tools is not None else []
        """The tools every turn offers: Python functions and tool definitions. Not saved."""
        self.messages: List[Dict[str, Any]] = []
        """The history of completed turns, system message first."""
        if system is not None:
            self.messages.append({"role": "system", "content": system})
        if messages is not None:
            if not isinstance(messages, (list, tuple)) or messages:
                validate_messages(messages)  # an empty list is fine here: no history yet
            self.messages.extend(copy.deepcopy(dict(message)) for message in messages)
        self.conversation: Dict[str, Any] = {}
        """Provider state from ``conversation`` events, merged: ``{ProviderName: state}``."""
        if conversation is not None:
            if not isinstance(conversation, Mapping):
                raise InvalidInputError(
                    f"conversation must be a dict, not {type(conversation).__name__}"
                )
            self.conversation.update(copy.deepcopy(dict(conversation)))
        self.variants: List[Dict[str, Any]] = []
        """Answers :meth:`regenerate` replaced: ``{"index", "messages"}`` each, oldest first."""
        self._api_key = api_key
        self.store: Optional[ConversationStore] = None
        """The store every turn is recorded in, or None."""
        self.conversation_id: Optional[str] = None
        """This chat's id in :attr:`store`."""
        self._unstored: List[Dict[str, Any]] = []  # records of ended turns not yet written
        self._turns_ended = 0
        if store is not None:
            self.attach(store, conversation_id)
        elif conversation_id is not None:
            raise InvalidInputError("conversation_id names a conversation in a store: pass store=")

    def attach(self, store: ConversationStore, conversation_id: Optional[str] = None) -> str:
        """Record every turn from now on in ``store``; return the conversation's id.

        Each turn, whether it completes, fails or is interrupted, becomes one
        exchange of the conversation ``conversation_id`` (default: a new id),
        with the chat's state after it (:meth:`to_dict`: never the api key).
        The record is written when the turn's stream ends: by ``ask``,
        ``continue_``, ``regenerate`` and ``run_tools`` themselves; after a
        stream of :meth:`send` (or ``send_continue``, ``send_regenerate``),
        by :meth:`flush`.
        """
        from .._store import ConversationStore

        if not isinstance(store, ConversationStore):
            raise InvalidInputError(
                f"store must be a ConversationStore, not {type(store).__name__}"
            )
        if conversation_id is None:
            conversation_id = store.new_conversation_id()
        elif not isinstance(conversation_id, str) or not conversation_id:
            raise InvalidInputError(
                f"conversation_id must be a non-empty str, not {conversation_id!r}"
            )
        self.store = store
        self.conversation_id = conversation_id
        return conversation_id

    # -- one turn ---------------------------------------------------------------------------

    def conversation_for(self, provider: Optional[str]) -> Optional[Any]:
        """The ``conversation`` value a turn with ``provider`` sends, or None to send none.

        The state stored under that provider's name; all the merged state when
        ``provider`` is None or ``"AnyProvider"`` (as g4f's web client does);
        None when the chat holds nothing for it.
        """
        if not self.conversation:
            return None
        if provider is None or provider == ANY_PROVIDER:
            return self.conversation
        return self.conversation.get(provider)

    def _start_turn(self, content: Any, api_key: Optional[str], kwargs: Mapping[str, Any]) -> _Turn:
        """Check a new question's arguments and build what ``client.create()`` gets."""
        self._check_action(kwargs)
        if isinstance(content, str):
            user_content: Any = content
        elif isinstance(content, (list, tuple)):
            user_content = copy.deepcopy(list(content))
        else:
            raise InvalidInputError(
                f"content must be a str or a list of parts, not {type(content).__name__}"
            )
        turn = self._new_turn(api_key, kwargs)
        turn.prompt = _prompt_text(user_content)
        user_message: Dict[str, Any] = {"role": "user", "content": user_content}
        # A new list each turn: the chat's own history is never handed to the client.
        turn.messages = [*self.messages, user_message]

        def record(answer: Answer) -> None:
            self.messages.append(user_message)
            self.messages.append(_assistant_message(answer))

        turn.record = record
        return turn

    def _start_continue(self, api_key: Optional[str], kwargs: Mapping[str, Any]) -> _Turn:
        """The turn that continues the last assistant message (g4f's ``action: "continue"``).

        It sends the history as it is, ending with that message; the answer's
        text is appended to it (and any tool calls added to its own).
        """
        self._refuse_action(kwargs, "continue_()")
        target = self.messages[-1] if self.messages else None
        if target is None or target.get("role") != "assistant":
            raise InvalidInputError(
                "there is no answer to continue: the history must end with an assistant message"
            )
        if target.get("content") is not None and not isinstance(target.get("content"), str):
            raise InvalidInputError("only an assistant message whose content is a str can go on")
        turn = self._new_turn(api_key, kwargs)
        turn.options["action"] = "continue"
        turn.kind = "continue"
        turn.messages = list(self.messages)

        def record(answer: Answer) -> None:
            target["content"] = (target.get("content") or "") + answer.text
            calls = answer.tool_calls
            if calls:
                target["tool_calls"] = [*target.get("tool_calls", []), *calls]

        turn.record = record
        return turn

    def _start_regenerate(self, api_key: Optional[str], kwargs: Mapping[str, Any]) -> _Turn:
        """The turn that answers the last user message again (g4f's ``action: "variant"``).

        It sends the history up to that message; the answer replaces what
        followed it, which goes to :attr:`variants`.
        """
        self._refuse_action(kwargs, "regenerate()")
        position = _last_user(self.messages)
        if position is None:
            raise InvalidInputError("there is no question to answer again: no user message")
        question = self.messages[position]
        turn = self._new_turn(api_key, kwargs)
        turn.options["action"] = "variant"
        turn.kind = "regenerate"
        turn.prompt = _prompt_text(question.get("content"))
        turn.messages = self.messages[: position + 1]

        def record(answer: Answer) -> None:
            # Where the question is now: the history may have been edited meanwhile.
            now = next((i for i, m in enumerate(self.messages) if m is question), None)
            if now is None:
                self.messages.append(_assistant_message(answer))
                return
            replaced = self.messages[now + 1 :]
            if replaced:
                self.variants.append({"index": now + 1, "messages": replaced})
            self.messages[now + 1 :] = [_assistant_message(answer)]

        turn.record = record
        return turn

    def _start_tool_round(self, api_key: Optional[str], kwargs: Mapping[str, Any]) -> _Turn:
        """The turn that sends the tool results at the end of the history."""
        self._check_action(kwargs)
        turn = self._new_turn(api_key, kwargs)
        turn.kind = "tools"
        turn.messages = list(self.messages)

        def record(answer: Answer) -> None:
            self.messages.append(_assistant_message(answer))

        turn.record = record
        return turn

    def _new_turn(self, api_key: Optional[str], kwargs: Mapping[str, Any]) -> _Turn:
        """What every kind of turn sends besides its messages: model, options, state, tools.

        ``kwargs`` (a turn's keyword arguments) is left as it is: the rounds
        of a tool loop send the same ones.
        """
        kwargs = dict(kwargs)
        if "messages" in kwargs:
            raise InvalidInputError("messages is managed by the chat; edit chat.messages instead")
        model = kwargs.pop("model", self.model)
        tools = kwargs.pop("tools", self.tools)
        specs = self._tool_specs(tools) if tools else []
        options: Dict[str, Any] = {**self.options, **kwargs}
        provider = options.pop("provider", self.provider)
        if provider is not None:
            options["provider"] = provider
        if "conversation" not in options:
            state = self.conversation_for(provider)
            if state is not None:
                options["conversation"] = state
        if specs:
            options["tools"] = tool_definitions(specs)
        key = api_key if api_key is not None else self._api_key
        return _Turn(model, key, options, specs)

    def _watch(self, core: StreamCore, turn: _Turn) -> None:
        """Record the turn in the history once its stream completes without error."""
        record = turn.record

        def completed(answer: Answer) -> None:
            record(answer)
            self.conversation.update(answer.conversation)

        core.on_complete.append(completed)
        if self.store is not None:
            started = time.time()

            def ended(outcome: str, answer: Answer) -> None:
                try:
                    record = self._exchange_record(core, turn, outcome, answer, started)
                except Exception as exc:  # the stream must end all the same
                    logger.error("the turn cannot be recorded: %s", core.redact(repr(exc)))
                    return
                self._unstored.append(record)

            core.on_end.append(ended)

    def _exchange_record(
        self, core: StreamCore, turn: _Turn, outcome: str, answer: Answer, started: float
    ) -> Dict[str, Any]:
        """What the store keeps of a turn that ended (see ``ConversationStore.add``).

        Called as the stream ends: while a failing stream raises, the
        exception is the one being handled. The api key is replaced wherever
        it occurs (a server may echo it).
        """
        error = sys.exc_info()[1]
        message: Optional[str] = None
        if outcome == "completed":
            status = "ok"
        elif outcome == "failed" and isinstance(error, Exception):
            status = "error"
            message = str(error)
            if not isinstance(error, BackendApiError):
                message = f"{type(error).__name__}: {message}"
        else:
            status = "interrupted"
            if isinstance(error, KeyboardInterrupt):
                message = "interrupted (Ctrl-C)"
            elif error is not None and type(error).__name__ == "CancelledError":
                message = "cancelled"
            else:
                message = "closed before the end of the answer"
        first = self.messages[0] if self.messages else None
        system = first.get("content") if first and first.get("role") == "system" else None
        options = {k: v for k, v in turn.options.items() if k not in ("conversation", "tools")}
        if turn.tools:
            options["tools"] = [spec.name for spec in turn.tools]
        self._turns_ended += 1
        record = {
            "conversation_id": self.conversation_id,
            "kind": turn.kind,
            "status": status,
            "error": message,
            "model": answer.model or turn.model or None,
            "provider": answer.provider_name or turn.options.get("provider"),
            "prompt": turn.prompt,
            "system": system if isinstance(system, str) else _prompt_text(system),
            "response": answer.text,
            "reasoning": answer.reasoning or None,
            "usage": answer.usage,
            "title": answer.title,
            "finish_reason": answer.finish_reason,
            "tool_calls": answer.tool_calls,
            "options": options,
            "started": started,
            "ended": time.time(),
            "state": self.to_dict(),
            "seq": self._turns_ended,
        }
        redacted: Dict[str, Any] = core.redact_json(record)
        return redacted

    @staticmethod
    def _check_action(options: Mapping[str, Any]) -> None:
        action = options.get("action")
        method = _MANAGED_ACTIONS.get(action) if isinstance(action, str) else None
        if method is not None:
            raise InvalidInputError(
                f"action {options['action']!r} changes the history: call chat.{method} instead"
            )

    @staticmethod
    def _refuse_action(kwargs: Mapping[str, Any], method: str) -> None:
        if "action" in kwargs:
            raise InvalidInputError(f"{method} sends its own action; do not pass action=")

    # -- tools ------------------------------------------------------------------------------

    def _tool_specs(self, tools: Any) -> List[ToolSpec]:
        """Check tools for this chat: a coroutine function only where the chat awaits."""
        specs = prepare_tools(tools)
        if not self._awaits():
            for index, spec in enumerate(specs):
                if spec.function is not None and _is_coroutine_function(spec.function):
                    raise InvalidInputError(
                        f"tools[{index}] ({spec.name}) is an async function: {type(self).__name__}"
                        " cannot await it; use a plain function, or AsyncChat"
                    )
        return specs

    @classmethod
    def _awaits(cls) -> bool:
        """True for the chat whose calls are coroutines (``AsyncChat``): it awaits tools too."""
        return inspect.iscoroutinefunction(getattr(cls, "ask", None))

    @staticmethod
    def _check_rounds(max_tool_rounds: object) -> int:
        if (
            isinstance(max_tool_rounds, bool)
            or not isinstance(max_tool_rounds, int)
            or max_tool_rounds < 1
        ):
            raise InvalidInputError(f"max_tool_rounds must be an int >= 1, got {max_tool_rounds!r}")
        return max_tool_rounds

    def _runnable_calls(
        self, specs: Sequence[ToolSpec]
    ) -> Optional[List[Tuple[Dict[str, Any], Callable[..., Any]]]]:
        """The calls of the last assistant message still without a result, with their functions.

        None when there are none, or when one of them names a tool the chat
        has no Python function for (then the caller answers it: see ``run_tools``).
        """
        pending = self._pending_calls()
        if not pending:
            return None
        functions = {spec.name: spec.function for spec in specs if spec.function is not None}
        runnable = []
        for call in pending:
            function = functions.get(call.get("function", {}).get("name"))
            if function is None:
                return None
            runnable.append((call, function))
        return runnable

    def _pending_calls(self) -> List[Dict[str, Any]]:
        """The tool calls of the last assistant message that no tool message answers yet."""
        answered = set()
        for message in reversed(self.messages):
            role = message.get("role")
            if role == "tool":
                answered.add(message.get("tool_call_id"))
            elif role == "assistant":
                calls = message.get("tool_calls") or []
                return [c for c in calls if isinstance(c, dict) and c.get("id") not in answered]
            else:
                break
        return []

    def _check_tool_round(
        self, specs: Sequence[ToolSpec]
    ) -> List[Tuple[Dict[str, Any], Callable[..., Any]]]:
        """What ``run_tools`` runs before its first request; InvalidInputError if nothing to do."""
        pending = self._pending_calls()
        if not pending:
            if self.messages and self.messages[-1].get("role") == "tool":
                return []  # the caller added every result: just send them
            raise InvalidInputError(
                "there are no tool calls to answer: the history does not end with an "
                "assistant message that asked for tools"
            )
        runnable = self._runnable_calls(specs)
        if runnable is None:
            names = sorted(
                {str(call.get("function", {}).get("name")) for call in pending}
                - {spec.name for spec in specs if spec.function is not None}
            )
            raise InvalidInputError(
                f"no Python function among the tools for {', '.join(names)}: pass it in "
                "tools=, or add its result with chat.add_tool_result()"
            )
        return runnable

    def _tool_arguments(self, call: Dict[str, Any], function: Callable[..., Any]) -> Dict[str, Any]:
        return tool_arguments(call, function)

    def _tool_result(self, call: Dict[str, Any], result: Any) -> Dict[str, Any]:
        """The ``tool`` message for a call's result (the result already awaited, if it was)."""
        name = str(call.get("function", {}).get("name"))
        if inspect.isawaitable(result):
            close = getattr(result, "close", None)
            if close is not None:
                close()  # never awaited: close it, or Python warns about it later
            raise InvalidInputError(
                f"the tool {name} returned an awaitable: {type(self).__name__} cannot await it;"
                " use a plain function, or AsyncChat"
            )
        return {
            "role": "tool",
            "tool_call_id": call.get("id"),
            "content": tool_result_content(name, result),
        }

    def _rounds_exceeded(self, rounds: int) -> ToolRoundsExceededError:
        names = ", ".join(
            str(call.get("function", {}).get("name")) for call in self._pending_calls()
        )
        return ToolRoundsExceededError(
            f"the model still asks for tools ({names}) after {rounds} rounds of results "
            "(max_tool_rounds); chat.run_tools() goes on",
            rounds=rounds,
        )

    def add_tool_result(self, tool_call_id: str, content: Any) -> None:
        """Add the result of a tool call the chat could not run itself (a tool given as a dict).

        ``content`` is sent as the ``tool`` message's content: a str as it is,
        anything else as JSON. Once every call has its result, ``run_tools()``
        sends them. Raises :class:`InvalidInputError` for an id that is not
        among the last answer's calls still waiting for a result.
        """
        pending = {call.get("id"): call for call in self._pending_calls()}
        if tool_call_id not in pending:
            waiting = ", ".join(repr(key) for key in pending) or "none"
            raise InvalidInputError(
                f"no tool call {tool_call_id!r} waits for a result (waiting: {waiting})"
            )
        self.messages.append(self._tool_result(pending[tool_call_id], content))

    # -- persistence ------------------------------------------------------------------------

    def to_dict(self) -> Dict[str, Any]:
        """The chat as plain data (a deep copy): what :meth:`save` writes.

        ``{"version": 2, "model", "provider", "options", "messages",
        "conversation", "variants"}``; the api key and the tools are left out.
        """
        return {
            "version": CHAT_FORMAT_VERSION,
            "model": self.model,
            "provider": self.provider,
            "options": copy.deepcopy(self.options),
            "messages": copy.deepcopy(self.messages),
            "conversation": copy.deepcopy(self.conversation),
            "variants": copy.deepcopy(self.variants),
        }

    def to_json(self, *, indent: Optional[int] = 2) -> str:
        """The chat as a JSON document (see :meth:`to_dict`).

        Raises :class:`InvalidInputError` if an option or the state cannot be
        written as JSON.
        """
        try:
            return json.dumps(self.to_dict(), ensure_ascii=False, indent=indent, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"the chat cannot be saved as JSON: {exc}") from None

    def save(self, path: PathType) -> None:
        """Write the chat to ``path`` as UTF-8 JSON, replacing the file in one step.

        The file is written next to ``path`` first and then renamed over it,
        so an interrupted save never leaves half a file behind.
        """
        text = self.to_json()
        target = os.fspath(path)
        directory = os.path.dirname(os.path.abspath(target))
        fd, temporary = tempfile.mkstemp(prefix=".chat-", suffix=".json", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(text)
                file.write("\n")
            os.replace(temporary, target)
        except BaseException:
            os.unlink(temporary)
            raise

    @classmethod
    def from_dict(
        cls: Type[_ChatT],
        data: Mapping[str, Any],
        client: _ClientT,
        *,
        api_key: Optional[str] = None,
        tools: Optional[Sequence[Any]] = None,
    ) -> _ChatT:
        """Rebuild a chat from :meth:`to_dict`'s data (copied), sending with ``client``.

        Reads format versions 1 and 2. ``api_key`` and ``tools`` are not
        saved: give them again here. Raises :class:`InvalidInputError` for
        data of another format or version.
        """
        if not isinstance(data, Mapping):
            raise InvalidInputError(f"chat data must be a dict, not {type(data).__name__}")
        version = data.get("version")
        if isinstance(version, bool) or version not in READABLE_VERSIONS:
            raise InvalidInputError(
                f"unsupported chat format version {version!r} "
                f"(this version of backendapi reads {', '.join(map(str, READABLE_VERSIONS))})"
            )
        model = data.get("model", "")
        provider = data.get("provider")
        options = data.get("options") or {}
        messages = data.get("messages") or []
        conversation = data.get("conversation") or {}
        variants = (data.get("variants") or []) if version >= 2 else []
        if not isinstance(options, Mapping):
            raise InvalidInputError(f"chat options must be a dict, not {type(options).__name__}")
        if not all(isinstance(name, str) for name in options):
            raise InvalidInputError("chat option names must be str")
        clashing = sorted(_CONSTRUCTOR_ARGUMENTS.intersection(options))
        if clashing:
            raise InvalidInputError(f"chat options must not include {', '.join(clashing)}")
        _check_variants(variants)
        chat = cls(
            client,
            model,
            provider=provider,
            messages=messages,
            conversation=conversation,
            api_key=api_key,
            tools=tools,
            **copy.deepcopy(dict(options)),
        )
        chat.variants = copy.deepcopy(list(variants))
        return chat

    @classmethod
    def from_json(
        cls: Type[_ChatT],
        text: Union[str, bytes],
        client: _ClientT,
        *,
        api_key: Optional[str] = None,
        tools: Optional[Sequence[Any]] = None,
    ) -> _ChatT:
        """Rebuild a chat from :meth:`to_json`'s text."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise InvalidInputError(f"chat data is not valid JSON: {exc}") from None
        return cls.from_dict(data, client, api_key=api_key, tools=tools)

    @classmethod
    def load(
        cls: Type[_ChatT],
        path: PathType,
        client: _ClientT,
        *,
        api_key: Optional[str] = None,
        tools: Optional[Sequence[Any]] = None,
    ) -> _ChatT:
        """Read a chat written by :meth:`save` (version 1 or 2); turns go through ``client``."""
        with open(os.fspath(path), encoding="utf-8") as file:
            text = file.read()
        return cls.from_json(text, client, api_key=api_key, tools=tools)

    # -- helpers ----------------------------------------------------------------------------

    def _check_client(self, client: object) -> None:
        expected = self._client_class()
        if not isinstance(client, expected):
            raise InvalidInputError(
                f"{type(self).__name__} needs a {expected.__name__}, not {type(client).__name__}"
            )

    @classmethod
    def _client_class(cls) -> type:
        """The client class this chat sends with."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(model={self.model!r}, provider={self.provider!r}, "
            f"messages={len(self.messages)}, conversation={sorted(self.conversation)!r})"
        )


def _assistant_message(answer: Answer) -> Dict[str, Any]:
    """The history's record of an answer: its text, and the tool calls it asked for."""
    message: Dict[str, Any] = {"role": "assistant", "content": answer.text}
    calls = answer.tool_calls
    if calls:
        message["tool_calls"] = calls
    return message


def _prompt_text(content: Any) -> Optional[str]:
    """A message's content as the store keeps it: a str as it is, parts as JSON."""
    if content is None or isinstance(content, str):
        return content
    return json.dumps(content, ensure_ascii=False, default=repr)


def _last_user(messages: Sequence[Mapping[str, Any]]) -> Optional[int]:
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].get("role") == "user":
            return index
    return None


def _is_coroutine_function(function: Callable[..., Any]) -> bool:
    call = getattr(function, "__call__", None)  # noqa: B004 - an object's own __call__
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(call)


def _check_variants(variants: object) -> None:
    if not isinstance(variants, list):
        raise InvalidInputError(f"chat variants must be a list, not {type(variants).__name__}")
    for index, variant in enumerate(variants):
        if (
            not isinstance(variant, Mapping)
            or isinstance(variant.get("index"), bool)
            or not isinstance(variant.get("index"), int)
            or not isinstance(variant.get("messages"), list)
        ):
            raise InvalidInputError(
                f"chat variants[{index}] must be {{'index': int, 'messages': [...]}}"
            )


class _Turn:
    """One turn's request (what ``client.create()`` gets) and how its answer enters the chat."""

    __slots__ = ("api_key", "kind", "messages", "model", "options", "prompt", "record", "tools")

    def __init__(
        self,
        model: str,
        api_key: Optional[str],
        options: Dict[str, Any],
        tools: List[ToolSpec],
    ) -> None:
        self.model = model
        self.api_key = api_key
        self.options = options
        self.tools = tools
        self.messages: List[Dict[str, Any]] = []
        self.record: Callable[[Answer], None] = lambda answer: None
        self.kind = "ask"
        """What the store calls the turn: ask, continue, regenerate or tools."""
        self.prompt: Optional[str] = None
        """The user message's content, as the store keeps it."""
