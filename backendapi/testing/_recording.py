"""Requests as the test server received them: the body kept raw, JSON and multipart parsed."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email import policy
from email.message import Message
from email.parser import HeaderParser
from typing import Any

from aiohttp import web
from multidict import CIMultiDict


@dataclass(frozen=True)
class UploadedFile:
    """One file part of a ``multipart/form-data`` request, exactly as it arrived.

    Attributes:
        name: the form field's name (``files`` for the uploads g4f reads).
        filename: the part's ``filename`` parameter ("" when it has none).
        content_type: the part's Content-Type header as sent ("" when it has none).
        data: the part's bytes, unchanged.
    """

    name: str
    filename: str
    content_type: str
    data: bytes = field(repr=False)


@dataclass
class RecordedRequest:
    """One request as the server received it.

    Attributes:
        method: the HTTP method.
        path: the URL path, without the query string.
        query: the query parameters (the last value wins when a name repeats).
        headers: the request headers, a `multidict.CIMultiDict`: lookups ignore case.
        body: the raw request body.
        json: the parsed JSON body; for a multipart/form-data body, the parsed ``json`` form
            field; ``None`` when there is none or it is not valid JSON (conversation requests
            then get a 400 response, as g4f does).
        disconnected: set when the client closed the connection while the reply was still
            being sent (during a `Pause`, `Wait` or `Hold`, or when a write failed).
        finished: set when the server is done with the request, for whatever reason.
        form: for a multipart/form-data body, its fields that are no files, as
            ``{name: [values in order]}`` (``json``, ``media_url``...); else empty.
        files: for a multipart/form-data body, its file parts in order; else empty.
    """

    method: str
    path: str
    query: dict[str, str]
    headers: CIMultiDict[str]
    body: bytes
    json: Any
    disconnected: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    form: dict[str, list[str]] = field(default_factory=dict)
    files: list[UploadedFile] = field(default_factory=list)

    @property
    def media_urls(self) -> list[str]:
        """The ``media_url`` fields of a multipart conversation request, in order."""
        return list(self.form.get("media_url", []))


async def record(request: web.Request) -> RecordedRequest:
    """Read the whole of `request` and parse it into a `RecordedRequest`."""
    body = await request.read()
    content_type = request.headers.get("Content-Type", "")
    form, files = _parse_multipart(content_type, body)
    return RecordedRequest(
        method=request.method,
        path=request.path,
        query=dict(request.query.items()),
        headers=CIMultiDict(request.headers),
        body=body,
        json=_parse_body(content_type, body, form),
        form=form,
        files=files,
    )


def _parse_json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:  # also covers UnicodeDecodeError
        return None


def _parse_multipart(
    content_type: str, body: bytes
) -> tuple[dict[str, list[str]], list[UploadedFile]]:
    """The fields and file parts of a ``multipart/form-data`` body; empty if it is none.

    aiohttp parses multipart only from the unread request stream, and the raw body has been
    read already to record it. The body is split at its boundary by hand, so every part's
    bytes stay exactly as sent; only each part's headers go through the stdlib parser.
    """
    form: dict[str, list[str]] = {}
    files: list[UploadedFile] = []
    header = Message()
    header["Content-Type"] = content_type
    boundary = header.get_boundary()
    if header.get_content_type() != "multipart/form-data" or not boundary:
        return form, files
    delimiter = b"\r\n--" + boundary.encode("latin-1")
    # The first delimiter may open the body; a CRLF in front makes it look like the others.
    pieces = (b"\r\n" + body).split(delimiter)
    for piece in pieces[1:]:
        if piece.startswith(b"--"):
            break  # the closing delimiter
        line_end = piece.find(b"\r\n")  # after optional whitespace ("transport padding")
        if line_end < 0:
            continue
        piece = piece[line_end + 2 :]
        if piece.startswith(b"\r\n"):
            head, content = b"", piece[2:]
        else:
            head, found, content = piece.partition(b"\r\n\r\n")
            if not found:
                continue
        headers = HeaderParser(policy=policy.HTTP).parsestr(head.decode("utf-8", "replace"))
        name = headers.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        filename = headers.get_filename()
        if filename is not None:
            content_type_value = headers.get("Content-Type")
            part_type = "" if content_type_value is None else str(content_type_value)
            files.append(UploadedFile(name, filename, part_type, content))
        else:
            charset = headers.get_content_charset() or "utf-8"
            try:
                value = content.decode(charset, "replace")
            except LookupError:
                value = content.decode("utf-8", "replace")
            form.setdefault(name, []).append(value)
    return form, files


def _parse_body(content_type: str, body: bytes, form: Mapping[str, Sequence[str]]) -> Any:
    """The JSON document a conversation request carries, or None."""
    if not content_type.lower().startswith("multipart/form-data"):
        return _parse_json(body)
    values = form.get("json")
    return _parse_json(values[0].encode("utf-8")) if values else None
