"""Media attachments: bytes, files and URLs into the ``media`` field's pairs.

The ``media`` field is a list of ``[data_or_url, filename_or_null]`` pairs;
local bytes and files travel as ``data:<mime>;base64,...`` URIs, URLs and
existing ``data:`` URIs pass through unchanged.
"""

from __future__ import annotations

import base64
import io
import mimetypes
import os
from typing import IO, List, NamedTuple, Optional, Sequence, Tuple, Union

from .._errors import InvalidInputError

__all__ = [
    "MediaEntry",
    "MediaInput",
    "MediaItem",
    "MediaPart",
    "PendingFile",
    "check_media",
    "encode_media",
    "guess_mime_type",
    "load_media",
    "resolve_media",
]

MediaItem = Union[bytes, bytearray, memoryview, str, "os.PathLike[str]", IO[bytes]]
"""One attachment: bytes, a path, a binary file object, a ``data:`` URI or an http(s) URL."""

MediaInput = Union[
    MediaItem, Sequence[Union[MediaItem, Tuple[MediaItem, Optional[str]], List[object]]]
]
"""``media=``: a list of items or ``(item, filename)`` pairs, or one bare item."""

# (offset, magic bytes, MIME type), checked in order.
_SIGNATURES: Tuple[Tuple[int, bytes, str], ...] = (
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"GIF87a", "image/gif"),
    (0, b"GIF89a", "image/gif"),
    (0, b"%PDF-", "application/pdf"),
    (0, b"OggS", "audio/ogg"),
    (0, b"fLaC", "audio/flac"),
    (0, b"ID3", "audio/mpeg"),
    (0, b"\x1a\x45\xdf\xa3", "video/webm"),
    (0, b"II*\x00", "image/tiff"),
    (0, b"MM\x00*", "image/tiff"),
)
_FTYP_BRANDS = {
    b"M4A ": "audio/mp4",
    b"M4B ": "audio/mp4",
    b"qt  ": "video/quicktime",
    b"heic": "image/heic",
    b"heix": "image/heic",
    b"avif": "image/avif",
}


def guess_mime_type(data: bytes, filename: Optional[str] = None) -> Optional[str]:
    """Return the MIME type of ``data``: from its signature, else from ``filename``.

    >>> guess_mime_type(b"\\x89PNG\\r\\n\\x1a\\n...")
    'image/png'
    >>> guess_mime_type(b"a,b\\n1,2\\n", "table.csv")
    'text/csv'
    """
    for offset, magic, mime in _SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            return mime
    if data[:4] == b"RIFF" and data[8:12] in (b"WEBP", b"WAVE"):
        return "image/webp" if data[8:12] == b"WEBP" else "audio/wav"
    if data[4:8] == b"ftyp":
        return _FTYP_BRANDS.get(data[8:12], "video/mp4")
    # "BM" alone is too weak a signature; the BMP header's reserved bytes are zero.
    if data[:2] == b"BM" and data[6:10] == b"\x00\x00\x00\x00":
        return "image/bmp"
    if (data[:2] == b"\xff\xfb") or (data[:2] == b"\xff\xf3") or (data[:2] == b"\xff\xf2"):
        return "audio/mpeg"
    if filename:
        guessed, _ = mimetypes.guess_type(filename, strict=False)
        return guessed
    return None


def to_data_uri(data: bytes, mime: str) -> str:
    """Encode ``data`` as a ``data:<mime>;base64,...`` URI."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


class MediaPart(NamedTuple):
    """One validated attachment: local bytes (``data``) or a URL/URI (``uri``)."""

    data: Optional[bytes]
    uri: Optional[str]
    filename: Optional[str]
    mime: Optional[str]


MediaEntry = Union[MediaPart, "PendingFile"]
"""A checked attachment: ready (:class:`MediaPart`), or a file still to be read."""


class PendingFile(NamedTuple):
    """A checked local file (a path or a binary file object), read when the request is sent."""

    source: object
    """The path (a str) or the file object."""
    filename: Optional[str]
    where: str
    """How messages name it: ``media[2]``."""

    def load(self) -> MediaPart:
        """Read the file and tell its media type; the same errors as :func:`check_media`."""
        if isinstance(self.source, str):
            return _load_path(self.source, self.filename, self.where)
        return _load_file_object(self.source, self.filename, self.where)


def encode_media(media: Optional[MediaInput]) -> Optional[List[List[Optional[str]]]]:
    """Validate ``media`` and turn it into the wire's ``[[uri, filename], ...]``.

    The caller's list is not modified. Raises :class:`InvalidInputError`
    naming the offending item (``media[2]``) for a missing file, a type that
    cannot be told, or an object that is no media at all.
    """
    return wire_media(load_media(check_media(media)))


def wire_media(parts: Optional[List[MediaPart]]) -> Optional[List[List[Optional[str]]]]:
    """Loaded attachments as the wire's ``[[uri, filename], ...]``."""
    if parts is None:
        return None
    return [
        [part.uri if part.data is None else to_data_uri(part.data, part.mime or ""), part.filename]
        for part in parts
    ]


def resolve_media(media: Optional[MediaInput], label: str = "media") -> Optional[List[MediaPart]]:
    """Validate ``media`` and load each item; see :func:`encode_media`."""
    return load_media(check_media(media, label))


def load_media(entries: Optional[List[MediaEntry]]) -> Optional[List[MediaPart]]:
    """Read the files among checked attachments (this is the part that does I/O)."""
    if entries is None:
        return None
    return [entry.load() if isinstance(entry, PendingFile) else entry for entry in entries]


def has_pending(entries: Optional[List[MediaEntry]]) -> bool:
    """True when some of the attachments are files still to be read."""
    return entries is not None and any(isinstance(entry, PendingFile) for entry in entries)


def check_media(media: Optional[MediaInput], label: str = "media") -> Optional[List[MediaEntry]]:
    """Validate ``media`` without reading any file.

    Everything that needs no reading is checked here, so a bad argument fails
    when the call is made: the shape of the list, each item's type, a path
    that does not exist or is no file, a text-mode file object, bytes whose
    media type cannot be told. Files are read by :func:`load_media`.
    """
    if media is None:
        return None
    if _is_item(media):
        items: Sequence[object] = [media]
    elif isinstance(media, (list, tuple)):
        items = media
    else:
        raise InvalidInputError(
            f"{label} must be a list of items or (item, filename) pairs, not {type(media).__name__}"
        )
    return [_check_entry(entry, f"{label}[{index}]") for index, entry in enumerate(items)]


def _is_item(value: object) -> bool:
    return isinstance(value, (bytes, bytearray, memoryview, str, os.PathLike)) or callable(
        getattr(value, "read", None)
    )


def _check_entry(entry: object, where: str) -> MediaEntry:
    filename: Optional[str] = None
    item = entry
    if isinstance(entry, (tuple, list)):
        if len(entry) != 2:
            raise InvalidInputError(
                f"{where} must be an item or an (item, filename) pair, "
                f"got a {type(entry).__name__} of {len(entry)} elements"
            )
        item, name = entry
        if name is not None and not isinstance(name, str):
            raise InvalidInputError(
                f"{where}: the filename must be a str or None, not {type(name).__name__}"
            )
        filename = name
    if isinstance(item, str):
        return _check_string(item, filename, where)
    if isinstance(item, (bytes, bytearray, memoryview)):
        return _local(bytes(item), filename, where)
    if isinstance(item, os.PathLike):
        return _check_path(os.fspath(item), filename, where)
    if callable(getattr(item, "read", None)):
        if isinstance(item, io.TextIOBase):
            raise _text_mode_error(where, "str")
        name_attr = getattr(item, "name", None)
        if filename is None and isinstance(name_attr, str):
            filename = os.path.basename(name_attr)
        return PendingFile(item, filename, where)
    hint = ""
    if item is None:
        hint = "; pass media as a list of (item, filename) pairs, e.g. media=[(path, None)]"
    raise InvalidInputError(
        f"{where} must be bytes, a path, a binary file, a data: URI or an http(s) URL, "
        f"not {type(item).__name__}{hint}"
    )


def _check_string(item: str, filename: Optional[str], where: str) -> MediaEntry:
    lowered = item[:8].lower()
    if lowered.startswith("data:"):
        if "," not in item:
            raise InvalidInputError(f"{where}: malformed data: URI (no ',' before the data)")
        return MediaPart(None, item, filename, None)
    if lowered.startswith(("http://", "https://")):
        return MediaPart(None, item, filename, None)
    if "://" in item[:16]:
        scheme = item.split("://", 1)[0]
        raise InvalidInputError(
            f"{where}: unsupported URL scheme {scheme!r}; use http(s), data: or a file path"
        )
    return _check_path(item, filename, where)


def _check_path(path: str, filename: Optional[str], where: str) -> PendingFile:
    if not os.path.isfile(path):
        problem = "is not a file" if os.path.exists(path) else "no such file"
        raise InvalidInputError(f"{where}: {problem}: {path!r}")
    return PendingFile(path, os.path.basename(path) if filename is None else filename, where)


def _load_path(path: str, filename: Optional[str], where: str) -> MediaPart:
    try:
        with open(path, "rb") as file:
            data = file.read()
    except FileNotFoundError:
        raise InvalidInputError(f"{where}: no such file: {path!r}") from None
    except IsADirectoryError:
        raise InvalidInputError(f"{where}: is not a file: {path!r}") from None
    return _local(data, filename, where)


def _load_file_object(source: object, filename: Optional[str], where: str) -> MediaPart:
    data = source.read()  # type: ignore[attr-defined]
    if not isinstance(data, (bytes, bytearray)):
        raise _text_mode_error(where, type(data).__name__)
    return _local(bytes(data), filename, where)


def _text_mode_error(where: str, kind: str) -> InvalidInputError:
    return InvalidInputError(
        f"{where}: the file object gives {kind}, not bytes; open it in binary mode ('rb')"
    )


def _local(data: bytes, filename: Optional[str], where: str) -> MediaPart:
    mime = guess_mime_type(data, filename)
    if mime is None:
        named = f" and the filename {filename!r} has no known extension" if filename else ""
        raise InvalidInputError(
            f"{where}: cannot tell the media type: the bytes match no known signature{named}; "
            "pass (item, 'name.ext') with a telling extension"
        )
    return MediaPart(data, None, filename, mime)
