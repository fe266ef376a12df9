"""Media files are checked when a call is made and read when its request goes out.

The checks that need no reading (the path exists, is a file; a file object
gives bytes) fail at ``create()``; reading and telling the type happen when
the stream opens, in a worker thread for the async client, so a large file
never stalls its event loop.
"""

from __future__ import annotations

import asyncio
import base64
import threading
from pathlib import Path
from typing import Any, Dict, List

import pytest
from clients import MESSAGES, TEST_TIMEOUT

from backendapi import AsyncBackendApiClient, BackendApiClient, InvalidInputError
from backendapi.testing import BackendApiTestServer, Reply

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
GIF = b"GIF89a" + b"\x00" * 16


class ReadRecorder:
    """A binary file object that notes which thread read it, and when."""

    name = "picture.png"

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.threads: List[threading.Thread] = []

    def read(self) -> bytes:
        self.threads.append(threading.current_thread())
        return self._data


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _consume(kind: str, url: str, media: Any, before_reading: Any = None) -> Dict[str, Any]:
    """Create the stream, call ``before_reading()``, then read it; report what happened."""
    outcome: Dict[str, Any] = {"error": None, "events": 0}
    if kind == "sync":
        with BackendApiClient(url, timeout=TEST_TIMEOUT) as client:
            stream = client.create("m", MESSAGES, media=media)
            if before_reading is not None:
                before_reading()
            try:
                outcome["events"] = len(list(stream))
            except InvalidInputError as exc:
                outcome["error"] = exc
        return outcome

    async def main() -> None:
        async with AsyncBackendApiClient(url, timeout=TEST_TIMEOUT) as client:
            stream = client.create("m", MESSAGES, media=media)
            if before_reading is not None:
                before_reading()
            try:
                outcome["events"] = len([event async for event in stream])
            except InvalidInputError as exc:
                outcome["error"] = exc
            outcome["loop thread"] = threading.current_thread()

    asyncio.run(main())
    return outcome


def test_a_file_is_read_when_the_request_goes_out(
    client_kind: str, backendapi_server: BackendApiTestServer, tmp_path: Path
) -> None:
    backendapi_server.default_reply = Reply.answer("ok")
    path = tmp_path / "picture"
    path.write_bytes(PNG)

    outcome = _consume(
        client_kind, backendapi_server.url, [str(path)], lambda: path.write_bytes(GIF)
    )

    assert outcome["error"] is None and outcome["events"] > 0
    (request,) = backendapi_server.requests
    assert request.json["media"] == [[data_uri(GIF, "image/gif"), "picture"]]


def test_a_file_gone_before_the_request_is_named_and_nothing_is_sent(
    client_kind: str, backendapi_server: BackendApiTestServer, tmp_path: Path
) -> None:
    path = tmp_path / "picture.png"
    path.write_bytes(PNG)

    outcome = _consume(client_kind, backendapi_server.url, [str(path)], path.unlink)

    error = outcome["error"]
    assert isinstance(error, InvalidInputError)
    assert "media[0]" in str(error) and "no such file" in str(error) and str(path) in str(error)
    assert backendapi_server.requests == []


def test_a_file_of_unknown_type_is_refused_when_it_is_read(
    client_kind: str, backendapi_server: BackendApiTestServer, tmp_path: Path
) -> None:
    path = tmp_path / "notes"
    path.write_bytes(b"just some text")

    outcome = _consume(client_kind, backendapi_server.url, [str(path)])

    assert isinstance(outcome["error"], InvalidInputError)
    assert "media[0]" in str(outcome["error"]) and "cannot tell" in str(outcome["error"])
    assert backendapi_server.requests == []


def test_a_missing_file_still_fails_at_create(client_kind: str, tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.png")
    client: Any = (
        BackendApiClient("http://127.0.0.1:9")
        if client_kind == "sync"
        else AsyncBackendApiClient("http://127.0.0.1:9")
    )
    with pytest.raises(InvalidInputError, match="no such file"):
        client.create("m", MESSAGES, media=[missing])


def test_the_async_client_reads_files_off_its_event_loop(
    backendapi_server: BackendApiTestServer,
) -> None:
    backendapi_server.default_reply = Reply.answer("ok")
    picture = ReadRecorder(PNG)

    outcome = _consume("async", backendapi_server.url, [picture])

    assert outcome["error"] is None
    assert len(picture.threads) == 1
    assert picture.threads[0] is not outcome["loop thread"]
    (request,) = backendapi_server.requests
    assert request.json["media"] == [[data_uri(PNG, "image/png"), "picture.png"]]


def test_the_blocking_client_reads_files_in_the_calling_thread(
    backendapi_server: BackendApiTestServer,
) -> None:
    backendapi_server.default_reply = Reply.answer("ok")
    picture = ReadRecorder(PNG)

    _consume("sync", backendapi_server.url, [picture])

    assert picture.threads == [threading.current_thread()]


def test_upload_reads_its_files_when_it_sends(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    picture = ReadRecorder(PNG)
    if client_kind == "sync":
        with BackendApiClient(backendapi_server.url, timeout=TEST_TIMEOUT) as client:
            result = client.upload("bucket-1", [picture])
    else:

        async def main() -> Any:
            async with AsyncBackendApiClient(backendapi_server.url, timeout=TEST_TIMEOUT) as client:
                return await client.upload("bucket-1", [picture])

        result = asyncio.run(main())

    assert result["media"] == [{"name": "picture.png"}]
    assert len(picture.threads) == 1
    assert (picture.threads[0] is threading.main_thread()) == (client_kind == "sync")
