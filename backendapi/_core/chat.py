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
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
from typing import (
    Any,
    Dict,
    Generic,
    List,
    Mapping,
    Optional,
    Sequence,
    Type,
    TypeVar,
    Union,
)

from .._answer import Answer
from .._errors import InvalidInputError
from .request import validate_messages
from .stream import StreamCore

__all__ = ["ANY_PROVIDER", "BaseChat", "CHAT_FORMAT_VERSION"]

CHAT_FORMAT_VERSION = 1
"""The ``version`` written by :meth:`Chat.to_dict`; :meth:`Chat.from_dict` reads only this one."""
ANY_PROVIDER = "AnyProvider"
"""g4f's meta provider: a chat using it (or none) sends back all the state it holds."""

_ClientT = TypeVar("_ClientT")
_ChatT = TypeVar("_ChatT", bound="BaseChat[Any]")

PathType = Union[str, "os.PathLike[str]"]
"""A file path: a str or a :class:`pathlib.Path`."""

# The constructor's own arguments: saved options must not collide with them.
_CONSTRUCTOR_ARGUMENTS = frozenset(
    {"client", "model", "provider", "system", "messages", "conversation", "api_key", "media"}
)


class BaseChat(Generic[_ClientT]):
    """What :class:`Chat` and :class:`AsyncChat` share: history, state, options, persistence.

    Only ``send`` and ``ask`` differ between the two; everything else,
    including what a turn sends and how its answer enters the history, is
    decided here.

    Attributes:
        client: the client the turns are sent with.
        model: the model id sent with every turn.
        provider: the provider name sent with every turn, or None (the server picks).
        options: extra body fields sent with every turn (``temperature``,
            ``web_search``...); a turn's own keyword arguments override them.
        messages: the history, ``[{"role", "content"}, ...]``, system message
            first if there is one. Only completed turns are in it. It is the
            chat's own list: edit it (say, to drop old turns) if you want to.
        conversation: the provider state from the server's ``conversation``
            events, merged: ``{ProviderName: state}``.
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
        self.client: _ClientT = client
        """The client the turns are sent with."""
        self.model = model
        """The model id sent with every turn."""
        self.provider = provider
        """The provider name sent with every turn, or None."""
        self.options: Dict[str, Any] = dict(options)
        """Extra body fields sent with every turn."""
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
        self._api_key = api_key

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

    def _start_turn(self, content: Any, api_key: Optional[str], kwargs: Dict[str, Any]) -> _Turn:
        """Check a turn's arguments and build what ``client.create()`` gets."""
        if "messages" in kwargs:
            raise InvalidInputError("messages is managed by the chat; edit chat.messages instead")
        if isinstance(content, str):
            user_content: Any = content
        elif isinstance(content, (list, tuple)):
            user_content = copy.deepcopy(list(content))
        else:
            raise InvalidInputError(
                f"content must be a str or a list of parts, not {type(content).__name__}"
            )
        model = kwargs.pop("model", self.model)
        options: Dict[str, Any] = {**self.options, **kwargs}
        provider = options.pop("provider", self.provider)
        if provider is not None:
            options["provider"] = provider
        if "conversation" not in options:
            state = self.conversation_for(provider)
            if state is not None:
                options["conversation"] = state
        user_message: Dict[str, Any] = {"role": "user", "content": user_content}
        # A new list each turn: the chat's own history is never handed to the client.
        messages = [*self.messages, user_message]
        key = api_key if api_key is not None else self._api_key
        return _Turn(model, messages, key, options, user_message)

    def _watch(self, core: StreamCore, turn: _Turn) -> None:
        """Record the turn in the history once its stream completes without error."""
        user_message = turn.user_message

        def completed(answer: Answer) -> None:
            self.messages.append(user_message)
            self.messages.append({"role": "assistant", "content": answer.text})
            self.conversation.update(answer.conversation)

        core.on_complete.append(completed)

    # -- persistence ------------------------------------------------------------------------

    def to_dict(self) -> Dict[str, Any]:
        """The chat as plain data (a deep copy): what :meth:`save` writes.

        ``{"version": 1, "model", "provider", "options", "messages", "conversation"}``;
        the api key is left out.
        """
        return {
            "version": CHAT_FORMAT_VERSION,
            "model": self.model,
            "provider": self.provider,
            "options": copy.deepcopy(self.options),
            "messages": copy.deepcopy(self.messages),
            "conversation": copy.deepcopy(self.conversation),
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
    ) -> _ChatT:
        """Rebuild a chat from :meth:`to_dict`'s data (copied), sending with ``client``.

        Raises :class:`InvalidInputError` for data of another format or version.
        """
        if not isinstance(data, Mapping):
            raise InvalidInputError(f"chat data must be a dict, not {type(data).__name__}")
        version = data.get("version")
        if version != CHAT_FORMAT_VERSION:
            raise InvalidInputError(
                f"unsupported chat format version {version!r} (expected {CHAT_FORMAT_VERSION})"
            )
        model = data.get("model", "")
        provider = data.get("provider")
        options = data.get("options") or {}
        messages = data.get("messages") or []
        conversation = data.get("conversation") or {}
        if not isinstance(options, Mapping):
            raise InvalidInputError(f"chat options must be a dict, not {type(options).__name__}")
        if not all(isinstance(name, str) for name in options):
            raise InvalidInputError("chat option names must be str")
        clashing = sorted(_CONSTRUCTOR_ARGUMENTS.intersection(options))
        if clashing:
            raise InvalidInputError(f"chat options must not include {', '.join(clashing)}")
        return cls(
            client,
            model,
            provider=provider,
            messages=messages,
            conversation=conversation,
            api_key=api_key,
            **copy.deepcopy(dict(options)),
        )

    @classmethod
    def from_json(
        cls: Type[_ChatT],
        text: Union[str, bytes],
        client: _ClientT,
        *,
        api_key: Optional[str] = None,
    ) -> _ChatT:
        """Rebuild a chat from :meth:`to_json`'s text."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise InvalidInputError(f"chat data is not valid JSON: {exc}") from None
        return cls.from_dict(data, client, api_key=api_key)

    @classmethod
    def load(
        cls: Type[_ChatT], path: PathType, client: _ClientT, *, api_key: Optional[str] = None
    ) -> _ChatT:
        """Read a chat written by :meth:`save`; its turns go through ``client``."""
        with open(os.fspath(path), encoding="utf-8") as file:
            text = file.read()
        return cls.from_json(text, client, api_key=api_key)

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


class _Turn:
    """One turn's request: what ``client.create()`` gets, and the user message to record."""

    __slots__ = ("api_key", "messages", "model", "options", "user_message")

    def __init__(
        self,
        model: str,
        messages: List[Dict[str, Any]],
        api_key: Optional[str],
        options: Dict[str, Any],
        user_message: Dict[str, Any],
    ) -> None:
        self.model = model
        self.messages = messages
        self.api_key = api_key
        self.options = options
        self.user_message = user_message
