"""The core's reading of the environment: one set of rules for both transports.

Bytes in, answers out, no server: the end-to-end behaviour (a proxy really
used, credentials really sent) is tested over both clients elsewhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import pytest

from backendapi import InvalidInputError
from backendapi._core.environment import Environment, Route, environment_ca_bundle

URL = "http://backend.test/backend-api/v2/conversation"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))


def route_of(url: str, proxy: Optional[str] = None, has_authorization: bool = False) -> Route:
    reading, fresh = Environment().read()
    assert fresh
    return reading.route(url, proxy, has_authorization)


def test_no_environment_means_straight_to_the_server() -> None:
    route = route_of(URL)
    assert (route.proxy, route.headers) == (None, {})


def test_the_client_s_own_proxy_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://env-proxy.test:3128")
    assert route_of(URL, "http://mine.test:8080").proxy == "http://mine.test:8080"


def test_a_proxy_without_a_scheme_is_http(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "proxy.test:3128")
    assert route_of(URL).proxy == "http://proxy.test:3128"


def test_all_proxy_stands_in_for_a_scheme_without_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALL_PROXY", "http://all.test:1080")
    monkeypatch.setenv("HTTPS_PROXY", "http://secure.test:3128")
    assert route_of(URL).proxy == "http://all.test:1080"
    assert route_of("https://backend.test/x").proxy == "http://secure.test:3128"


@pytest.mark.parametrize(
    ("no_proxy", "host", "bypassed"),
    [
        ("backend.test", "backend.test", True),
        (".test", "backend.test", True),
        ("other.test", "backend.test", False),
        ("10.0.0.0/8", "10.1.2.3", True),
        ("10.0.0.0/8", "11.1.2.3", False),
        ("192.168.0.0/16, 10.0.0.0/8", "10.255.0.1", True),
        ("not/a-range", "10.1.2.3", False),
    ],
)
def test_no_proxy_names_hosts_and_address_ranges(
    monkeypatch: pytest.MonkeyPatch, no_proxy: str, host: str, bypassed: bool
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.test:3128")
    monkeypatch.setenv("NO_PROXY", no_proxy)
    route = route_of(f"http://{host}:8080/x")
    assert route.proxy == (None if bypassed else "http://proxy.test:3128")


def test_a_proxy_of_an_unusable_scheme_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "socks5://user:pw@proxy.test:1080")
    reading, _ = Environment().read()
    assert reading.route(URL, None, False, proxy_schemes=("http",)).proxy is None


def test_netrc_gives_the_server_and_the_proxy_their_credentials(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text(
        "machine backend.test login me password s3cr@t\n"
        "machine proxy.test login proxy-user password p@ss\n"
    )
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.test:3128")

    route = route_of(URL)

    assert route.headers == {"Authorization": "Basic bWU6czNjckB0"}
    assert route.proxy == "http://proxy-user:p%40ss@proxy.test:3128"
    # A request with an Authorization of its own keeps it.
    assert route_of(URL, has_authorization=True).headers == {}


def test_a_reading_is_kept_for_its_scope_until_it_expires() -> None:
    environment = Environment()
    scope = object()
    first, fresh = environment.read(scope)
    assert fresh
    assert environment.read(scope) == (first, False)
    assert environment.read(object())[1]  # another scope reads afresh
    environment.expire()
    assert environment.read(scope)[1]
    assert environment.read()[1] and environment.read()[1]  # no scope: always afresh


def test_a_missing_ca_bundle_is_named_by_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CURL_CA_BUNDLE", "/nonexistent/ca.pem")
    with pytest.raises(InvalidInputError, match="CURL_CA_BUNDLE"):
        environment_ca_bundle()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", __file__)  # the first set wins
    assert environment_ca_bundle() == __file__
