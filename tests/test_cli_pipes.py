"""``backendapi`` in pipelines and with options: piped stdin, ``-o``, ``-v``, ``--json``
lines, options before the subcommand, a closed stdout. What concerns the process itself
(stdin, a closed pipe) runs as a subprocess; the rest calls ``main(argv)`` in-process."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
from typing import Any, Dict, List, Tuple

import pytest
from processes import child_env, ended

from backendapi._cli import main
from backendapi.testing import BackendApiTestServer, Hold, Reply, Wait

TIMEOUT = 20


def content(text: str) -> Dict[str, Any]:
    return {"type": "content", "content": text}


@pytest.fixture
def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    """``main(argv)`` in this process with stdin ``""``; returns (status, stdout, stderr)."""

    def run(*argv: str) -> Tuple[int, str, str]:
        monkeypatch.setattr(sys, "stdin", io.StringIO(""))
        for name in ("BACKENDAPI_BASE_URL", "BACKENDAPI_API_KEY"):
            monkeypatch.delenv(name, raising=False)
        try:
            status = main(list(argv))
        except SystemExit as exc:  # argparse: --help, usage errors
            status = int(exc.code or 0)
        out, err = capsys.readouterr()
        return status, out, err

    return run


# -- piped stdin and a closed stdout: the process itself -----------------------------------


def test_piped_text_comes_first_then_the_prompt(backendapi_server: BackendApiTestServer) -> None:
    backendapi_server.reply(Reply.answer("A summary."))
    url = backendapi_server.url
    result = subprocess.run(
        [sys.executable, "-m", "backendapi", "chat", "Summarise this", "--base-url", url],
        input="Line one\nLine two\n",
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=child_env(),
        timeout=TIMEOUT,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "A summary.\n", "")
    assert backendapi_server.requests[0].json["messages"] == [
        {"role": "user", "content": "Line one\nLine two\n\nSummarise this"}
    ]


def test_a_closed_pipe_ends_quietly_with_status_0(
    backendapi_server: BackendApiTestServer,
) -> None:
    """``backendapi chat ... | head -c 5``: the reader goes away in the middle of the answer."""
    release = threading.Event()
    backendapi_server.reply(Reply([content("first "), Wait(release), content("more"), Hold()]))
    process = subprocess.Popen(
        [sys.executable, "-m", "backendapi", "chat", "Hi", "--base-url", backendapi_server.url],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_env(),
    )
    with ended(process):
        try:
            assert process.stdout is not None and process.stderr is not None
            assert process.stdout.read(len(b"first")) == b"first"
            process.stdout.close()  # what head does once it has its bytes
            release.set()
            assert process.wait(TIMEOUT) == 0
            assert process.stderr.read() == b""  # no traceback, no error message
        finally:
            release.set()
    # It stopped at the first write that failed, closing the connection.
    assert backendapi_server.requests[0].disconnected.wait(5)


# -- -o, -s, -a ------------------------------------------------------------------------------


def test_options_are_sent_as_json_where_they_parse_else_as_text(
    backendapi_server: BackendApiTestServer, run_cli: Any
) -> None:
    backendapi_server.reply(Reply.answer("Ok."))
    status, out, err = run_cli(
        "chat",
        "Hi",
        "--base-url",
        backendapi_server.url,
        *("-o", "temperature", "0.2"),
        *("-o", "web_search", "true"),
        *("-o", "stop", '["\\n", "END"]'),
        *("-o", "label", "plain words"),
        *("-o", "limit", "NaN"),  # not JSON: text
        *("--option", "n", "1"),
        *("-o", "n", "2"),  # the last one wins
    )
    assert (status, out, err) == (0, "Ok.\n", "")
    body = backendapi_server.requests[0].json
    assert body["temperature"] == 0.2
    assert body["web_search"] is True
    assert body["stop"] == ["\n", "END"]
    assert body["label"] == "plain words"
    assert body["limit"] == "NaN"
    assert body["n"] == 2


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        ("api_key", "--api-key"),
        ("model", "-m/--model"),
        ("provider", "-p/--provider"),
        ("media", "-a/--media"),
        ("messages", "prompt"),
        ("", "option name"),
    ],
)
def test_options_the_command_line_sets_itself_are_refused(
    backendapi_server: BackendApiTestServer, run_cli: Any, key: str, hint: str
) -> None:
    status, _, err = run_cli(
        "chat", "Hi", "--base-url", backendapi_server.url, "-o", key, "sk-secret-value"
    )
    assert status == 2
    assert err.startswith("backendapi: error: ") and hint in err
    assert "sk-secret-value" not in err
    assert backendapi_server.requests == []


def test_short_forms_of_system_and_media(
    backendapi_server: BackendApiTestServer, run_cli: Any
) -> None:
    backendapi_server.reply(Reply.answer("Ok."))
    uri = "data:text/plain;base64,aGk="
    status, _, err = run_cli(
        "chat", "Hi", "--base-url", backendapi_server.url, "-s", "Be brief.", "-a", uri
    )
    assert status == 0, err
    body = backendapi_server.requests[0].json
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert [item for item, _ in body["media"]] == [uri]


# -- -v, options before the subcommand --------------------------------------------------


@pytest.mark.parametrize("before", [True, False], ids=["before", "after"])
def test_verbose_prints_provider_model_usage_and_title_to_stderr(
    backendapi_server: BackendApiTestServer, run_cli: Any, before: bool
) -> None:
    backendapi_server.add_provider("OpenaiChat", ["gpt-4o"])
    backendapi_server.reply(
        Reply.answer("Hello.", provider="OpenaiChat", model="gpt-4o", title="Greetings")
    )
    options = ["-v", "--base-url", backendapi_server.url]
    argv = [*options, "chat", "Hi"] if before else ["chat", "Hi", *options]
    status, out, err = run_cli(*argv)
    assert (status, out) == (0, "Hello.\n")
    assert err.splitlines() == [
        "provider: OpenaiChat",
        "model: gpt-4o",
        "usage: prompt_tokens 3, completion_tokens 2, total_tokens 5",
        "title: Greetings",
    ]


def test_connection_options_before_the_subcommand(
    backendapi_server: BackendApiTestServer, run_cli: Any
) -> None:
    backendapi_server.reply(Reply.answer("Ok."))
    url = backendapi_server.url
    status, out, err = run_cli(
        "--base-url", url, "--api-key", "sk-before", "--timeout", "5", "--json", "chat", "Hi"
    )
    assert status == 0, err
    assert [json.loads(line)["type"] for line in out.splitlines()][-1] == "finish"
    assert backendapi_server.requests[0].json["api_key"] == "sk-before"
    status, out, _ = run_cli("--base-url", url, "models")
    assert (status, out) == (0, "ScriptedProvider\n  scripted-1\n")
    # After the subcommand, a value overrides the one before it.
    status, _, err = run_cli("--base-url", "http://127.0.0.1:9", "version", "--base-url", url)
    assert status == 0, err


def test_serve_test_refuses_client_options(run_cli: Any) -> None:
    status, _, err = run_cli("--base-url", "http://127.0.0.1:9", "serve-test")
    assert status == 2
    assert "serve-test takes no --base-url" in err


# -- --json ----------------------------------------------------------------------------------


def test_json_lines_escape_the_characters_splitlines_breaks_on(
    backendapi_server: BackendApiTestServer, run_cli: Any
) -> None:
    texts = ["line\u2028separator", "paragraph\u2029separator", "next\x85line", "é ✓ 🙂"]
    backendapi_server.reply(Reply([content(text) for text in texts]))
    status, out, _ = run_cli("chat", "Hi", "--base-url", backendapi_server.url, "--json")
    assert status == 0
    for character in ("\u2028", "\u2029", "\x85"):
        assert character not in out
    assert "é ✓ 🙂" in out  # the rest of the text is not escaped
    events = [json.loads(line) for line in out.splitlines()]
    assert [event["content"] for event in events] == texts


# -- help ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command", [[], ["chat"], ["models"], ["providers"], ["version"], ["serve-test"], ["logs"]]
)
def test_every_help_shows_an_example(run_cli: Any, command: List[str]) -> None:
    status, out, _ = run_cli(*command, "--help")
    assert status == 0
    assert "example" in out
    assert f"backendapi {command[0]}" in out if command else "backendapi chat" in out
