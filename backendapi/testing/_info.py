"""The test server's provider and bookkeeping routes, answered as g4f 8.8.6 answers them.

``synthesize/<provider>``, ``quota/<provider>``, ``health/<provider>``, ``oauth/<provider>``,
``status``, ``stats``, ``usage`` (POST), ``usage/<date>`` and ``log`` (GET, POST). What
they answer is scripted on the server's `InfoRoutes` (``server.info``); the usage and log
records the server is sent are kept there too.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ._replies import MODEL, PROVIDER, error_document

if TYPE_CHECKING:
    from ._server import BackendApiTestServer

_V2 = "/backend-api/v2"
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_AUDIO_CHUNK = 16 * 1024
_COUNTERS = ("requests", "prompt_tokens", "completion_tokens", "saved_tokens", "total_tokens")

# Flask's own error pages, which g4f's routes answer with where an exception escapes them.
_FLASK_PAGES = {
    400: (
        "400 Bad Request",
        "Bad Request",
        "The browser (or proxy) sent a request that this server could not understand.",
    ),
    415: (
        "415 Unsupported Media Type",
        "Unsupported Media Type",
        "Did not attempt to load JSON data because the request Content-Type was not "
        "&#39;application/json&#39;.",
    ),
    500: (
        "500 Internal Server Error",
        "Internal Server Error",
        "The server encountered an internal error and was unable to complete your request. "
        "Either the server is overloaded or there is an error in the application.",
    ),
}


@dataclass(frozen=True)
class ScriptedAudio:
    """What ``GET /backend-api/v2/synthesize/<provider>`` streams back for one provider.

    Args:
        data: the audio bytes, sent in chunks.
        content_type: the provider's audio type (g4f's default is
            ``application/octet-stream``; OpenaiChat's ``audio/aac``, Gemini's ``audio/vnd.wav``).
        required: query parameters the provider needs (Gemini needs ``text``); a request
            without one gets the 500 error page g4f gives when a provider raises.
    """

    data: bytes
    content_type: str = "application/octet-stream"
    required: tuple[str, ...] = ("text",)


class InfoRoutes:
    """What the test server's provider and bookkeeping routes answer, and what they were sent.

    Providers the server knows (``ScriptedProvider`` and its ``known_providers``) answer; any
    other gets g4f's 404 ``Provider not found``. A known provider answers like a g4f provider
    that has no quota or health URL (501 ``Quota check not supported``...) and no speech
    (500 ``Provider doesn't support synthesize``) until a test scripts it::

        server.info.quota["ScriptedProvider"] = {"remaining": 42}
        server.info.keys["ScriptedProvider"] = "sk-test"  # else 401 Authentication required
        server.info.speech["ScriptedProvider"] = ScriptedAudio(b"ID3...", "audio/mpeg")

    ``POST usage`` and ``POST log`` records are kept per day (``usage``, ``log``: ISO date ->
    records) and read back by ``usage/<date>``, ``stats`` and ``GET log`` as g4f reads its files.
    """

    def __init__(self) -> None:
        #: Provider -> what ``quota/<provider>`` answers (None: 404 ``Quota information not
        #: available``). A known provider not in it answers 501 ``Quota check not supported``.
        self.quota: dict[str, Any] = {}
        #: Provider -> what ``health/<provider>`` answers, as `quota` does.
        self.health: dict[str, Any] = {}
        #: Provider -> the key its ``quota`` and ``health`` need in ``x-api-key``; without it
        #: (or with another) they answer 401 ``Authentication required``.
        self.keys: dict[str, str] = {}
        #: Provider -> the audio ``synthesize/<provider>`` streams.
        self.speech: dict[str, ScriptedAudio] = {}
        #: ISO date -> the usage records of that day, as ``POST usage`` stored them.
        self.usage: dict[str, list[dict[str, Any]]] = {}
        #: ISO date -> the log records of that day, as ``POST log`` stored them.
        self.log: dict[str, list[dict[str, Any]]] = {}


def add_info_routes(app: web.Application, server: BackendApiTestServer) -> None:
    """Add the provider and bookkeeping routes to the test server's ``app``."""
    routes = _Routes(server)
    app.router.add_get(f"{_V2}/synthesize/{{provider}}", routes.synthesize)
    app.router.add_get(f"{_V2}/quota/{{provider}}", routes.quota)
    app.router.add_get(f"{_V2}/health/{{provider}}", routes.health)
    app.router.add_route("GET", f"{_V2}/oauth/{{provider}}", routes.oauth)
    app.router.add_route("POST", f"{_V2}/oauth/{{provider}}", routes.oauth)
    app.router.add_get(f"{_V2}/status", routes.status)
    app.router.add_get(f"{_V2}/stats", routes.stats)
    app.router.add_post(f"{_V2}/usage", routes.add_usage)
    app.router.add_get(f"{_V2}/usage/{{date}}", routes.get_usage)
    app.router.add_get(f"{_V2}/log", routes.get_log)
    app.router.add_post(f"{_V2}/log", routes.add_log)


def _json(document: Any, status: int = 200) -> web.Response:
    """A JSON answer typed ``application/json`` with no charset, as Flask's ``jsonify`` types it."""
    body = (json.dumps(document, separators=(",", ":"), sort_keys=True) + "\n").encode()
    return web.Response(body=body, status=status, content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    return _json(error_document(message), status)


def _flask_page(status: int) -> web.Response:
    title, heading, text = _FLASK_PAGES[status]
    page = f"<!doctype html>\n<html lang=en>\n<title>{title}</title>\n<h1>{heading}</h1>\n"
    return web.Response(
        status=status, text=page + f"<p>{text}</p>\n", content_type="text/html", charset="utf-8"
    )


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(body)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class _Routes:
    def __init__(self, server: BackendApiTestServer) -> None:
        self._server = server

    @property
    def _info(self) -> InfoRoutes:
        return self._server.info

    async def _unknown(self, request: web.Request) -> web.Response | None:
        """Record the request; g4f's 404 when it names a provider the server does not know."""
        await self._server._record_finished(request)
        if self._server._providers.knows(request.match_info["provider"]):
            return None
        return _error(404, "Provider not found")

    async def synthesize(self, request: web.Request) -> web.StreamResponse:
        rejected = await self._unknown(request)
        if rejected is not None:
            return rejected
        audio = self._info.speech.get(request.match_info["provider"])
        if audio is None:
            return _error(500, "Provider doesn't support synthesize")
        if any(name not in request.query for name in audio.required):
            return _flask_page(500)
        response = web.StreamResponse(headers={"Cache-Control": "max-age=604800"})
        response.content_type = audio.content_type
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(audio.data), _AUDIO_CHUNK):
            await response.write(audio.data[start : start + _AUDIO_CHUNK])
        await response.write_eof()
        return response

    async def _provider_answer(
        self, request: web.Request, answers: Mapping[str, Any], what: str, max_age: int
    ) -> web.Response:
        rejected = await self._unknown(request)
        if rejected is not None:
            return rejected
        provider = request.match_info["provider"]
        key = self._info.keys.get(provider)
        if key is not None and request.headers.get("x-api-key") != key:
            return _error(401, "Authentication required")
        if provider not in answers:
            return _error(501, f"{what.capitalize()} check not supported")
        if answers[provider] is None:
            return _error(404, f"{what.capitalize()} information not available")
        response = _json(answers[provider])
        response.headers["Cache-Control"] = f"public, max-age={max_age}"
        return response

    async def quota(self, request: web.Request) -> web.Response:
        return await self._provider_answer(request, self._info.quota, "quota", 3600)

    async def health(self, request: web.Request) -> web.Response:
        return await self._provider_answer(request, self._info.health, "health", 300)

    async def oauth(self, request: web.Request) -> web.Response:
        rejected = await self._unknown(request)
        if rejected is not None:
            return rejected
        provider = request.match_info["provider"]
        return _error(404, f"Provider {provider} does not support OAuth login")

    async def status(self, request: web.Request) -> web.Response:
        await self._server._record_finished(request)
        from ._server import _VERSION as version  # that module imports this one

        return _json(
            {
                "status": "ok",
                "uptime": "active",
                "version": version,
                "latest_version": version,
                "total_providers": 1,
                # g4f counts providers whose listing says "working", and no listing says it.
                "working_providers": 0,
                # g4f counts the keys of the models listing: providers, not models.
                "total_models": len({PROVIDER: [MODEL]}),
                "timestamp": datetime.datetime.now().isoformat(),
            }
        )

    async def add_usage(self, request: web.Request) -> web.Response:
        recorded = await self._server._record_finished(request)
        if request.content_type != "application/json":
            return _flask_page(415)
        try:
            body = json.loads(recorded.body)
        except ValueError:
            return _flask_page(400)
        if not isinstance(body, dict):
            return _flask_page(500)
        record = {"user": request.headers.get("x-user", "unknown"), **body}
        self._info.usage.setdefault(datetime.date.today().isoformat(), []).append(record)
        return _json({})

    async def get_usage(self, request: web.Request) -> web.Response:
        await self._server._record_finished(request)
        date = request.match_info["date"]
        if not _DATE.match(date):
            return _error(400, "Invalid date format")
        try:
            day = datetime.date.fromisoformat(date).isoformat()
        except ValueError:
            return _error(400, "Invalid date")
        records = self._info.usage.get(day)
        if not records:
            return _error(404, "No usage data found for this date")
        text = "".join(json.dumps(record) + "\n" for record in records)
        return web.Response(text=text, content_type="text/plain", charset="utf-8")

    async def stats(self, request: web.Request) -> web.Response:
        await self._server._record_finished(request)
        try:
            days = max(1, min(int(request.query.get("days", "30")), 365))
        except ValueError:
            days = 30
        user = request.query.get("user")
        today = datetime.date.today()
        try:
            document = _stats(self._info.usage, today, days, user)
        except (TypeError, ValueError):  # a record g4f's int() cannot read
            return _flask_page(500)
        return _json(document)

    async def add_log(self, request: web.Request) -> web.Response:
        recorded = await self._server._record_finished(request)
        if request.content_type != "application/json":
            return _flask_page(415)
        try:
            body = json.loads(recorded.body)
        except ValueError:
            return _flask_page(400)
        if body and not isinstance(body, dict):
            return _flask_page(500)
        record = {"origin": request.headers.get("origin"), **(body or {})}
        self._info.log.setdefault(datetime.date.today().isoformat(), []).append(record)
        return _json({})

    async def get_log(self, request: web.Request) -> web.Response:
        await self._server._record_finished(request)
        try:
            limit = int(request.query.get("limit", "100"))
        except ValueError:
            return _flask_page(500)
        logs: list[dict[str, Any]] = []
        today = datetime.date.today()
        for back in range(7):
            day = (today - datetime.timedelta(days=back)).isoformat()
            for record in reversed(self._info.log.get(day, [])):
                logs.append(record)
                if len(logs) >= limit:  # checked after each record, so 0 still gives one
                    break
            if len(logs) >= limit:
                break
        return _json({"logs": logs, "count": len(logs)})


def _counters() -> dict[str, int]:
    return dict.fromkeys(_COUNTERS, 0)


def _stats(
    usage: Mapping[str, list[dict[str, Any]]], today: datetime.date, days: int, user: str | None
) -> dict[str, Any]:
    """g4f's ``stats`` document: per day, per model, per provider, per user and in all."""
    per_day: list[dict[str, Any]] = []
    groups: dict[str, dict[str, dict[str, int]]] = {"models": {}, "providers": {}, "users": {}}
    totals = _counters()
    for back in reversed(range(days)):
        date = (today - datetime.timedelta(days=back)).isoformat()
        day = {"date": date, **_counters()}
        for entry in usage.get(date, []):
            if user and entry.get("user", "unknown") != user:
                continue
            prompt = int(entry.get("prompt_tokens", 0) or 0)
            completion = int(entry.get("completion_tokens", 0) or 0)
            saved = int(entry.get("saved_tokens", 0) or 0)
            total = int(entry.get("total_tokens", 0) or (prompt + completion))
            counts = dict(zip(_COUNTERS, (1, prompt, completion, saved, total)))
            for group, key in (("models", "model"), ("providers", "provider"), ("users", "user")):
                bucket = groups[group].setdefault(str(entry.get(key, "unknown")), _counters())
                for name, value in counts.items():
                    bucket[name] += value
            for name, value in counts.items():
                day[name] += value  # type: ignore[operator]
                totals[name] += value
        if day["requests"]:
            per_day.append(day)
    ordered = {
        group: dict(sorted(items.items(), key=lambda kv: kv[1]["total_tokens"], reverse=True))
        for group, items in groups.items()
    }
    return {"days": per_day, **ordered, "totals": totals}
