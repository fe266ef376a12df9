"""The ``backendapi`` command line, run as a subprocess against a test server."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest
from processes import child_env, ended
from scripted import CONVERSATION_PATH

from backendapi import BackendApiClient, __version__
from backendapi.testing import BackendApiTestServer, Hold, Reply, Wait

TIMEOUT = 20
USER = {"role": "user", "content": "Hi"}


def default_sigint() -> None:
    """In the child: SIGINT as Python expects it, even if the test runner ignores it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run(
    *args: str, stdin: str = "", env: Optional[Dict[str, str]] = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "backendapi", *args],
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env if env is not None else child_env(),
        timeout=TIMEOUT,
    )


def chat_hi(url: str, **options: Any) -> subprocess.Popen[bytes]:
    """``backendapi chat Hi --base-url <url>`` started, its output on pipes."""
    return subprocess.Popen(
        [sys.executable, "-m", "backendapi", "chat", "Hi", "--base-url", url],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_env(),
        **options,
    )


def png_bytes() -> bytes:
    """A valid 1x1 PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def error_event(message: str) -> Dict[str, Any]:
    return {"type": "error", "error": "RuntimeError", "message": message}


# -- chat -------------------------------------------------------------------------------------


def test_chat_prints_the_answer(backendapi_server: BackendApiTestServer) -> None:
    backendapi_server.reply(Reply.answer("Hello there, world!"))
    result = run("chat", "Hi", "--base-url", backendapi_server.url)
    assert (result.returncode, result.stdout, result.stderr) == (0, "Hello there, world!\n", "")
    body = backendapi_server.requests[0].json
    assert body["messages"] == [USER]
    assert body["model"] == ""
    assert "provider" not in body


def test_chat_sends_model_provider_system_and_key(
    backendapi_server: BackendApiTestServer,
) -> None:
    backendapi_server.add_provider("OpenaiChat", ["gpt-4o"])
    backendapi_server.reply(Reply.answer("Done."))
    result = run(
        "chat",
        "Hi",
        "--base-url",
        backendapi_server.url,
        "-m",
        "gpt-4o",
        "-p",
        "OpenaiChat",
        "--system",
        "Be brief.",
        "--api-key",
        "sk-cli-secret",
        "--timeout",
        "5",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Done.\n"
    body = backendapi_server.requests[0].json
    assert body["model"] == "gpt-4o"
    assert body["provider"] == "OpenaiChat"
    assert body["api_key"] == "sk-cli-secret"
    assert body["messages"] == [{"role": "system", "content": "Be brief."}, USER]


def test_chat_reads_the_prompt_from_stdin(backendapi_server: BackendApiTestServer) -> None:
    backendapi_server.reply(Reply.answer("Piped."))
    result = run("chat", "--base-url", backendapi_server.url, stdin="Line one\nLine two\n")
    assert (result.returncode, result.stdout) == (0, "Piped.\n")
    assert backendapi_server.requests[0].json["messages"] == [
        {"role": "user", "content": "Line one\nLine two"}
    ]


def test_chat_with_empty_stdin_is_a_usage_error(backendapi_server: BackendApiTestServer) -> None:
    result = run("chat", "--base-url", backendapi_server.url, stdin="\n")
    assert result.returncode == 2
    assert result.stderr.startswith("backendapi: error: ")
    assert "prompt" in result.stderr
    assert backendapi_server.requests == []


def test_reasoning_goes_to_stderr_undimmed_when_not_a_terminal(
    backendapi_server: BackendApiTestServer,
) -> None:
    backendapi_server.reply(Reply.answer("Blue.", reasoning="Rayleigh scattering"))
    result = run("chat", "Why?", "--base-url", backendapi_server.url)
    assert result.returncode == 0
    assert result.stdout == "Blue.\n"
    assert "Rayleigh scattering" in result.stderr
    assert "\x1b[" not in result.stderr


def test_json_prints_every_event_as_one_line(backendapi_server: BackendApiTestServer) -> None:
    reply = Reply.answer(
        "Grüße, 世界 ✓", reasoning="hmm", title="Greeting", conversation={"id": "c-1"}
    )
    backendapi_server.reply(reply)
    result = run("chat", "Hi", "--json", "--base-url", backendapi_server.url)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [json.loads(line) for line in lines] == [dict(event) for event in reply.events]
    assert "世界" in result.stdout  # raw UTF-8, not \\u escapes
    assert result.stderr == ""


def test_json_ends_with_the_fatal_error_event(backendapi_server: BackendApiTestServer) -> None:
    events = [{"type": "content", "content": "partial"}, error_event("the provider broke")]
    backendapi_server.reply(Reply(events))
    result = run("chat", "Hi", "--json", "--base-url", backendapi_server.url)
    assert result.returncode == 1
    assert [json.loads(line) for line in result.stdout.splitlines()] == events
    assert "the provider broke" in result.stderr


def test_media_file_arrives_as_a_data_uri(
    backendapi_server: BackendApiTestServer, tmp_path: Path
) -> None:
    image = tmp_path / "pixel.png"
    image.write_bytes(png_bytes())
    backendapi_server.reply(Reply.answer("A green pixel."))
    result = run(
        "chat", "What is this?", "--media", str(image), "--base-url", backendapi_server.url
    )
    assert result.returncode == 0, result.stderr
    uri = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()
    assert backendapi_server.requests[0].json["media"] == [[uri, "pixel.png"]]


def test_several_media_files_keep_their_order(
    backendapi_server: BackendApiTestServer, tmp_path: Path
) -> None:
    first, second = tmp_path / "a.png", tmp_path / "b.png"
    first.write_bytes(png_bytes())
    second.write_bytes(png_bytes())
    result = run(
        "chat", "x", "--media", str(first), "--media", str(second), "--base-url",
        backendapi_server.url,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    media = backendapi_server.requests[0].json["media"]
    assert [name for _, name in media] == ["a.png", "b.png"]


def test_missing_media_file_is_a_usage_error(
    backendapi_server: BackendApiTestServer, tmp_path: Path
) -> None:
    missing = tmp_path / "missing.png"
    result = run("chat", "Hi", "--media", str(missing), "--base-url", backendapi_server.url)
    assert result.returncode == 2
    assert "missing.png" in result.stderr
    assert result.stderr.startswith("backendapi: error: ")
    assert "Traceback" not in result.stderr
    assert backendapi_server.requests == []


def test_http_error_exits_1_with_the_servers_message(
    backendapi_server: BackendApiTestServer,
) -> None:
    backendapi_server.reply(Reply.http_error(404, "Provider not found"))
    result = run("chat", "Hi", "-p", "Nope", "--base-url", backendapi_server.url)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("backendapi: error: ")
    assert "Provider not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_stream_error_exits_1_after_printing_what_came_before(
    backendapi_server: BackendApiTestServer,
) -> None:
    backendapi_server.reply(
        Reply([{"type": "content", "content": "Half an answer"}, error_event("model crashed")])
    )
    result = run("chat", "Hi", "--base-url", backendapi_server.url)
    assert result.returncode == 1
    assert result.stdout == "Half an answer\n"
    assert result.stderr.startswith("backendapi: error: ")
    assert "model crashed" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_server_exits_1(refused_url: str) -> None:
    result = run("chat", "Hi", "--base-url", refused_url, "--timeout", "2")
    assert result.returncode == 1
    assert result.stderr.startswith("backendapi: error: ")
    assert refused_url in result.stderr
    assert "Traceback" not in result.stderr


def test_environment_gives_the_base_url_and_the_key(
    backendapi_server: BackendApiTestServer,
) -> None:
    env = child_env(BACKENDAPI_BASE_URL=backendapi_server.url, BACKENDAPI_API_KEY="sk-from-env")
    result = run("chat", "Hi", env=env)
    assert (result.returncode, result.stdout) == (0, "Hello from the test server\n")
    assert backendapi_server.requests[0].json["api_key"] == "sk-from-env"
    result = run("chat", "Hi", "--api-key", "sk-flag", env=env)
    assert result.returncode == 0
    assert backendapi_server.requests[1].json["api_key"] == "sk-flag"
    assert "sk-" not in result.stdout + result.stderr


# -- models, providers, version -----------------------------------------------------------


def test_models(backendapi_server: BackendApiTestServer) -> None:
    result = run("models", "--base-url", backendapi_server.url)
    assert (result.returncode, result.stdout) == (0, "ScriptedProvider\n  scripted-1\n")
    result = run("models", "--json", "--base-url", backendapi_server.url)
    assert json.loads(result.stdout) == {"ScriptedProvider": ["scripted-1"]}
    assert backendapi_server.requests[-1].path == "/backend-api/v2/models"


def test_models_of_an_unknown_provider_says_there_are_none(
    backendapi_server: BackendApiTestServer,
) -> None:
    # g4f 8.8.6 answers 200 and [] for a provider it does not have.
    result = run("models", "--provider", "Nope", "--base-url", backendapi_server.url)
    assert (result.returncode, result.stdout) == (0, "")
    assert "no models listed for provider 'Nope'" in result.stderr
    assert backendapi_server.requests[0].path == "/backend-api/v2/models/Nope"
    result = run("models", "--provider", "ScriptedProvider", "--base-url", backendapi_server.url)
    assert (result.returncode, result.stdout, result.stderr) == (0, "scripted-1  [default]\n", "")


def test_providers(backendapi_server: BackendApiTestServer) -> None:
    result = run("providers", "--base-url", backendapi_server.url)
    assert (result.returncode, result.stdout) == (0, "ScriptedProvider\n")
    result = run("providers", "--json", "--base-url", backendapi_server.url)
    providers = json.loads(result.stdout)
    assert [p["name"] for p in providers] == ["ScriptedProvider"]
    assert providers[0]["auth"] is False


def test_version(backendapi_server: BackendApiTestServer) -> None:
    result = run("version", "--base-url", backendapi_server.url)
    assert (result.returncode, result.stdout) == (0, f"server 8.8.6\nbackendapi {__version__}\n")
    result = run("version", "--json", "--base-url", backendapi_server.url)
    assert json.loads(result.stdout) == {
        "version": "8.8.6",
        "latest_version": "8.8.6",
        "client_version": __version__,
    }


def test_version_flag_needs_no_server() -> None:
    result = run("--version")
    assert (result.returncode, result.stdout.strip()) == (0, f"backendapi {__version__}")


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "backendapi"
    result = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert (result.returncode, result.stdout.strip()) == (0, f"backendapi {__version__}")


@pytest.mark.parametrize(
    "args",
    [[], ["chat", "--timeout", "-1", "x"], ["chat", "--bogus"], ["serve-test", "--framing", "xml"]],
)
def test_usage_errors_exit_2(args: List[str]) -> None:
    result = run(*args)
    assert result.returncode == 2
    assert "usage:" in result.stderr


# -- Ctrl-C ------------------------------------------------------------------------------------


def test_ctrl_c_exits_130_and_closes_the_connection(
    backendapi_server: BackendApiTestServer,
) -> None:
    backendapi_server.reply(
        Reply(
            [{"type": "content", "content": "first"}, Hold(), {"type": "content", "content": "x"}]
        )
    )
    with ended(chat_hi(backendapi_server.url, preexec_fn=default_sigint)) as process:
        assert process.stdout is not None and process.stderr is not None
        assert process.stdout.read(len(b"first")) == b"first"  # the first token was printed
        recorded = backendapi_server.requests[0]
        assert not recorded.disconnected.is_set()
        process.send_signal(signal.SIGINT)
        assert process.wait(TIMEOUT) == 130
        assert recorded.disconnected.wait(5)
        assert process.stdout.read() == b""  # nothing more: not even the end of the line
        assert process.stderr.read() == b"\n"


# -- interactive mode ---------------------------------------------------------------------


class Terminal:
    """The master side of a pseudo-terminal: read until some text has appeared."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.seen = ""

    def read_until(self, text: str, timeout: float = TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{text!r} never appeared; the terminal shows {self.seen!r}")
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                try:
                    data = os.read(self.fd, 4096)
                except OSError:  # EIO: the child closed its side
                    data = b""
                if not data:
                    raise AssertionError(f"{text!r} never appeared; EOF after {self.seen!r}")
                self.seen += data.decode("utf-8", "replace")
        before, _, self.seen = self.seen.partition(text)
        return before

    def write(self, text: str) -> None:
        os.write(self.fd, text.encode())


@contextlib.contextmanager
def chat_in_a_terminal(url: str, *args: str) -> Iterator[Tuple[subprocess.Popen[bytes], Terminal]]:
    """``backendapi chat *args`` against ``url`` on a pseudo-terminal; killed on the way out."""
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "backendapi", "chat", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=child_env(BACKENDAPI_BASE_URL=url, TERM="dumb"),
        preexec_fn=default_sigint,
        close_fds=True,
    )
    os.close(slave)
    try:
        with ended(process):
            yield process, Terminal(master)
    finally:
        os.close(master)


def test_interactive_session_keeps_the_history(backendapi_server: BackendApiTestServer) -> None:
    backendapi_server.reply(
        Reply.answer("Paris is the capital.", reasoning="Recalling capitals"),
        Reply.answer("About two million people."),
    )
    with chat_in_a_terminal(backendapi_server.url, "--system", "Be brief.") as (process, terminal):
        terminal.read_until("> ")
        terminal.write("Capital of France?\n")
        shown = terminal.read_until("Paris is the capital.")
        assert "\x1b[2mRecalling capitals\x1b[0m" in shown  # reasoning, dimmed on a terminal
        terminal.read_until("> ")
        terminal.write("How many live there?\n")
        terminal.read_until("About two million people.")
        terminal.read_until("> ")
        terminal.write("/bye\n")
        assert process.wait(TIMEOUT) == 0
    requests = backendapi_server.requests
    assert len(requests) == 2
    assert requests[0].json["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Capital of France?"},
    ]
    assert requests[1].json["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris is the capital."},
        {"role": "user", "content": "How many live there?"},
    ]


def test_interactive_session_ends_on_eof(backendapi_server: BackendApiTestServer) -> None:
    with chat_in_a_terminal(backendapi_server.url) as (process, terminal):
        terminal.read_until("> ")
        terminal.write("\x04")  # Ctrl-D at the start of a line: end of input
        assert process.wait(TIMEOUT) == 0
    assert backendapi_server.requests == []


# -- serve-test ---------------------------------------------------------------------------


@contextlib.contextmanager
def serve_test(*args: str) -> Iterator[Tuple[subprocess.Popen[str], str]]:
    """``backendapi serve-test *args`` and the URL it printed; killed on the way out."""
    with ended(
        subprocess.Popen(
            [sys.executable, "-m", "backendapi", "serve-test", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
    ) as process:
        assert process.stdout is not None
        yield process, process.stdout.readline().strip()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_serve_test_serves_until_signalled(signum: int) -> None:
    with serve_test("--text", "Scripted hello") as (process, url):
        assert url.startswith("http://127.0.0.1:")
        with BackendApiClient(url) as client:
            answer = client.complete("m", [USER])
            assert answer.text == "Scripted hello"
            assert client.version()["version"] == "8.8.6"
        process.send_signal(signum)
        assert process.wait(TIMEOUT) == 0


@pytest.mark.parametrize(("framing", "start"), [("sse", b"event: provider\n"), ("ndjson", b"{")])
def test_serve_test_framing(framing: str, start: bytes) -> None:
    with serve_test("--framing", framing) as (process, url):
        import requests

        response = requests.post(
            url + CONVERSATION_PATH,
            json={"model": "", "messages": [USER]},
            timeout=TIMEOUT,
        )
        assert response.content.startswith(start)
        assert b"Hello from the test server" not in response.content  # it comes token by token
        assert b'"content": "Hello"' in response.content
        process.send_signal(signal.SIGINT)
        assert process.wait(TIMEOUT) == 0


def test_serve_test_port_option() -> None:
    with BackendApiTestServer() as probe:
        port = probe.port  # free a moment ago
    with serve_test("--port", str(port)) as (process, url):
        assert url == f"http://127.0.0.1:{port}"
        process.send_signal(signal.SIGINT)
        assert process.wait(TIMEOUT) == 0


def test_wait_keeps_the_cli_streaming_live(backendapi_server: BackendApiTestServer) -> None:
    """Each token is on stdout before the server sends the next one (no buffering)."""
    release = threading.Event()
    early, late = {"type": "content", "content": "early"}, {"type": "content", "content": " late"}
    backendapi_server.reply(Reply([early, Wait(release), late]))
    with ended(chat_hi(backendapi_server.url)) as process:
        try:
            assert process.stdout is not None
            assert process.stdout.read(len(b"early")) == b"early"
            release.set()
            assert process.stdout.read() == b" late\n"
            assert process.wait(TIMEOUT) == 0
        finally:
            release.set()
