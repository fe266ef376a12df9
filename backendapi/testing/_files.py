"""The test server's buckets, media files, ``create`` route and redirects, as g4f 8.8.6 has them.

`Storage` is what the server holds (`BackendApiTestServer.storage`); `add_file_routes` adds
the routes that use it to the server's aiohttp application:

* ``POST /backend-api/v2/files/<bucket_id>``: an upload; documents and media are kept.
* ``GET /backend-api/v2/files/<bucket_id>/stream``: the progress events of reading it
  (``data: {"action": ...}``), as g4f sends them; ``GET .../files/<bucket_id>`` with
  ``Accept: text/event-stream`` too; without it, the text itself.
* ``DELETE /backend-api/v2/files/<bucket_id>``.
* ``GET /files/<bucket_id>/<media|thumbnail>/<name>``: a bucket's media.
* ``GET /media/<name>``, ``/images/<name>``, ``/thumbnail/<name>``: `Storage.media`.
* ``GET /backend-api/v2/create``: every parameter g4f reads; text, or a media answer.
* any path in `Storage.redirects`: a redirect (a 302 by default), before any other route.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import re
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from aiohttp import web

from ._recording import RecordedRequest
from ._replies import error_document
from ._sending import send_text

if TYPE_CHECKING:
    from ._server import BackendApiTestServer

_MEDIA_TYPES = ("image/", "audio/", "video/")
_EVENT_STREAM = "text/event-stream"
_LOAD_CHUNK = 4096


def secure_filename(name: str) -> str:
    """g4f's rule for a name on disk (bucket ids included): unquoted, every run of characters
    outside ``[\\w.,_+-]`` made one ``_``, at most 100 bytes, ``.,_+-`` stripped at both ends.
    """
    cleaned = re.sub(r"[^\w.,_+\-]+", "_", unquote(name).strip())
    encoded = cleaned.encode("utf-8")
    if len(encoded) > 100:
        encoded = encoded[:96] + encoded[-4:]
    return encoded.decode("utf-8", "ignore").strip(".,_+-")


def filter_markdown(text: str, allowed: str | None, default: str) -> str:
    """The first fenced code block of `text`, as g4f's ``filter_markdown`` finds it.

    With `allowed` (g4f tests the block's language tag for being in that string), a block of
    another language gives `default`; no block at all gives `default` too.
    """
    start = text.find("```")
    if start < 0:
        return default
    line_end = text.find("\n", start + 3)
    if line_end < 0:
        return default
    tag = text[start + 3 : line_end].strip("\r\n\t ") or None
    close = text.find("\n```", line_end)
    code = text[line_end + 1 :] if close < 0 else text[line_end + 1 : close].removesuffix("\r")
    if allowed is None or (tag is not None and tag in allowed) or (tag is None and "" in allowed):
        return code
    return default


def _is_media(filename: str, content_type: str) -> bool:
    """True for an image, audio or video file, by its Content-Type or else its name."""
    if content_type.lower().startswith(_MEDIA_TYPES):
        return True
    guessed, _ = mimetypes.guess_type(filename)
    return bool(guessed and guessed.startswith(_MEDIA_TYPES))


def _content_type(name: str) -> str:
    guessed, _ = mimetypes.guess_type(name)
    return guessed or "application/octet-stream"


@dataclass
class Bucket:
    """One bucket: what was uploaded to it, and the text the server extracted.

    Attributes:
        documents: the documents it holds, ``{name: bytes}``.
        unread: names of the documents uploaded since the last read, in order (g4f's
            ``files.txt``); a read takes their text and empties it.
        media: images, audio and video, ``{name: bytes}``.
        text: the extracted text, once read (g4f's ``plain.cache``); later reads return it.
    """

    documents: dict[str, bytes] = field(default_factory=dict)
    unread: list[str] = field(default_factory=list)
    media: dict[str, bytes] = field(default_factory=dict)
    text: str | None = None


@dataclass
class Storage:
    """What the test server keeps for its files, media, ``create`` and redirect routes.

    Change it from the test's thread; the server reads it under `lock`.

    Attributes:
        buckets: ``{bucket_id: Bucket}``, filled by uploads.
        media: ``{name: bytes}`` served at ``/media/<name>``, ``/images/<name>`` and
            ``/thumbnail/<name>`` (g4f serves all three from its media directory).
        create_media: when set, ``(name, bytes)``: ``GET /backend-api/v2/create`` answers
            with that generated file's bytes, as g4f does for an image or video answer.
        redirects: ``{path: location}``: a request of that path (any method) gets a 302 to
            `location` (``{path: (status, location)}`` for another status).
        create_cache: the answers kept for ``create``'s ``cache`` parameter.
    """

    buckets: dict[str, Bucket] = field(default_factory=dict)
    media: dict[str, bytes] = field(default_factory=dict)
    create_media: tuple[str, bytes] | None = None
    redirects: dict[str, str | tuple[int, str]] = field(default_factory=dict)
    create_cache: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


def add_file_routes(app: web.Application, server: BackendApiTestServer) -> None:
    """Add the routes of this module to `app`, serving `server.storage`."""
    routes = _FileRoutes(server)
    app.middlewares.append(routes.redirect_middleware)
    app.router.add_get("/backend-api/v2/create", routes.create)
    app.router.add_post("/backend-api/v2/files/{bucket_id}", routes.upload)
    app.router.add_get("/backend-api/v2/files/{bucket_id}/stream", routes.stream_bucket)
    app.router.add_route("GET", "/backend-api/v2/files/{bucket_id}", routes.read_bucket)
    app.router.add_route("DELETE", "/backend-api/v2/files/{bucket_id}", routes.delete_bucket)
    app.router.add_get("/files/{bucket_id}/{file_type}/{name}", routes.bucket_media)
    for prefix in ("media", "images", "thumbnail"):
        app.router.add_get(f"/{prefix}/{{name:.+}}", routes.media)


class _FileRoutes:
    def __init__(self, server: BackendApiTestServer) -> None:
        self._server = server
        self._storage = server.storage

    async def _record(self, request: web.Request) -> RecordedRequest:
        return await self._server._record_finished(request)

    @web.middleware
    async def redirect_middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        with self._storage.lock:
            target = self._storage.redirects.get(request.path)
        if target is None:
            return await handler(request)
        await self._record(request)
        status, location = (302, target) if isinstance(target, str) else target
        return web.Response(status=status, headers={"Location": location})

    # -- create -----------------------------------------------------------------------------

    async def create(self, request: web.Request) -> web.StreamResponse:
        recorded = await self._server._record(request)
        try:
            return await self._create(request, recorded)
        finally:
            recorded.finished.set()

    async def _create(self, request: web.Request, recorded: RecordedRequest) -> web.StreamResponse:
        query = request.query
        provider = query.get("provider", query.get("audio_provider"))
        if self._server._rejects_provider(provider):
            return _json_error(404, "Model or provider not found")
        prompt = query.get("prompt")
        if not prompt:  # g4f hands the provider no prompt, which fails
            return _json_error(500, "An error occurred during request generation")
        do_filter = query.get("filter_markdown", query.get("json"))
        cache_id = query.get("cache")
        with self._storage.lock:
            generated = self._storage.create_media
            if generated is not None and not cache_id:
                self._storage.create_media = None  # g4f deletes the file once sent
        if generated is not None:
            name, data = generated
            return web.Response(body=data, headers={"Content-Type": _content_type(name)})
        reply = self._server.create_text_reply
        text = prompt if reply is None else reply
        if cache_id:
            parameters = {
                "model": query.get("model"),
                "messages": [{"role": "user", "content": prompt}],
                "stream": False,
                "web_search": query.get("web_search"),
            }
            key = hashlib.sha256(
                cache_id.encode() + json.dumps(parameters, sort_keys=True).encode()
            ).hexdigest()
            with self._storage.lock:
                text = self._storage.create_cache.setdefault(key, text)
        if do_filter:
            whole = do_filter.lower() in ("true", "1")
            text = filter_markdown(text, None if whole else do_filter, text if whole else "")
        return await send_text(request, text, recorded)

    # -- buckets ----------------------------------------------------------------------------

    async def upload(self, request: web.Request) -> web.Response:
        recorded = await self._record(request)
        bucket_id = secure_filename(request.match_info["bucket_id"])
        documents: list[str] = []
        media: list[dict[str, str]] = []
        with self._storage.lock:
            bucket = self._storage.buckets.setdefault(bucket_id, Bucket())
            for upload in recorded.files:
                if upload.name != "files":
                    continue
                name = secure_filename(upload.filename)
                if _is_media(name, upload.content_type):
                    bucket.media[name] = upload.data
                    media.append({"name": name})
                else:
                    bucket.documents[name] = upload.data
                    bucket.unread.append(name)
                    documents.append(name)
        return web.json_response({"bucket_id": bucket_id, "files": documents, "media": media})

    def _bucket(self, request: web.Request) -> tuple[str, Bucket | None]:
        bucket_id = secure_filename(request.match_info["bucket_id"])
        with self._storage.lock:
            return bucket_id, self._storage.buckets.get(bucket_id)

    async def stream_bucket(self, request: web.Request) -> web.StreamResponse:
        return await self._read(request, event_stream=True)

    async def read_bucket(self, request: web.Request) -> web.StreamResponse:
        accept = request.headers.get("Accept", "")
        return await self._read(request, event_stream=_EVENT_STREAM in accept)

    async def _read(self, request: web.Request, *, event_stream: bool) -> web.StreamResponse:
        recorded = await self._record(request)
        _, bucket = self._bucket(request)
        if bucket is None:
            return _json_error(404, "Bucket directory not found")
        # g4f reads its query values as strings: only an empty one is false.
        delete_files = request.query.get("delete_files", "true") != ""
        refine = request.query.get("refine_chunks_with_spacy", "") != ""
        pieces, events = self._take_text(bucket, delete_files, refine)
        if not event_stream:
            return await send_text(request, "".join(pieces), recorded)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for event in events:
            await response.write(f"data: {json.dumps(event)}\n\n".encode())
        await response.write_eof()
        return response

    def _take_text(
        self, bucket: Bucket, delete_files: bool, refine: bool
    ) -> tuple[list[str], list[dict[str, Any]]]:
        """The text's pieces and the events of one read, changing the bucket as g4f does."""
        events: list[dict[str, Any]] = []
        with self._storage.lock:
            if refine:
                # g4f refines the text a load cached; before any load there is none.
                pieces = _chunks(bucket.text or "")
            elif bucket.text is None:
                pieces = []
                for name in bucket.unread:
                    text = bucket.documents[name].decode("utf-8", "ignore").strip()
                    pieces += [f"<!-- File: {name} -->\n", text, "\n<-- End -->\n\n"]
                bucket.text = "".join(pieces)
            else:
                pieces = _chunks(bucket.text)
            size = 0
            for piece in pieces:
                size += len(piece.encode())
                events.append({"action": "refine" if refine else "load", "size": size})
            if not refine and bucket.unread:
                if delete_files:
                    for name in bucket.unread:
                        bucket.documents.pop(name, None)
                bucket.unread = []
                events.append({"action": "delete_files"})
            events.append({"action": "done", "size": size})
        return pieces, events

    async def delete_bucket(self, request: web.Request) -> web.Response:
        await self._record(request)
        bucket_id, bucket = self._bucket(request)
        if bucket is None:
            return _json_error(404, "Bucket directory not found")
        with self._storage.lock:
            self._storage.buckets.pop(bucket_id, None)
        return web.json_response({"message": "Bucket deleted successfully"})

    async def bucket_media(self, request: web.Request) -> web.Response:
        await self._record(request)
        if request.match_info["file_type"] not in ("media", "thumbnail"):
            return _json_error(400, "Invalid file type")
        _, bucket = self._bucket(request)
        name = secure_filename(request.match_info["name"])
        data = None if bucket is None else bucket.media.get(name)
        if data is None:
            raise web.HTTPNotFound()
        return web.Response(body=data, headers={"Content-Type": _content_type(name)})

    async def media(self, request: web.Request) -> web.Response:
        await self._record(request)
        name = request.match_info["name"]
        with self._storage.lock:
            data = self._storage.media.get(name)
        if data is None:
            raise web.HTTPNotFound()
        return web.Response(body=data, headers={"Content-Type": _content_type(name)})


def _chunks(text: str) -> list[str]:
    return [text[i : i + _LOAD_CHUNK] for i in range(0, len(text), _LOAD_CHUNK)]


def _json_error(status: int, message: str) -> web.Response:
    return web.json_response(error_document(message), status=status)
