"""The providers the test server knows, and the routes that list them, answered as g4f 8.8.6 does.

g4f answers a conversation naming a provider it does not have with 404 ``Provider not
found``, but ``GET /backend-api/v2/models/<provider>`` of such a provider with 200 and ``[]``;
its model objects carry ``id`` and ``tags``. The test server knows ``ScriptedProvider``
(serving ``scripted-1``) and whatever a test registers with
`BackendApiTestServer.add_provider`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ._replies import MODEL, PROVIDER

__all__ = ["ProviderRegistry", "json_document"]


def json_document(document: Any, status: int = 200) -> web.Response:
    """A JSON response as Flask's ``jsonify`` sends it: ``Content-Type: application/json``.

    aiohttp's ``json_response`` would add ``; charset=utf-8``, which g4f does not send.
    """
    body = json.dumps(document).encode()
    return web.Response(body=body, status=status, content_type="application/json")


@dataclass(frozen=True)
class _Provider:
    name: str
    models: tuple[str, ...]
    label: str

    def model_objects(self) -> list[dict[str, Any]]:
        """The provider's models as g4f 8.8.6 lists them: the first one is the default."""
        return [
            {
                "id": model,
                "label": model,
                "default": index == 0,
                "vision": False,
                "audio": False,
                "video": False,
                "image": False,
                "count": None,
                "tags": [],
            }
            for index, model in enumerate(self.models)
        ]

    def provider_object(self) -> dict[str, Any]:
        """The provider as ``GET /backend-api/v2/providers`` lists it."""
        return {
            "name": self.name,
            "label": self.label,
            "parent": None,
            "image": 0,
            "audio": 0,
            "video": 0,
            "vision": False,
            "nodriver": False,
            "hf_space": False,
            "active_by_default": True,
            "auth": False,
            "login_url": None,
            "live": 0,
        }


class ProviderRegistry:
    """The providers a test server knows, by name; safe to change while the server runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._providers: dict[str, _Provider] = {}
        self.add(PROVIDER, [MODEL])

    def add(self, name: str, models: Iterable[str] = (), label: str | None = None) -> None:
        """Know provider `name`, serving `models` (the first is its default); replaces one
        of that name."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a provider name must be a non-empty string, not {name!r}")
        if isinstance(models, str):
            raise TypeError("models must be a list of model names, not one string")
        listed = tuple(models)
        for model in listed:
            if not isinstance(model, str):
                raise TypeError(f"a model name must be a string, not {model!r}")
        provider = _Provider(name, listed, name if label is None else label)
        with self._lock:
            self._providers[name] = provider

    def names(self) -> frozenset[str]:
        """The names of every known provider."""
        with self._lock:
            return frozenset(self._providers)

    def knows(self, name: Any) -> bool:
        """True when `name` is a known provider's name."""
        with self._lock:
            return isinstance(name, str) and name in self._providers

    def _snapshot(self) -> list[_Provider]:
        with self._lock:
            return list(self._providers.values())

    def all_models(self) -> dict[str, list[str]]:
        """``GET /backend-api/v2/models``: every provider's model names."""
        return {provider.name: list(provider.models) for provider in self._snapshot()}

    def provider_models(self, name: str) -> list[dict[str, Any]]:
        """``GET /backend-api/v2/models/<name>``: its model objects, ``[]`` if it is unknown."""
        with self._lock:
            provider = self._providers.get(name)
        return [] if provider is None else provider.model_objects()

    def provider_objects(self) -> list[dict[str, Any]]:
        """``GET /backend-api/v2/providers``."""
        return [provider.provider_object() for provider in self._snapshot()]
