"""TLS over real sockets, with both clients: verification, CA bundles, `ssl.SSLContext`s.

An HTTPS `BackendApiTestServer` serves a certificate from a CA made at test time
(``tls``, `loopback.TLSSetup`); the tests give each client that CA in every way a caller
can (`ssl=` a bundle path or a context, ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``), or
not, and check what is verified and what is warned. ``docs/reliability.md`` lists what
each case gives the caller.
"""

from __future__ import annotations

import ssl
import warnings
from pathlib import Path
from typing import Any, Callable, List

import pytest
from clients import Result, insecure_warnings, run_stream_with, run_turns
from loopback import ForwardingProxy, TLSSetup
from scripted import CONVERSATION_PATH, GOOD, GOOD_EVENTS

from backendapi import APIConnectionError, InvalidInputError
from backendapi.testing import BackendApiTestServer

pytestmark = pytest.mark.usefixtures("clean_network_env")


def tls_stream(kind: str, server_context: ssl.SSLContext, **options: Any) -> Result:
    """Stream the GOOD reply from an HTTPS test server serving ``server_context``."""
    with BackendApiTestServer(ssl_context=server_context) as server:
        server.reply(GOOD)
        return run_stream_with(kind, server.url, **options)


def test_tls_is_verified_by_default(
    client_kind: str, tls: TLSSetup, retry_logs: Callable[[], List[str]]
) -> None:
    with BackendApiTestServer(ssl_context=tls.server_context) as server:
        assert server.url.startswith("https://127.0.0.1:")

        result = run_stream_with(client_kind, server.url)

        assert type(result.error) is APIConnectionError, result.error
        message = str(result.error)
        assert "certificate verification failed" in message
        assert server.url + CONVERSATION_PATH in message
        assert server.requests == []
        assert retry_logs() == []  # a bad certificate is not retried


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
def test_tls_trusts_the_ca_bundle_the_environment_names(
    client_kind: str, tls: TLSSetup, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    # requests trusts the bundle these name instead of certifi's; so do both clients.
    monkeypatch.setenv(variable, str(tls.ca_path))
    result = tls_stream(client_kind, tls.server_context)

    assert result.error is None
    assert result.events == GOOD_EVENTS


def test_tls_ca_bundle_from_the_environment_is_read_for_each_request(
    client_kind: str, tls: TLSSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    # requests reads the variable for every request; the async client does too,
    # though its connector was made with the first bundle.
    def trust(path: Path) -> Callable[[], None]:
        return lambda: monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(path))

    with BackendApiTestServer(ssl_context=tls.server_context) as server:
        server.reply(GOOD, GOOD)
        turns = run_turns(
            client_kind,
            server.url,
            [trust(tls.ca_path), trust(tls.other_ca_path), trust(tls.ca_path)],
            client_options={"max_retries": 0},
            use_with=True,
        )
    first, second, third = (turn.error for turn in turns)

    assert first is None and third is None
    assert turns[0].events == turns[2].events == GOOD_EVENTS
    assert type(second) is APIConnectionError, second
    assert "certificate verification failed" in str(second)


def test_tls_ca_bundle_the_environment_names_must_exist(
    client_kind: str, tls: TLSSetup, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-ca.pem"
    monkeypatch.setenv("CURL_CA_BUNDLE", str(missing))
    with BackendApiTestServer(ssl_context=tls.server_context) as server:
        result = run_stream_with(client_kind, server.url)

        assert type(result.error) is InvalidInputError, result.error
        assert str(result.error) == f"CURL_CA_BUNDLE: no such CA bundle: {str(missing)!r}"
        assert server.connections_accepted == 0  # named before any connection


def test_tls_ca_bundle_argument_wins_over_the_environment(
    client_kind: str, tls: TLSSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls.other_ca_path))
    result = tls_stream(client_kind, tls.server_context, ssl=str(tls.ca_path))

    assert result.error is None
    assert result.events == GOOD_EVENTS


@pytest.mark.parametrize("form", ["str", "Path"])
def test_tls_trusts_a_ca_bundle_path_given_as_ssl(
    client_kind: str, form: str, tls: TLSSetup
) -> None:
    ca_bundle = str(tls.ca_path) if form == "str" else tls.ca_path
    with BackendApiTestServer(ssl_context=tls.server_context) as server:
        server.reply(GOOD)

        result = run_stream_with(client_kind, server.url, ssl=ca_bundle)

        assert result.error is None
        assert result.events == GOOD_EVENTS
        assert len(server.requests) == 1


def test_tls_uses_an_ssl_context_given_as_ssl(client_kind: str, tls: TLSSetup) -> None:
    context = ssl.create_default_context()
    tls.ca.configure_trust(context)
    result = tls_stream(client_kind, tls.server_context, ssl=context)

    assert result.error is None
    assert result.events == GOOD_EVENTS


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_tls_verification_can_be_switched_off(client_kind: str, tls: TLSSetup) -> None:
    result = tls_stream(client_kind, tls.server_context, ssl=False)

    assert result.error is None
    assert result.events == GOOD_EVENTS


def test_tls_ssl_context_is_used_as_it_is(client_kind: str, tls: TLSSetup) -> None:
    # requests made urllib3 load certifi's CAs into the caller's context: one that
    # trusted a private CA alone then trusted every public CA too.
    context = tls.private_ca_context()
    result = tls_stream(client_kind, tls.server_context, ssl=context)

    assert result.error is None
    assert result.events == GOOD_EVENTS
    assert context.cert_store_stats()["x509_ca"] == 1
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname


def test_tls_ssl_context_without_a_hostname_check_takes_another_hosts_certificate(
    client_kind: str, tls: TLSSetup
) -> None:
    # The certificate names other.example: a context that checks no hostname takes it.
    context = tls.private_ca_context()
    context.check_hostname = False
    result = tls_stream(client_kind, tls.wrong_host_context, ssl=context)

    assert result.error is None
    assert result.events == GOOD_EVENTS


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_tls_ssl_context_without_verification_takes_any_certificate(
    client_kind: str, tls: TLSSetup
) -> None:
    context = ssl.create_default_context(cafile=str(tls.other_ca_path))
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    result = tls_stream(client_kind, tls.server_context, ssl=context)

    assert result.error is None
    assert result.events == GOOD_EVENTS
    assert context.verify_mode == ssl.CERT_NONE


def test_tls_ssl_context_is_used_through_a_proxy(
    client_kind: str, tls: TLSSetup, proxy: ForwardingProxy
) -> None:
    # requests gave a proxy's connections no ssl_context: certifi's CAs, not the caller's.
    context = tls.private_ca_context()
    with BackendApiTestServer(ssl_context=tls.server_context) as server:
        server.reply(GOOD)

        result = run_stream_with(client_kind, server.url, ssl=context, proxy=proxy.url)
        address = server.url.split("//")[1]

    assert result.error is None
    assert result.events == GOOD_EVENTS
    (proxied,) = proxy.requests
    assert proxied.method == "CONNECT"
    assert proxied.target == address
    assert context.cert_store_stats()["x509_ca"] == 1


@pytest.mark.parametrize("setting", ["ssl=False", "context"])
def test_tls_unverified_requests_warn_in_both_clients(
    client_kind: str, tls: TLSSetup, setting: str
) -> None:
    # urllib3 warns on every unverified HTTPS request of the blocking client; the async
    # client gives the same warning, so that one filter (or urllib3.disable_warnings())
    # is all either needs.
    option: Any = False
    if setting == "context":
        option = ssl.create_default_context()
        option.check_hostname = False
        option.verify_mode = ssl.CERT_NONE
    with BackendApiTestServer(ssl_context=tls.server_context) as server:
        server.reply(GOOD, GOOD)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            first = run_stream_with(client_kind, server.url, ssl=option, api_key="sk-warn-secret")
            second = run_stream_with(client_kind, server.url, ssl=option)

    assert first.error is None and second.error is None
    messages = insecure_warnings(seen)
    assert len(messages) == 2, messages
    assert all("127.0.0.1" in message for message in messages)
    assert not any("sk-warn-secret" in message for message in messages)


def test_tls_verified_and_plain_http_requests_do_not_warn(client_kind: str, tls: TLSSetup) -> None:
    with (
        BackendApiTestServer(ssl_context=tls.server_context) as secure,
        BackendApiTestServer() as plain,
    ):
        secure.reply(GOOD)
        plain.reply(GOOD)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            verified = run_stream_with(client_kind, secure.url, ssl=str(tls.ca_path))
            unverified_http = run_stream_with(client_kind, plain.url, ssl=False)

    assert verified.error is None and unverified_http.error is None
    assert insecure_warnings(seen) == []


def test_tls_rejects_a_certificate_of_another_ca(client_kind: str, tls: TLSSetup) -> None:
    with BackendApiTestServer(ssl_context=tls.server_context) as server:
        result = run_stream_with(client_kind, server.url, ssl=str(tls.other_ca_path))

        assert type(result.error) is APIConnectionError, result.error
        assert "certificate verification failed" in str(result.error)
        assert server.requests == []


def test_tls_rejects_a_certificate_for_another_host(client_kind: str, tls: TLSSetup) -> None:
    with BackendApiTestServer(ssl_context=tls.wrong_host_context) as server:
        result = run_stream_with(client_kind, server.url, ssl=str(tls.ca_path))

        assert type(result.error) is APIConnectionError, result.error
        assert "certificate verification failed" in str(result.error)
        assert server.requests == []
