"""Buckets, media files and ``create``: checks, requests and file writing for them.

Everything here but :class:`PartialFile` is free of I/O. A bucket
(``/backend-api/v2/files/<bucket_id>``) holds uploaded documents, whose text
the server extracts, and media; media URLs in events (``/media/...``,
``/images/...``, ``/thumbnail/...``, ``/files/<bucket>/media/<name>``) are
relative to the server's root.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import mimetypes
import os
import re
import tempfile
from typing import IO, TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union
from urllib.parse import quote, unquote, urlsplit

from .._errors import DecodeError, InvalidInputError, StreamError, excerpt
from .._events import RawResponse
from .exchange import Exchange
from .request import CREATE_PATH, FILES_PATH, PreparedRequest, merge_headers
from .stream import StreamCore

__all__ = [
    "BucketStreamCore",
    "PartialFile",
    "bucket_message",
    "check_bucket_id",
    "check_download_path",
    "decode_data_uri",
    "media_filename",
    "resolve_url",
]

_BUCKET_ID = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._,+-]{0,98}[A-Za-z0-9])?")
"""What g4f's ``secure_filename`` leaves as it is (ASCII only): a bucket id that
it would rewrite names another directory than the one asked for (``"_a"`` is
``"a"``, ``".."`` the root of every bucket)."""
_UNSAFE_NAME = re.compile(r"[^\w.,+-]+")
DEFAULT_MEDIA_NAME = "media"


def check_bucket_id(bucket_id: object) -> str:
    """``bucket_id`` if g4f would store it under that very name; else :class:`InvalidInputError`.

    A bucket id is 1 to 100 ASCII letters, digits and ``.,+-_``, starting and
    ending with a letter or digit (a UUID, as g4f's own web client makes, is one).

    >>> check_bucket_id("3f2b9c1e-4d5a-4e6f-8a7b-9c0d1e2f3a4b")
    '3f2b9c1e-4d5a-4e6f-8a7b-9c0d1e2f3a4b'
    """
    if not isinstance(bucket_id, str) or not _BUCKET_ID.fullmatch(bucket_id):
        raise InvalidInputError(
            "bucket_id must be 1 to 100 ASCII letters, digits and '.,+-_', starting and "
            f"ending with a letter or digit (g4f rewrites any other), got {bucket_id!r}"
        )
    return bucket_id


def bucket_path(bucket_id: object, suffix: str = "") -> str:
    """The route of a bucket, ``/backend-api/v2/files/<bucket_id>`` (+ ``suffix``)."""
    return f"{FILES_PATH}/{check_bucket_id(bucket_id)}{suffix}"


def bucket_message(
    bucket_id: str,
    text: Optional[str] = None,
    *,
    media: Sequence[str] = (),
    role: str = "user",
) -> Dict[str, Any]:
    """A message that hands the model a bucket's text (and media uploaded to it).

    The content is a list of parts, as g4f's web client sends it: a
    ``{"bucket_id": ...}`` part, which the server replaces with the text it
    extracted from the bucket's documents; one ``{"bucket_id", "name", "url"}``
    part per name in ``media`` (an image, audio or video file the upload
    answered with, under ``"media"``), which the server attaches from the
    bucket; then ``text``, if given, as a text part::

        client.upload(bucket, ["report.pdf"])
        messages = [bucket_message(bucket, "Summarize this report.")]

    >>> bucket_message("b1", "Summarize it.")
    {'role': 'user', 'content': [{'bucket_id': 'b1'}, {'type': 'text', 'text': 'Summarize it.'}]}
    """
    check_bucket_id(bucket_id)
    if text is not None and not isinstance(text, str):
        raise InvalidInputError(f"text must be a str or None, not {type(text).__name__}")
    if not isinstance(role, str) or not role:
        raise InvalidInputError(f"role must be a non-empty str, got {role!r}")
    if isinstance(media, str) or not isinstance(media, (list, tuple)):
        raise InvalidInputError(f"media must be a list of file names, not {type(media).__name__}")
    content: List[Dict[str, Any]] = [{"bucket_id": bucket_id}]
    for index, name in enumerate(media):
        if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
            raise InvalidInputError(f"media[{index}] must be a file name, got {name!r}")
        url = f"/files/{bucket_id}/media/{quote(name)}"
        content.append({"bucket_id": bucket_id, "name": name, "url": url})
    if text:
        content.append({"type": "text", "text": text})
    return {"role": role, "content": content}


def bucket_event_type(data: Dict[str, Any]) -> Optional[str]:
    """The type of a bucket progress event: its ``action``; ``"error"`` for g4f's error object."""
    action = data.get("action")
    if isinstance(action, str) and action:
        return action
    return "error" if "error" in data else None


class BucketStreamCore(StreamCore):
    """The I/O-free half of a bucket's progress stream (``files/<bucket_id>/stream``).

    g4f sends ``data: {"action": ...}`` events with no ``type``; each event
    gets its action as its type: ``download`` (``count``), ``refine`` and
    ``load`` (``size``: bytes of text so far), ``media`` (``filename``),
    ``delete_files``, ``done`` (``size``). g4f's ``{"error": {"message"}}``
    is an ``error`` event, raised as :class:`StreamError`.
    """

    def __init__(
        self, request: PreparedRequest, max_event_size: int, secrets: Tuple[str, ...]
    ) -> None:
        super().__init__(request, max_event_size, secrets)
        self._decoder._type_of = bucket_event_type

    def _event_error(self, event: RawResponse) -> StreamError:
        error = event.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            data = self.redact_json(event.get_dict())
            message = self.redact(error["message"]) or "the server failed to read the bucket"
            return StreamError(message, event=RawResponse(data), url=self.request.url)
        return super()._event_error(event)


def flag(value: object, name: str) -> Optional[str]:
    """A query flag g4f tests for truth: ``"true"`` for True, absent for False or None."""
    if value is None or value is False:
        return None
    if value is True:
        return "true"
    raise InvalidInputError(f"{name} must be True or False, not {type(value).__name__}")


def flag_or_text(value: object, name: str) -> Optional[str]:
    """A query value g4f takes as a flag or as text: True is ``"true"``, a str is itself."""
    if isinstance(value, str):
        if not value:
            raise InvalidInputError(f"{name} must not be an empty str")
        return value
    if value is None or isinstance(value, bool):
        return flag(value, name)
    raise InvalidInputError(f"{name} must be True, False or a str, not {type(value).__name__}")


# -- media URLs and files ------------------------------------------------------------------


def resolve_url(base_url: str, url: str) -> str:
    """``url`` made absolute against the server's ``base_url``.

    g4f writes its media URLs from its own root (``/media/cat.png``): they are
    appended to ``base_url`` as they are, so that a server behind a path prefix
    (``https://host/g4f``) is asked at that prefix. Absolute ``http(s)`` and
    ``data:`` URLs are returned unchanged.

    >>> resolve_url("https://host/g4f", "/media/cat.png")
    'https://host/g4f/media/cat.png'
    """
    lowered = url[:8].lower()
    if lowered.startswith(("http://", "https://", "data:")):
        return url
    if url.startswith("//"):
        return urlsplit(base_url).scheme + ":" + url
    return base_url + (url if url.startswith("/") else "/" + url)


def media_filename(url: str, index: int = 0) -> str:
    """A safe file name for the media at ``url``: its last path segment, else ``media``.

    >>> media_filename("http://host/media/1700000000_a%20cat.png?x=1")
    '1700000000_a_cat.png'
    """
    if url[:5].lower() == "data:":
        mime = url[5:].split(";", 1)[0].split(",", 1)[0]
        extension = mimetypes.guess_extension(mime) or ""
        return f"{DEFAULT_MEDIA_NAME}-{index}{extension}"
    segment = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    name = _UNSAFE_NAME.sub("_", segment).strip("._")[:200]
    return name or f"{DEFAULT_MEDIA_NAME}-{index}"


def decode_data_uri(uri: str) -> bytes:
    """The bytes of a ``data:`` URI (base64 or percent-encoded)."""
    header, comma, payload = uri.partition(",")
    if not comma:
        raise DecodeError(f"malformed data: URI (no ','): {uri[:40]!r}")
    if header.lower().endswith(";base64"):
        try:
            return base64.b64decode(payload, validate=False)
        except (binascii.Error, ValueError) as exc:
            raise DecodeError(f"malformed base64 in a data: URI: {exc}") from None
    return unquote(payload).encode("latin-1", "replace")


def check_download_path(path: object) -> str:
    """``path`` as a str, if a file can be written there; else :class:`InvalidInputError`."""
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if not isinstance(path, str) or not path:
        raise InvalidInputError(f"path must be a file path (str or os.PathLike), got {path!r}")
    if os.path.isdir(path):
        raise InvalidInputError(
            f"path is a directory: {path!r}; give a file path (or use save_media(answer, "
            "folder) to save media under their own names)"
        )
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise InvalidInputError(f"path's directory does not exist: {parent!r}")
    return path


def check_folder(folder: object) -> str:
    """``folder`` as a str, if it is a directory or can be made one."""
    if isinstance(folder, os.PathLike):
        folder = os.fspath(folder)
    if not isinstance(folder, str) or not folder:
        raise InvalidInputError(f"folder must be a path (str or os.PathLike), got {folder!r}")
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise InvalidInputError(f"folder is not a directory: {folder!r}")
    return folder


def media_request(
    base_url: str, url: object, headers: Dict[str, str], own_origin: str
) -> PreparedRequest:
    """The GET of a media URL (relative ones against ``base_url``).

    The caller's ``headers`` (credentials among them) go only to the server's
    own origin: a URL of another one gets the SDK's headers alone.
    """
    from .redirect import origin, public_headers

    if not isinstance(url, str) or not url.strip():
        raise InvalidInputError(f"url must be a non-empty str, got {url!r}")
    scheme = urlsplit(url.strip()).scheme.lower()
    if scheme and scheme not in ("http", "https"):
        raise InvalidInputError(f"url must be an http(s) URL or a path on the server, got {url!r}")
    absolute = resolve_url(base_url, url.strip())
    parts = urlsplit(absolute)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise InvalidInputError(f"url must be an http(s) URL or a path on the server, got {url!r}")
    merged = merge_headers({"Accept": "*/*"}, headers)
    if origin(absolute) != own_origin:
        merged = public_headers(merged)
    return PreparedRequest("GET", absolute, merged)


class PartialFile:
    """A file being downloaded: written under a temporary name beside its final one.

    :meth:`commit` renames it to the final name; :meth:`discard` removes it.
    So a download that fails, is too large, or is cancelled never leaves a
    partial file under the final name (nor replaces a file that was there).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        folder, name = os.path.split(os.path.abspath(path))
        handle, self.temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=folder)
        self._file: Optional[IO[bytes]] = os.fdopen(handle, "wb")
        self.size = 0

    def write(self, data: Union[bytes, bytearray]) -> None:
        """Append ``data``."""
        assert self._file is not None
        self._file.write(data)
        self.size += len(data)

    def commit(self) -> None:
        """Close the file and give it its final name (replacing a file there)."""
        file, self._file = self._file, None
        if file is not None:
            file.close()
        os.replace(self.temporary, self.path)

    def discard(self) -> None:
        """Close and remove the temporary file; safe to call more than once."""
        file, self._file = self._file, None
        if file is not None:
            file.close()
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.temporary)


def is_text_answer(content_type: str) -> bool:
    """True when a ``create`` answer is text (``text/*`` or JSON), not media bytes."""
    kind = content_type.split(";", 1)[0].strip().lower()
    return not kind or kind.startswith("text/") or kind == "application/json"


def text_media_target(text: str) -> Optional[str]:
    """The media a ``create`` text answer names: a URL or ``data:`` URI alone on its line."""
    stripped = text.strip()
    if not stripped or "\n" in stripped or " " in stripped:
        return None
    lowered = stripped[:8].lower()
    if lowered.startswith(("http://", "https://", "data:")) or stripped.startswith("/media/"):
        return stripped
    return None


def media_answer_error(exchange: Exchange, content_type: str) -> DecodeError:
    """The error for a ``create_text`` answered with media bytes."""
    return DecodeError(
        f"the answer from {exchange.request.url} is media ({content_type}), not text; "
        "create_media() saves it to a file"
    )


def text_answer_error(exchange: Exchange, text: str) -> DecodeError:
    """The error for a ``create_media`` answered with text that names no media."""
    return DecodeError(
        f"the answer from {exchange.request.url} is text naming no media: "
        + excerpt(exchange.redact(text))
    )


def write_data_uri(uri: str, path: str, exchange: Optional[Exchange]) -> None:
    """Write the bytes of a ``data:`` URI to ``path`` (through a :class:`PartialFile`)."""
    data = decode_data_uri(uri)
    limit = None if exchange is None else exchange.max_response_size
    if exchange is not None and limit is not None and len(data) > limit:
        raise exchange.too_large_error(limit)
    file = PartialFile(path)
    try:
        file.write(data)
        file.commit()
    except BaseException:
        file.discard()
        raise


def unique_paths(folder: str, names: Sequence[str]) -> List[str]:
    """``folder/name`` for each name, a name met again getting ``-2``, ``-3``... before its
    extension."""
    seen: Dict[str, int] = {}
    paths = []
    for name in names:
        count = seen.get(name, 0) + 1
        seen[name] = count
        if count > 1:
            stem, extension = os.path.splitext(name)
            name = f"{stem}-{count}{extension}"
        paths.append(os.path.join(folder, name))
    return paths


# -- the calls' requests -------------------------------------------------------------------

if TYPE_CHECKING:
    from .client import ClientCore

    Core = ClientCore[Any, Any]


def bucket_events_call(
    core: Core, bucket_id: object, delete_files: object, refine: object
) -> BucketStreamCore:
    """``GET .../files/<bucket_id>/stream``: the bucket's progress events."""
    query = _bucket_query(delete_files, refine)
    exchange = core._get(bucket_path(bucket_id, "/stream"), 1, **query)
    exchange.request.headers["Accept"] = "text/event-stream"
    return BucketStreamCore(exchange.request, core.max_event_size, core._secrets())


def read_bucket_call(
    core: Core, bucket_id: object, delete_files: object, refine: object, size: Optional[int]
) -> Exchange:
    """``GET .../files/<bucket_id>``: the text of the bucket's documents, as plain text."""
    query = _bucket_query(delete_files, refine)
    exchange = core._get(bucket_path(bucket_id), core._limit("read_bucket", size), **query)
    exchange.request.headers["Accept"] = "text/plain"
    return exchange


def delete_bucket_call(core: Core, bucket_id: object, size: Optional[int]) -> Exchange:
    """``DELETE .../files/<bucket_id>``: the bucket and everything in it."""
    exchange = core._get(bucket_path(bucket_id), core._limit("delete_bucket", size))
    request = exchange.request
    exchange.request = PreparedRequest("DELETE", request.url, request.headers)
    return exchange


def _bucket_query(delete_files: object, refine: object) -> Dict[str, Optional[str]]:
    if not isinstance(delete_files, bool):
        raise InvalidInputError(
            f"delete_files must be True or False, not {type(delete_files).__name__}"
        )
    # g4f deletes unless the parameter is there and empty: "false" would be a true string.
    return {
        "delete_files": None if delete_files else "",
        "refine_chunks_with_spacy": flag(refine, "refine"),
    }


def download_call(core: Core, url: object, size: Optional[int]) -> Exchange:
    """The GET of a media URL, following redirects (see :func:`media_request`)."""
    from .redirect import origin

    own = origin(core.base_url)
    request = media_request(core.base_url, url, dict(core._headers()), own)
    exchange = Exchange(request, core._secrets())
    exchange.max_response_size = core._limit("download", size)
    exchange.follow_redirects = True
    exchange.origin = own
    return exchange


def create_call(
    core: Core,
    prompt: object,
    options: Mapping[str, object],
    size: Optional[int],
    limit_name: str,
) -> Exchange:
    """``GET .../create``: every query parameter g4f's ``create()`` reads, checked.

    ``options``: ``model``, ``provider``, ``web_search``, ``filter_markdown``,
    ``cache``, ``audio``, ``stream`` (see the client's ``create_text``).
    """
    from .redirect import origin

    if not isinstance(prompt, str) or not prompt:
        raise InvalidInputError(f"prompt must be a non-empty str, got {prompt!r}")
    query: Dict[str, Optional[str]] = {"prompt": prompt}
    for name in ("model", "provider"):
        value = options.get(name)
        if value is not None and (not isinstance(value, str) or not value):
            raise InvalidInputError(f"{name} must be a non-empty str or None, got {value!r}")
        query[name] = value
    query["web_search"] = flag_or_text(options.get("web_search"), "web_search")
    query["filter_markdown"] = flag_or_text(options.get("filter_markdown"), "filter_markdown")
    query["cache"] = flag_or_text(options.get("cache"), "cache")
    query["audio"] = flag(options.get("audio"), "audio")
    query["stream"] = flag(options.get("stream"), "stream")
    exchange = core._get(CREATE_PATH, core._limit(limit_name, size), **query)
    exchange.request.headers["Accept"] = "text/plain, */*"
    exchange.follow_redirects = True
    exchange.origin = origin(core.base_url)
    return exchange
