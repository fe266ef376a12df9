"""The ``backendapi`` logger: what a DEBUG log shows, and what it never shows."""

from __future__ import annotations

import ast
import logging
import re
from pathlib import Path
from typing import List

import pytest
from clients import run_stream
from scripted import CONVERSATION_PATH

from backendapi.testing import BackendApiTestServer, Reply

KEY = "sk-logging-SECRET-4242"
PACKAGE = Path(__file__).resolve().parent.parent / "backendapi"


def backendapi_records(caplog: pytest.LogCaptureFixture) -> List[logging.LogRecord]:
    return [record for record in caplog.records if record.name.startswith("backendapi")]


def test_debug_log_shows_request_status_and_summary(
    client_kind: str, backendapi_server: BackendApiTestServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    result = run_stream(
        client_kind, backendapi_server.url, "scripted-1", provider="ScriptedProvider", api_key=KEY
    )
    assert result.error is None
    lines = [record.getMessage() for record in backendapi_records(caplog)]
    url = backendapi_server.url + CONVERSATION_PATH

    request = [line for line in lines if line.startswith("POST ")]
    assert len(request) == 1
    assert url in request[0]
    assert "model='scripted-1'" in request[0]
    assert "provider='ScriptedProvider'" in request[0]

    assert f"HTTP 200 from {url}" in lines

    summary = [line for line in lines if line.startswith("stream ")]
    assert len(summary) == 1
    match = re.search(r"completed: (\d+) events, (\d+) bytes, (\d+\.\d+) s", summary[0])
    assert match, summary[0]
    assert int(match.group(1)) == len(result.received)
    assert int(match.group(2)) > 0

    assert all(KEY not in line for line in lines)
    assert all(record.levelno < logging.WARNING for record in caplog.records)


def test_retries_are_logged_at_info(
    client_kind: str, backendapi_server: BackendApiTestServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    retry_now = {"Retry-After": "0"}
    backendapi_server.reply(
        Reply(status=503, error={"error": {"message": "busy"}}, headers=retry_now),
        Reply.answer("fine"),
    )
    result = run_stream(client_kind, backendapi_server.url, api_key=KEY)
    assert result.error is None
    infos = [r.getMessage() for r in backendapi_records(caplog) if r.levelno == logging.INFO]
    assert len(infos) == 1
    assert "retrying POST" in infos[0] and "HTTP 503" in infos[0]
    assert all(record.levelno < logging.WARNING for record in caplog.records)


def test_an_early_close_is_summarised_as_closed(
    client_kind: str, backendapi_server: BackendApiTestServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    run_stream(client_kind, backendapi_server.url, stop_after=1)
    summary = [
        r.getMessage() for r in backendapi_records(caplog) if r.getMessage().startswith("stream ")
    ]
    assert len(summary) == 1
    assert " closed: 1 events" in summary[0]


def test_the_library_never_prints() -> None:
    # Printing is the command line's business (and the notebook helper displays);
    # everything else reports through exceptions and the logger.
    offenders = []
    paths = sorted(PACKAGE.rglob("*.py"))
    assert PACKAGE / "_transports" / "requests.py" in paths  # subpackages are read too
    for path in paths:
        if path.name.startswith("_cli"):  # the command line: _cli.py and its helpers
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "print"
            ):
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert offenders == []
