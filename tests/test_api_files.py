"""Issue 14, point 2: buckets, media URLs and downloads, redirects of GETs, and ``create``.

Every scenario runs over both clients against the test server, which answers these
routes as g4f 8.8.6 does (``backendapi/testing/_files.py``).
"""

from __future__ import annotations

import asyncio
import base64
import os
from pathlib import Path
from typing import Any, Dict, List

import pytest
from clients import TEST_TIMEOUT, call
from loopback import RawServer

from backendapi import (
    APIStatusError,
    BackendApiClient,
    DecodeError,
    InvalidInputError,
    ResponseTooLargeError,
    StreamError,
    bucket_message,
)
from backendapi._core.files import media_filename, resolve_url
from backendapi.testing import BackendApiTestServer, RecordedRequest, Reply

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
NOTES = b"line one\nline two\n"
NOTES_TEXT = "<!-- File: notes.txt -->\nline one\nline two\n<-- End -->\n\n"


def last(server: BackendApiTestServer) -> RecordedRequest:
    assert server.requests, "the server got no request"
    return server.requests[-1]


def bucket_events(kind: str, url: str, bucket_id: Any, **options: Any) -> List[Dict[str, Any]]:
    """The events of ``client.bucket_events(bucket_id, **options)``, read to the end."""
    if kind == "sync":
        with BackendApiClient(url, timeout=TEST_TIMEOUT, max_retries=0) as client:
            stream = client.bucket_events(bucket_id, **options)
            with stream:
                return [event.get_dict() for event in stream]

    async def main() -> List[Dict[str, Any]]:
        from backendapi import AsyncBackendApiClient

        async with AsyncBackendApiClient(url, timeout=TEST_TIMEOUT, max_retries=0) as client:
            stream = client.bucket_events(bucket_id, **options)
            async with stream:
                return [event.get_dict() async for event in stream]

    return asyncio.run(main())


def uploaded(kind: str, server: BackendApiTestServer, bucket_id: str = "b-1") -> None:
    call(kind, server.url, "upload", bucket_id, [(NOTES, "notes.txt"), (PNG, "cat.png")])


def leftovers(folder: Path) -> List[str]:
    """Names of temporary download files left in ``folder``."""
    return sorted(name for name in os.listdir(folder) if name.endswith(".part"))


# --- buckets ------------------------------------------------------------------------------


def test_a_buckets_progress_stream_gives_g4fs_events_as_typed_events(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    uploaded(client_kind, backendapi_server)
    events = bucket_events(client_kind, backendapi_server.url, "b-1")
    size = len(NOTES_TEXT.encode())
    assert [event["type"] for event in events] == ["load"] * 3 + ["delete_files", "done"]
    assert events[-1] == {"type": "done", "action": "done", "size": size}
    assert [event["size"] for event in events[:3]] == [25, 42, size]
    request = last(backendapi_server)
    assert (request.method, request.path, request.query) == (
        "GET",
        "/backend-api/v2/files/b-1/stream",
        {},
    )
    assert request.headers["Accept"] == "text/event-stream"
    # The uploaded document went once read (g4f's default); its text stays, cached.
    assert backendapi_server.storage.buckets["b-1"].documents == {}
    assert call(client_kind, backendapi_server.url, "read_bucket", "b-1") == NOTES_TEXT


def test_reading_a_bucket_gives_its_text_and_deletes_its_files_by_default(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    uploaded(client_kind, backendapi_server)
    assert call(client_kind, backendapi_server.url, "read_bucket", "b-1") == NOTES_TEXT
    assert last(backendapi_server).query == {}  # g4f's default: delete
    assert backendapi_server.storage.buckets["b-1"].documents == {}


def test_delete_files_false_keeps_the_files_with_the_empty_value_g4f_reads_as_false(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    uploaded(client_kind, backendapi_server)
    text = call(client_kind, backendapi_server.url, "read_bucket", "b-1", delete_files=False)
    assert text == NOTES_TEXT
    # "false" would be a true string to g4f: only an empty value keeps the files.
    assert last(backendapi_server).query == {"delete_files": ""}
    assert list(backendapi_server.storage.buckets["b-1"].documents) == ["notes.txt"]


def test_refine_asks_for_spacy_refinement(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    uploaded(client_kind, backendapi_server)
    call(client_kind, backendapi_server.url, "read_bucket", "b-1")
    events = bucket_events(client_kind, backendapi_server.url, "b-1", refine=True)
    assert last(backendapi_server).query == {"refine_chunks_with_spacy": "true"}
    assert [event["type"] for event in events] == ["refine", "done"]


def test_deleting_a_bucket(client_kind: str, backendapi_server: BackendApiTestServer) -> None:
    uploaded(client_kind, backendapi_server)
    answer = call(client_kind, backendapi_server.url, "delete_bucket", "b-1")
    assert answer == {"message": "Bucket deleted successfully"}
    assert (last(backendapi_server).method, last(backendapi_server).path) == (
        "DELETE",
        "/backend-api/v2/files/b-1",
    )
    with pytest.raises(APIStatusError, match="Bucket directory not found") as caught:
        call(client_kind, backendapi_server.url, "read_bucket", "b-1")
    assert caught.value.status_code == 404


@pytest.mark.parametrize("method", ["read_bucket", "delete_bucket", "bucket_events"])
def test_a_bucket_the_server_lacks_is_a_404(
    client_kind: str, backendapi_server: BackendApiTestServer, method: str
) -> None:
    with pytest.raises(APIStatusError) as caught:
        if method == "bucket_events":
            bucket_events(client_kind, backendapi_server.url, "nope")
        else:
            call(client_kind, backendapi_server.url, method, "nope")
    assert caught.value.status_code == 404
    assert caught.value.body == {"error": {"message": "Bucket directory not found"}}


def test_an_error_in_the_progress_stream_raises_with_the_servers_words(
    client_kind: str, raw_server: RawServer
) -> None:
    body = b'data: {"action": "load", "size": 3}\n\ndata: {"error": {"message": "No space"}}\n\n'
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n"
    raw_server.answer = head + f"Content-Length: {len(body)}\r\n\r\n".encode() + body
    with pytest.raises(StreamError) as caught:
        bucket_events(client_kind, raw_server.url, "b-1")
    assert caught.value.message == "No space"


BAD_BUCKET_IDS = ["", "..", "_a", "a-", "a b", "a/b", "a%2Fb", "é", "x" * 101, 5, None]


@pytest.mark.parametrize("bucket_id", BAD_BUCKET_IDS)
@pytest.mark.parametrize("method", ["upload", "read_bucket", "delete_bucket", "bucket_events"])
def test_a_malformed_bucket_id_is_refused_before_any_request(
    client_kind: str, raw_server: RawServer, method: str, bucket_id: Any
) -> None:
    with pytest.raises(InvalidInputError, match="bucket_id must be 1 to 100 ASCII"):
        if method == "bucket_events":
            bucket_events(client_kind, raw_server.url, bucket_id)
        elif method == "upload":
            call(client_kind, raw_server.url, "upload", bucket_id, [(NOTES, "n.txt")])
        else:
            call(client_kind, raw_server.url, method, bucket_id)
    with pytest.raises(InvalidInputError):
        bucket_message(bucket_id)
    assert raw_server.connections == 0


def test_bucket_ids_g4f_keeps_as_they_are_pass() -> None:
    for good in ["3f2b9c1e-4d5a-4e6f-8a7b-9c0d1e2f3a4b", "a", "a.b,c+d_e", "x" * 100]:
        assert bucket_message(good)["content"][0] == {"bucket_id": good}


def test_a_bucket_message_hands_the_bucket_to_the_model_as_g4fs_client_does(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    message = bucket_message("b-1", "Summarize it.", media=["cat.png"])
    assert message == {
        "role": "user",
        "content": [
            {"bucket_id": "b-1"},
            {"bucket_id": "b-1", "name": "cat.png", "url": "/files/b-1/media/cat.png"},
            {"type": "text", "text": "Summarize it."},
        ],
    }
    call(client_kind, backendapi_server.url, "create", "m", [message])
    assert last(backendapi_server).json["messages"] == [message]
    with pytest.raises(InvalidInputError, match=r"media\[0\]"):
        bucket_message("b-1", media=["../x"])


# --- media URLs and downloads -------------------------------------------------------------


def media_reply(*urls: str) -> Reply:
    event = {"type": "content", "content": "![cat](/media/cat.png)", "urls": list(urls)}
    return Reply([event, {"type": "finish", "finish": {"reason": "stop"}}])


def test_answer_media_are_absolute(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    backendapi_server.reply(media_reply("/media/cat.png", "https://cdn.example/x.png"))
    answer = call(
        client_kind, backendapi_server.url, "complete", "m", [{"role": "user", "content": "a cat"}]
    )
    assert answer.media == [f"{backendapi_server.url}/media/cat.png", "https://cdn.example/x.png"]


def test_relative_media_urls_keep_the_base_urls_path_prefix() -> None:
    assert resolve_url("https://h/g4f", "/images/a.png") == "https://h/g4f/images/a.png"
    assert resolve_url("https://h/g4f", "thumbnail/a.png") == "https://h/g4f/thumbnail/a.png"
    assert resolve_url("https://h", "//cdn/a.png") == "https://cdn/a.png"
    assert resolve_url("https://h", "data:image/png;base64,AA==") == "data:image/png;base64,AA=="
    assert media_filename("https://h/media/a%20b.png?w=1") == "a_b.png"
    assert media_filename("https://h/") == "media-0"
    assert media_filename("data:image/png;base64,AA==", 3) == "media-3.png"


@pytest.mark.parametrize(
    "prefix", ["/media/", "/images/", "/thumbnail/"], ids=["media", "images", "thumbnail"]
)
def test_download_streams_a_media_url_to_a_file(
    client_kind: str, backendapi_server: BackendApiTestServer, tmp_path: Path, prefix: str
) -> None:
    backendapi_server.storage.media["cat.png"] = PNG
    target = tmp_path / "cat.png"
    written = call(client_kind, backendapi_server.url, "download", prefix + "cat.png", target)
    assert written == str(target)
    assert target.read_bytes() == PNG
    assert leftovers(tmp_path) == []
    assert last(backendapi_server).path == prefix + "cat.png"


def test_download_of_a_bucket_file(
    client_kind: str, backendapi_server: BackendApiTestServer, tmp_path: Path
) -> None:
    uploaded(client_kind, backendapi_server)
    for kind in ("media", "thumbnail"):
        target = tmp_path / f"{kind}.png"
        call(client_kind, backendapi_server.url, "download", f"/files/b-1/{kind}/cat.png", target)
        assert target.read_bytes() == PNG


def test_a_download_past_its_limit_leaves_no_file_behind(
    client_kind: str, backendapi_server: BackendApiTestServer, tmp_path: Path
) -> None:
    backendapi_server.storage.media["big.png"] = PNG
    target = tmp_path / "big.png"
    with pytest.raises(ResponseTooLargeError) as caught:
        call(client_kind, backendapi_server.url, "download", "/media/big.png", target,
             max_response_size=len(PNG) - 1)  # fmt: skip
    assert caught.value.limit == len(PNG) - 1
    assert os.listdir(tmp_path) == []
    # A file already at the path is left as it was.
    target.write_bytes(b"old")
    with pytest.raises(ResponseTooLargeError):
        call(client_kind, backendapi_server.url, "download", "/media/big.png", target,
             client_max_response_size=100)  # fmt: skip
    assert target.read_bytes() == b"old"
    assert leftovers(tmp_path) == []
    # Exactly the limit fits.
    call(client_kind, backendapi_server.url, "download", "/media/big.png", target,
         max_response_size=len(PNG))  # fmt: skip
    assert target.read_bytes() == PNG


def test_a_download_that_fails_leaves_no_file_behind(
    client_kind: str, backendapi_server: BackendApiTestServer, tmp_path: Path
) -> None:
    with pytest.raises(APIStatusError) as caught:
        call(client_kind, backendapi_server.url, "download", "/media/none.png", tmp_path / "x")
    assert caught.value.status_code == 404
    assert os.listdir(tmp_path) == []


def test_a_download_path_that_is_a_directory_is_refused_before_any_request(
    client_kind: str, raw_server: RawServer, tmp_path: Path
) -> None:
    with pytest.raises(InvalidInputError, match="path is a directory"):
        call(client_kind, raw_server.url, "download", "/media/a.png", tmp_path)
    with pytest.raises(InvalidInputError, match="directory does not exist"):
        call(client_kind, raw_server.url, "download", "/media/a.png", tmp_path / "no" / "a.png")
    with pytest.raises(InvalidInputError, match="url must be"):
        call(client_kind, raw_server.url, "download", "ftp://h/a.png", tmp_path / "a.png")
    assert raw_server.connections == 0


def test_save_media_saves_every_media_of_an_answer_into_a_folder(
    client_kind: str, backendapi_server: BackendApiTestServer, tmp_path: Path
) -> None:
    backendapi_server.storage.media["cat.png"] = PNG
    backendapi_server.reply(media_reply("/media/cat.png", "/images/cat.png"))
    data_uri = "data:audio/mpeg;base64," + base64.b64encode(b"ID3 sound").decode()
    folder = tmp_path / "out"

    async def run_async() -> Any:
        from backendapi import AsyncBackendApiClient

        async with AsyncBackendApiClient(backendapi_server.url, timeout=TEST_TIMEOUT) as client:
            answer = await client.complete("m", [{"role": "user", "content": "a cat"}])
            saved = await client.save_media(answer, folder)
            return saved + await client.save_media([data_uri], folder)

    if client_kind == "sync":
        with BackendApiClient(backendapi_server.url, timeout=TEST_TIMEOUT) as client:
            answer = client.complete("m", [{"role": "user", "content": "a cat"}])
            paths = client.save_media(answer, folder) + client.save_media([data_uri], folder)
    else:
        paths = asyncio.run(run_async())
    assert paths == [
        str(folder / "cat.png"),
        str(folder / "cat-2.png"),
        str(folder / "media-0.mp3"),
    ]
    assert (folder / "cat.png").read_bytes() == PNG == (folder / "cat-2.png").read_bytes()
    assert (folder / "media-0.mp3").read_bytes() == b"ID3 sound"


def test_save_media_refuses_a_folder_that_is_a_file(
    client_kind: str, raw_server: RawServer, tmp_path: Path
) -> None:
    afile = tmp_path / "f"
    afile.write_bytes(b"")
    with pytest.raises(InvalidInputError, match="not a directory"):
        call(client_kind, raw_server.url, "save_media", ["/media/a.png"], afile)
    assert raw_server.connections == 0


# --- redirects ----------------------------------------------------------------------------

SECRET_HEADERS = {"Authorization": "Bearer s3cret-token", "X-Api-Key": "s3cret-key"}


def test_a_same_origin_redirect_of_a_media_get_keeps_the_credentials(
    client_kind: str, backendapi_server: BackendApiTestServer, tmp_path: Path
) -> None:
    backendapi_server.storage.media["new.png"] = PNG
    backendapi_server.storage.redirects["/media/old.png"] = "/media/new.png"
    call(client_kind, backendapi_server.url, "download", "/media/old.png", tmp_path / "a.png",
         client_headers=SECRET_HEADERS)  # fmt: skip
    assert (tmp_path / "a.png").read_bytes() == PNG
    first, second = backendapi_server.requests
    assert (first.path, second.path) == ("/media/old.png", "/media/new.png")
    for request in (first, second):
        assert request.headers["Authorization"] == "Bearer s3cret-token"
        assert request.headers["X-Api-Key"] == "s3cret-key"


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_cross_origin_redirect_carries_no_credentials(
    client_kind: str, backendapi_server: BackendApiTestServer, tmp_path: Path, status: int
) -> None:
    with BackendApiTestServer() as elsewhere:  # another port: another origin
        elsewhere.storage.media["cat.png"] = PNG
        backendapi_server.storage.redirects["/media/cat.png"] = (
            status,
            f"{elsewhere.url}/media/cat.png",
        )
        # base_url credentials are an Authorization too.
        own = backendapi_server.url.replace("http://", "http://me:pa55word@")
        call(client_kind, own, "download", "/media/cat.png", tmp_path / "a.png",
             client_headers={"X-Api-Key": "s3cret-key", "X-Secret": "s3cret"})  # fmt: skip
        assert (tmp_path / "a.png").read_bytes() == PNG
        sent = last(backendapi_server).headers
        assert sent["X-Api-Key"] == "s3cret-key" and "Authorization" in sent
        [received] = elsewhere.requests
        names = {name.lower() for name in received.headers}
        assert not names & {"authorization", "x-api-key", "x-secret", "cookie"}
        assert received.headers["User-Agent"].startswith("backendapi-python/")


def test_a_redirect_back_to_the_own_origin_after_another_gets_no_credentials(
    client_kind: str, backendapi_server: BackendApiTestServer, tmp_path: Path
) -> None:
    with BackendApiTestServer() as elsewhere:
        backendapi_server.storage.media["cat.png"] = PNG
        backendapi_server.storage.redirects["/media/a.png"] = f"{elsewhere.url}/media/b.png"
        elsewhere.storage.redirects["/media/b.png"] = f"{backendapi_server.url}/media/cat.png"
        call(client_kind, backendapi_server.url, "download", "/media/a.png", tmp_path / "a.png",
             client_headers=SECRET_HEADERS)  # fmt: skip
        first, back = backendapi_server.requests
        assert "Authorization" in first.headers
        assert "Authorization" not in back.headers and "X-Api-Key" not in back.headers


def test_a_download_of_another_origins_url_sends_no_credentials(
    client_kind: str, backendapi_server: BackendApiTestServer, tmp_path: Path
) -> None:
    with BackendApiTestServer() as elsewhere:
        elsewhere.storage.media["cat.png"] = PNG
        call(client_kind, backendapi_server.url, "download", f"{elsewhere.url}/media/cat.png",
             tmp_path / "a.png", client_headers=SECRET_HEADERS)  # fmt: skip
        [received] = elsewhere.requests
        assert "Authorization" not in received.headers and "X-Api-Key" not in received.headers


def test_redirects_are_followed_a_bounded_number_of_times(
    client_kind: str, backendapi_server: BackendApiTestServer, tmp_path: Path
) -> None:
    backendapi_server.storage.redirects["/media/loop.png"] = "/media/loop.png"
    with pytest.raises(APIStatusError, match="more than 10 redirects") as caught:
        call(client_kind, backendapi_server.url, "download", "/media/loop.png", tmp_path / "a")
    assert caught.value.status_code == 302
    assert len(backendapi_server.requests) == 11
    assert os.listdir(tmp_path) == []


def test_create_follows_a_redirect_but_the_conversation_post_does_not(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    backendapi_server.storage.media["answer.txt"] = b"moved"
    backendapi_server.storage.redirects["/elsewhere"] = "/media/answer.txt"
    backendapi_server.storage.redirects["/backend-api/v2/create"] = "/elsewhere"
    assert call(client_kind, backendapi_server.url, "create_text", "x") == "moved"
    backendapi_server.storage.redirects["/backend-api/v2/conversation"] = "/elsewhere"
    with pytest.raises(APIStatusError, match="not followed") as caught:
        call(client_kind, backendapi_server.url, "create", "m", [{"role": "user", "content": "x"}])
    assert caught.value.status_code == 302
    assert last(backendapi_server).path == "/backend-api/v2/conversation"


# --- create -------------------------------------------------------------------------------


def test_create_text_sends_every_parameter_g4f_reads(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    backendapi_server.add_provider("P")
    call(client_kind, backendapi_server.url, "create_text", "Hi", model="m", provider="P",
         web_search=True, filter_markdown="json", cache="k1", audio=True, stream=True)  # fmt: skip
    assert last(backendapi_server).query == {
        "prompt": "Hi", "model": "m", "provider": "P", "web_search": "true",
        "filter_markdown": "json", "cache": "k1", "audio": "true", "stream": "true",
    }  # fmt: skip
    call(client_kind, backendapi_server.url, "create_text", "Hi", web_search="cats 2024",
         filter_markdown=False, audio=False, stream=False)  # fmt: skip
    assert last(backendapi_server).query == {"prompt": "Hi", "web_search": "cats 2024"}


@pytest.mark.parametrize(
    "options",
    [
        {"web_search": 1},
        {"audio": "yes"},
        {"stream": "x"},
        {"model": ""},
        {"cache": ""},
        {"filter_markdown": 2.0},
    ],
)
def test_bad_create_parameters_are_refused_before_any_request(
    client_kind: str, raw_server: RawServer, options: Dict[str, Any]
) -> None:
    with pytest.raises(InvalidInputError):
        call(client_kind, raw_server.url, "create_text", "Hi", **options)
    assert raw_server.connections == 0


def test_filter_markdown_gives_the_code_block_as_g4f_does(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    backendapi_server.create_text_reply = 'Sure:\n```json\n{"a": 1}\n```\nBye'
    url = backendapi_server.url
    assert call(client_kind, url, "create_text", "x", filter_markdown=True) == '{"a": 1}'
    assert call(client_kind, url, "create_text", "x", filter_markdown="json") == '{"a": 1}'
    assert call(client_kind, url, "create_text", "x", filter_markdown="python") == ""


def test_cache_gives_the_kept_answer_for_the_same_key(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    url = backendapi_server.url
    backendapi_server.create_text_reply = "first"
    assert call(client_kind, url, "create_text", "x", cache="k") == "first"
    backendapi_server.create_text_reply = "second"
    assert call(client_kind, url, "create_text", "x", cache="k") == "first"
    assert call(client_kind, url, "create_text", "x", cache="other") == "second"


def test_create_media_saves_the_bytes_of_a_media_answer(
    client_kind: str, backendapi_server: BackendApiTestServer, tmp_path: Path
) -> None:
    backendapi_server.storage.create_media = ("1700_cat.png", PNG)
    target = tmp_path / "cat.png"
    assert call(client_kind, backendapi_server.url, "create_media", "a cat", target) == str(target)
    assert target.read_bytes() == PNG
    backendapi_server.storage.create_media = ("1700_cat.png", PNG)
    with pytest.raises(DecodeError, match=r"is media \(image/png\).*create_media"):
        call(client_kind, backendapi_server.url, "create_text", "a cat")


def test_create_media_downloads_a_url_answer_and_decodes_a_data_uri_answer(
    client_kind: str, backendapi_server: BackendApiTestServer, tmp_path: Path
) -> None:
    backendapi_server.storage.media["cat.png"] = PNG
    backendapi_server.create_text_reply = f"{backendapi_server.url}/media/cat.png"
    call(client_kind, backendapi_server.url, "create_media", "a cat", tmp_path / "a.png")
    assert (tmp_path / "a.png").read_bytes() == PNG
    assert last(backendapi_server).path == "/media/cat.png"
    sound = b"ID3" + bytes(100)
    backendapi_server.create_text_reply = (
        "data:audio/mpeg;base64," + base64.b64encode(sound).decode()
    )
    call(
        client_kind, backendapi_server.url, "create_media", "say hi", tmp_path / "a.mp3", audio=True
    )
    assert (tmp_path / "a.mp3").read_bytes() == sound
    backendapi_server.create_text_reply = "Just words, no picture."
    with pytest.raises(DecodeError, match="naming no media"):
        call(client_kind, backendapi_server.url, "create_media", "x", tmp_path / "b.png")
    assert sorted(os.listdir(tmp_path)) == ["a.mp3", "a.png"]


def test_create_errors_are_g4fs(client_kind: str) -> None:
    # g4f's create() words an unknown model and an unknown provider alike.
    with (
        BackendApiTestServer(known_providers={"OpenaiChat"}) as server,
        pytest.raises(APIStatusError) as caught,
    ):
        call(client_kind, server.url, "create_text", "x", provider="Nope")
    assert caught.value.status_code == 404
    assert caught.value.body == {"error": {"message": "Model or provider not found"}}
